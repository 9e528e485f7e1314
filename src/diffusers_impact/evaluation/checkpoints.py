# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
Finding, verifying and safely reading the evaluation networks' public checkpoints: a local file, a URL or a Hub file.
"""

import hashlib
import http.client
import io
import os
import pickle
import re

import huggingface_hub
import numpy as np
import torch


# audioldm_eval downloads these (evaluation.md §1, "Where weights come from").
PANNS_CNN14_16K_URL = "https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth"
VGGISH_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
# SHA-256 of the released files. Neither project publishes one: Zenodo publishes the MD5
# 362fc5ff18f1d6ad2f6d464b45893f2c of the PANNs file, and torchvggish's file name carries the first 8 hex digits of the
# VGGish file's (torch.hub's convention). These are the SHA-256 that independent projects recorded for copies that
# matched those published values.
PANNS_CNN14_16K_SHA256 = "e2ee543a27919542c2ea03eabaa70b24dcd4e6c8e05621de6b67a94e4c5058e6"
VGGISH_SHA256 = "10086976245803799d9194e9a73d9b6c1549c71d1b80106f5cade5608a561f4b"
# Paper App. F.4: the CLAP score uses laion/clap-htsat-fused.
CLAP_MODEL_ID = "laion/clap-htsat-fused"

# audioset_tagging_cnn saves {"iteration": int, "model": state_dict, "sampler": ...}; the sampler's
# `indexes_per_class` are int64 NumPy arrays, pickled by NumPy 1 as `numpy.core.multiarray._reconstruct` (NumPy 2
# names it `numpy._core.multiarray._reconstruct`). These are the only globals allowed besides torch's tensor types.
_reconstruct = np.empty(0).__reduce__()[0]
_NUMPY_INT64_ARRAY_GLOBALS = [
    _reconstruct,
    (_reconstruct, "numpy.core.multiarray._reconstruct"),
    np.ndarray,
    np.dtype,
    type(np.dtype(np.int64)),
]


def _check_sha256(path: str, where: str, expected: str, name: str, official_url: str, official: bool) -> bytes:
    """The file's bytes, if their SHA-256 is `expected` (the bytes checked are the bytes loaded)."""
    with open(path, "rb") as file:
        data = file.read()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        if official:
            raise ValueError(
                f"{name} checkpoint {where} is not the official file: its SHA-256 is {actual}, the official file's is "
                f"{expected}. It was not loaded. Download the official file from {official_url}, or pass the SHA-256 "
                "of a checkpoint of your own as `sha256` to load that one."
            )
        raise ValueError(
            f"{name} checkpoint {where} has SHA-256 {actual}, not the {expected} passed as `sha256`. It was not "
            "loaded. Pass the file you meant, or the SHA-256 of this one (`sha256sum` prints it) if you trust it."
        )
    return data


def _download(url: str, expected: str, name: str, official_url: str, official: bool) -> str:
    """The file at `url`, downloaded once into the torch hub cache under its SHA-256 (a file of another hash is not
    kept)."""
    path = os.path.join(torch.hub.get_dir(), "checkpoints", "sha256", expected)
    if os.path.isfile(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.part"
    try:
        torch.hub.download_url_to_file(url, partial, progress=True)
        _check_sha256(partial, url, expected, name, official_url, official)
        os.replace(partial, path)
    except (OSError, http.client.HTTPException) as error:  # URLError, HTTPError, timeouts
        raise OSError(
            f"Could not download the {name} checkpoint from {url} ({error}). Download it from {official_url} on a "
            "machine that can reach it and pass the local path."
        ) from error
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


def load_checkpoint(
    source: str | os.PathLike, name: str, official_url: str, official_sha256: str, sha256: str | None = None
) -> dict:
    """
    Reads a PyTorch state dict from a local file, an `http(s)://` URL or a file in a Hub repo (`hf://owner/repo/file`),
    after checking the file's SHA-256.

    The file must be the official one (SHA-256 `official_sha256`) unless `sha256` is given: then it must be that file.
    It is read with `torch.load(weights_only=True)`, which only rebuilds tensors, plus the int64 NumPy arrays of the
    PANNs file's training state; anything else (which could run code when unpickled) is refused. A URL is downloaded
    once into the torch hub cache (`torch.hub.get_dir()/checkpoints/sha256/<sha256>`), kept only if its hash is
    right; a Hub file goes through the 🤗 Hub cache. A checkpoint saved as `{"model": state_dict, ...}` (PANNs) gives
    its `"model"` entry.

    Args:
        source (`str` or `os.PathLike`): Local path, URL or `hf://<repo_id>/<path in repo>`.
        name (`str`): What the checkpoint is, for messages (e.g. `"PANNs Cnn14 (16 kHz)"`).
        official_url (`str`): Where the official checkpoint can be downloaded, named in the error messages.
        official_sha256 (`str`): SHA-256 of the official checkpoint.
        sha256 (`str`, *optional*): SHA-256 of a checkpoint of your own (e.g. from `sha256sum`), to load it instead.

    Returns:
        `dict`: The state dict.

    Raises:
        `FileNotFoundError`: A local file does not exist.
        `OSError`: A URL or Hub file cannot be downloaded.
        `ValueError`: The file's SHA-256 is not the expected one.
        `pickle.UnpicklingError`: The file holds pickled objects other than tensors and int64 NumPy arrays.

    Example:

    ```py
    >>> import hashlib, os, tempfile
    >>> import torch
    >>> from diffusers_impact.evaluation.checkpoints import load_checkpoint

    >>> path = os.path.join(tempfile.mkdtemp(), "model.pth")
    >>> torch.save({"iteration": 1, "model": {"weight": torch.ones(2)}}, path)
    >>> official = hashlib.sha256(b"the official file").hexdigest()
    >>> try:
    ...     load_checkpoint(path, "demo", "https://example.com/model.pth", official)
    ... except ValueError as error:
    ...     print(error)
    demo checkpoint .../model.pth is not the official file: its SHA-256 is ..., the official file's is
    ede4a4fc3b8d3c7acbcc0eb98c2a275bf11b9f191ee354d613dbc7125b27c8e5. It was not loaded. Download the official file
    from https://example.com/model.pth, or pass the SHA-256 of a checkpoint of your own as `sha256` to load that one.
    >>> mine = hashlib.sha256(open(path, "rb").read()).hexdigest()
    >>> load_checkpoint(path, "demo", "https://example.com/model.pth", official, sha256=mine)
    {'weight': tensor([1., 1.])}
    ```
    """
    source = os.fspath(source)
    official = sha256 is None
    expected = official_sha256 if official else sha256.lower()
    if not re.fullmatch("[0-9a-f]{64}", expected):
        raise ValueError(f"`sha256` must be 64 hexadecimal digits (as `sha256sum` prints them), got {sha256!r}.")
    if source.startswith(("http://", "https://")):
        path = _download(source, expected, name, official_url, official)
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
    where = source if path == source else f"{source} ({path})"
    data = _check_sha256(path, where, expected, name, official_url, official)
    try:
        with torch.serialization.safe_globals(_NUMPY_INT64_ARRAY_GLOBALS):
            checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(
            f"{name} checkpoint {source} holds pickled objects other than tensors and int64 NumPy arrays, which are "
            "not unpickled because unpickling can run arbitrary code (see the error above for the object). Do not "
            "load it with `weights_only=False`; save its state dict alone (`torch.save(model.state_dict(), path)`) "
            "and pass that file with its SHA-256."
        ) from error
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]  # audioset_tagging_cnn saves {"iteration": ..., "model": state_dict, ...}
    if not isinstance(checkpoint, dict):
        raise TypeError(f"{name} checkpoint {source} is not a state dict (got {type(checkpoint).__name__}).")
    return checkpoint
