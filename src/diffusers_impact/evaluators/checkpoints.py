# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Finding and reading the evaluation networks' public checkpoints: a local file, a URL or a file in a Hub repo."""

import http.client
import os
import pickle
import urllib.parse

import huggingface_hub
import torch
from diffusers.utils import logging

logger = logging.get_logger(__name__)

# audioldm_eval downloads these (evaluation.md §1, "Where weights come from").
PANNS_CNN14_16K_URL = "https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth"
VGGISH_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
# Paper App. F.4: the CLAP score uses laion/clap-htsat-fused.
CLAP_MODEL_ID = "laion/clap-htsat-fused"


def _read_state_dict(path: str, name: str) -> dict:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # PANNs checkpoints were pickled with training state besides the tensors, which `weights_only` refuses.
        logger.warning(f"{name} checkpoint {path} holds non-tensor objects; unpickling it fully (trusted file).")
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]  # audioset_tagging_cnn saves {"iteration": ..., "model": state_dict, ...}
    if not isinstance(checkpoint, dict):
        raise TypeError(f"{name} checkpoint {path} is not a state dict (got {type(checkpoint).__name__}).")
    return checkpoint


def load_checkpoint(source: str | os.PathLike, name: str, official_url: str) -> dict:
    """
    Reads a PyTorch state dict from a local file, an `http(s)://` URL or a file in a Hub repo (`hf://owner/repo/file`).

    A URL is downloaded once into the torch hub cache (`torch.hub.get_dir()/checkpoints`), as audioldm_eval and
    torchvggish do; a Hub file goes through the 🤗 Hub cache. A checkpoint saved as `{"model": state_dict, ...}` (PANNs)
    gives its `"model"` entry. Files are read with `weights_only=True` when they allow it.

    Args:
        source (`str` or `os.PathLike`): Local path, URL or `hf://<repo_id>/<path in repo>`.
        name (`str`): What the checkpoint is, for messages (e.g. `"PANNs Cnn14 (16 kHz)"`).
        official_url (`str`): Where the checkpoint can be downloaded, named in the error messages.

    Returns:
        `dict`: The state dict.

    Raises:
        `FileNotFoundError`: A local file does not exist.
        `OSError`: A URL or Hub file cannot be downloaded.

    Example:

    ```py
    >>> import os, tempfile
    >>> import torch
    >>> from diffusers_impact.evaluators.checkpoints import load_checkpoint

    >>> path = os.path.join(tempfile.mkdtemp(), "model.pth")
    >>> torch.save({"iteration": 1, "model": {"weight": torch.ones(2)}}, path)
    >>> load_checkpoint(path, "demo", "https://example.com/model.pth")
    {'weight': tensor([1., 1.])}
    >>> try:
    ...     load_checkpoint("missing.pth", "demo", "https://example.com/model.pth")
    ... except FileNotFoundError as error:
    ...     print(error)
    demo checkpoint not found at 'missing.pth'. Download it from https://example.com/model.pth and pass the local
    path (or pass the URL).
    ```
    """
    source = os.fspath(source)
    if source.startswith(("http://", "https://")):
        file_name = urllib.parse.unquote(os.path.basename(urllib.parse.urlparse(source).path))
        path = os.path.join(torch.hub.get_dir(), "checkpoints", file_name)
        if not os.path.isfile(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                torch.hub.download_url_to_file(source, path, progress=True)  # writes a temporary file, then renames
            except (OSError, http.client.HTTPException) as error:  # URLError, HTTPError, timeouts
                raise OSError(
                    f"Could not download the {name} checkpoint from {source} ({error}). Download it from "
                    f"{official_url} on a machine that can reach it and pass the local path."
                ) from error
    elif source.startswith("hf://"):
        parts = source[len("hf://") :].split("/")
        if len(parts) < 3 or not all(parts):
            raise ValueError(f"A Hub checkpoint is written hf://<owner>/<repo>/<path in repo>, got {source!r}.")
        try:
            path = huggingface_hub.hf_hub_download(repo_id="/".join(parts[:2]), filename="/".join(parts[2:]))
        except OSError as error:  # the Hub's HTTP and offline-cache errors are OSErrors
            raise OSError(
                f"Could not get the {name} checkpoint {source} from the Hub ({error}). Download it from "
                f"{official_url} and pass the local path."
            ) from error
    else:
        path = source
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{name} checkpoint not found at {source!r}. Download it from {official_url} and pass the local "
                "path (or pass the URL)."
            )
    return _read_state_dict(path, name)
