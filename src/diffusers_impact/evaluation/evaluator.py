# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
The paper's Table 1 metrics for a folder of generated clips against a folder of reference clips (§4.3, App. F).

FD, KL and IS use PANNs Cnn14, FAD uses VGGish, computed as audioldm_eval does (evaluation.md §1; the metric math is
in [`diffusers_impact.evaluation.metrics`]); CLAP is the cosine similarity of each generated clip with its caption (§2).
"""

import os
from collections.abc import Mapping

import numpy as np
import soundfile
import torch
from tqdm.auto import tqdm

from ..audio import AUDIO_EXTENSIONS, resample
from .checkpoints import CLAP_MODEL_ID, PANNS_CNN14_16K_URL, VGGISH_URL
from .clap import ClapScorer
from .metrics import frechet_distance_from_features, inception_score, kl_divergence
from .panns import Cnn14
from .vggish import VGGish, vggish_examples


# Files read as clips; anything else in the folders (e.g. a metrics JSON) is ignored.
EVALUATION_SAMPLING_RATE = 16000
# audioldm_eval `pad_short_audio`: clips shorter than 2 s are zero-padded to 2 s before PANNs and VGGish.
MIN_EVALUATION_SAMPLES = 32000
# audioldm_eval `calculate_isc(..., splits=10)`.
INCEPTION_SCORE_SPLITS = 10


def list_audio_files(folder: str | os.PathLike) -> dict[str, str]:
    """
    The audio files of a folder (not recursive), keyed by clip name: the file name without its extension.

    Clips are paired across folders by this name (audioldm_eval pairs by file name; here `id.wav` also pairs with
    `id.flac`). Files with other extensions are ignored.

    Args:
        folder (`str` or `os.PathLike`): The folder.

    Returns:
        `dict[str, str]`: Clip name → path, sorted by name.

    Raises:
        `FileNotFoundError`: The folder does not exist.
        `ValueError`: It holds no audio file, or two files share a name (e.g. `a.wav` and `a.flac`).

    Example:

    ```py
    >>> import os, tempfile
    >>> from diffusers_impact.evaluation.evaluator import list_audio_files

    >>> folder = tempfile.mkdtemp()
    >>> for name in ["b.wav", "a.flac", "notes.txt"]:
    ...     open(os.path.join(folder, name), "w").close()
    >>> list(list_audio_files(folder))
    ['a', 'b']
    ```
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Audio folder {folder!r} does not exist.")
    files = {}
    for file_name in sorted(os.listdir(folder)):
        name, extension = os.path.splitext(file_name)
        if extension.lower() not in AUDIO_EXTENSIONS or not os.path.isfile(os.path.join(folder, file_name)):
            continue
        if name in files:
            raise ValueError(
                f"Two files in {folder!r} are both clip {name!r}: {os.path.basename(files[name])} and {file_name}."
            )
        files[name] = os.path.join(folder, file_name)
    if not files:
        raise ValueError(f"Audio folder {folder!r} has no audio files ({', '.join(AUDIO_EXTENSIONS)}).")
    return files


def _read(path: str) -> tuple[np.ndarray, int]:
    samples, sampling_rate = soundfile.read(path, dtype="float32", always_2d=True)
    if samples.shape[0] == 0:
        raise ValueError(f"Audio file {path!r} contains no samples.")
    return samples, sampling_rate


def _evaluation_waveform(samples: np.ndarray, sampling_rate: int) -> np.ndarray:
    # audioldm_eval `WaveDataset.read_from_file`: first channel, minus its mean, resampled to 16 kHz, padded to 2 s
    waveform = samples[:, 0].astype(np.float64)
    waveform = waveform - waveform.mean()
    waveform = resample(waveform, sampling_rate, EVALUATION_SAMPLING_RATE)
    if waveform.shape[0] < MIN_EVALUATION_SAMPLES:
        waveform = np.pad(waveform, (0, MIN_EVALUATION_SAMPLES - waveform.shape[0]))
    return waveform.astype(np.float32)


def load_evaluation_audio(path: str | os.PathLike) -> np.ndarray:
    """
    Reads a clip as audioldm_eval's `WaveDataset` does, for PANNs and VGGish.

    The first channel only, minus its mean (DC removal), resampled to 16 kHz, zero-padded at the end to at least 2 s.
    The resampling here is polyphase (`scipy.signal.resample_poly`), not torchaudio's sinc interpolation, which alone
    moves FD and KL noticeably; write generated and reference clips as 16 kHz files so that no resampling happens.

    Args:
        path (`str` or `os.PathLike`): An audio file libsndfile reads.

    Returns:
        `np.ndarray`: float32 waveform at 16 kHz of at least 32000 samples.

    Example:

    ```py
    >>> import os, tempfile
    >>> import numpy as np
    >>> import soundfile
    >>> from diffusers_impact.evaluation.evaluator import load_evaluation_audio

    >>> path = os.path.join(tempfile.mkdtemp(), "clip.wav")
    >>> soundfile.write(path, np.stack([np.full(8000, 0.5), np.zeros(8000)], axis=1), 16000)  # 0.5 s stereo, DC
    >>> waveform = load_evaluation_audio(path)
    >>> waveform.shape, float(np.abs(waveform).max())
    ((32000,), 0.0)
    ```
    """
    return _evaluation_waveform(*_read(os.fspath(path)))


def _describe_names(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return f"{shown}, … ({len(names)} in all)" if len(names) > limit else shown


def _check_clip_names(generated_dir: str | os.PathLike, reference_dir: str | os.PathLike) -> None:
    generated_names = set(list_audio_files(generated_dir))
    reference_names = set(list_audio_files(reference_dir))
    if generated_names != reference_names:
        raise ValueError(
            f"The generated folder {os.fspath(generated_dir)!r} and the reference folder {os.fspath(reference_dir)!r} "
            "must hold the same clip names (KL pairs clips by name). Only generated: "
            f"{_describe_names(sorted(generated_names - reference_names)) or 'none'}. Only reference: "
            f"{_describe_names(sorted(reference_names - generated_names)) or 'none'}."
        )


class AudioEvaluator:
    """
    Computes the paper's Table 1 objective metrics (FD, FAD, KL, IS, CLAP) of generated clips against references.

    * **FD**: Fréchet distance between the PANNs Cnn14 2048-d embeddings of the two sets of clips.
    * **FAD**: Fréchet distance between the VGGish embeddings of every 0.96 s frame of every clip, pooled per set.
    * **KL**: mean over clips paired by name of KL(reference ‖ generated) between the softmax of Cnn14's logits.
    * **IS**: Inception Score of the generated clips' Cnn14 logits (10 splits, shuffled with seed 2020).
    * **CLAP**: mean cosine similarity of each generated clip with its caption ([`ClapScorer`]).

    Clips are read as audioldm_eval reads them ([`load_evaluation_audio`]) and Cnn14 sees one whole clip at a time,
    as in audioldm_eval (evaluation.md §1). Both folders must hold the same clip names.

    Args:
        panns ([`Cnn14`]): The PANNs model (e.g. `Cnn14.from_pretrained()`).
        vggish ([`VGGish`]): The VGGish model (e.g. `VGGish.from_pretrained()`).
        clap ([`ClapScorer`], *optional*): Scores the captions; without it CLAP is not computed.
        device (`str` or `torch.device`, *optional*): Where Cnn14 and VGGish run; defaults to the CPU.

    Example:

    ```py
    >>> import os, tempfile
    >>> import numpy as np
    >>> import soundfile
    >>> from diffusers_impact.evaluation import AudioEvaluator, Cnn14, VGGish

    >>> root = tempfile.mkdtemp()
    >>> for folder, names in [("generated", ["a", "b"]), ("reference", ["a", "c"])]:
    ...     os.makedirs(os.path.join(root, folder))
    ...     for name in names:
    ...         soundfile.write(os.path.join(root, folder, f"{name}.wav"), np.zeros(16000), 16000)
    >>> evaluator = AudioEvaluator(Cnn14(), VGGish())  # random weights here; use from_pretrained() for real scores
    >>> try:  # KL pairs clips by name, so the folders must match (checked before any clip is read)
    ...     evaluator.evaluate(os.path.join(root, "generated"), os.path.join(root, "reference"))
    ... except ValueError as error:
    ...     print(str(error).split("(KL pairs clips by name). ")[1])
    Only generated: b. Only reference: c.
    ```
    """

    def __init__(
        self,
        panns: Cnn14,
        vggish: VGGish,
        clap: ClapScorer | None = None,
        device: str | torch.device | None = None,
    ):
        self.device = torch.device(device or "cpu")
        self.panns = panns.to(self.device).eval()
        self.vggish = vggish.to(self.device).eval()
        self.clap = clap

    @classmethod
    def from_pretrained(
        cls,
        panns_checkpoint: str | os.PathLike = PANNS_CNN14_16K_URL,
        vggish_checkpoint: str | os.PathLike = VGGISH_URL,
        clap_model: str | os.PathLike | None = CLAP_MODEL_ID,
        device: str | torch.device | None = None,
        panns_sha256: str | None = None,
        vggish_sha256: str | None = None,
    ) -> "AudioEvaluator":
        """
        Loads the three evaluation networks.

        Args:
            panns_checkpoint (`str` or `os.PathLike`, defaults to the Zenodo URL): `Cnn14_16k_mAP=0.438.pth` as a
                local file, URL or `hf://` Hub file ([`Cnn14.from_pretrained`]).
            vggish_checkpoint (`str` or `os.PathLike`, defaults to the GitHub release URL): `vggish-10086976.pth`
                ([`VGGish.from_pretrained`]).
            clap_model (`str` or `os.PathLike`, *optional*, defaults to `"laion/clap-htsat-fused"`): Hub id or folder
                of the CLAP model ([`ClapScorer.from_pretrained`]); `None` skips the CLAP score.
            device (`str` or `torch.device`, *optional*): Where the networks run; defaults to the CPU.
            panns_sha256 (`str`, *optional*): SHA-256 of a PANNs checkpoint of your own; by default only the official
                file is loaded.
            vggish_sha256 (`str`, *optional*): The same for VGGish.

        Raises:
            `FileNotFoundError` or `OSError`: A checkpoint is missing or unreachable; the message says where to get it.
            `ValueError`: A checkpoint's SHA-256 is not the official one (or the one passed).

        Example:

        ```py
        >>> from diffusers_impact.evaluation import AudioEvaluator

        >>> try:
        ...     AudioEvaluator.from_pretrained(panns_checkpoint="Cnn14_16k_mAP=0.438.pth", clap_model=None)
        ... except FileNotFoundError as error:
        ...     print(error)
        PANNs Cnn14 (16 kHz) checkpoint not found at 'Cnn14_16k_mAP=0.438.pth'. Download it from
        https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth and pass the local path (or pass the URL).
        ```
        """
        panns = Cnn14.from_pretrained(panns_checkpoint, sha256=panns_sha256)
        vggish = VGGish.from_pretrained(vggish_checkpoint, sha256=vggish_sha256)
        clap = None if clap_model is None else ClapScorer.from_pretrained(clap_model, device=device)
        return cls(panns, vggish, clap=clap, device=device)

    @torch.no_grad()
    def extract_features(
        self,
        folder: str | os.PathLike,
        captions: Mapping[str, str] | None = None,
        progress: bool = True,
    ) -> dict:
        """
        Per-clip network outputs of every audio file in a folder (see [`list_audio_files`]).

        Args:
            folder (`str` or `os.PathLike`): The clips.
            captions (`Mapping[str, str]`, *optional*): Clip name → caption; when given (and the evaluator has a
                CLAP scorer), the CLAP similarity of every clip with its caption is computed.
            progress (`bool`, defaults to `True`): Show a progress bar.

        Returns:
            `dict` with `"names"` (`list[str]`), `"panns_embeddings"` (`(num_clips, 2048)`), `"panns_logits"`
            (`(num_clips, 527)`), `"vggish_embeddings"` (`(num_frames, 128)`, all frames of all clips) as float32
            arrays, and `"clap_similarities"` (`(num_clips,)` or `None`).

        Example:

        ```py
        >>> import os, tempfile
        >>> import numpy as np
        >>> import soundfile
        >>> from diffusers_impact.evaluation import AudioEvaluator, Cnn14, VGGish

        >>> folder = tempfile.mkdtemp()
        >>> soundfile.write(os.path.join(folder, "a.wav"), np.zeros(48000), 16000)  # 3 s: three VGGish frames
        >>> features = AudioEvaluator(Cnn14(), VGGish()).extract_features(folder, progress=False)
        >>> features["panns_embeddings"].shape, features["panns_logits"].shape, features["vggish_embeddings"].shape
        ((1, 2048), (1, 527), (3, 128))
        ```
        """
        files = list_audio_files(folder)
        names = list(files)
        score_captions = captions is not None and self.clap is not None
        if score_captions:
            missing = [name for name in names if name not in captions]
            if missing:
                raise ValueError(f"No caption for clip(s) {_describe_names(missing)} of {os.fspath(folder)!r}.")
        chunk_size = self.clap.batch_size if score_captions else 1
        embeddings, logits, frames, similarities = [], [], [], []
        with tqdm(
            total=len(names), desc=f"Clips in {os.path.basename(os.path.normpath(folder))}", disable=not progress
        ) as bar:
            for start in range(0, len(names), chunk_size):
                chunk = names[start : start + chunk_size]
                clap_waveforms = []
                for name in chunk:
                    samples, sampling_rate = _read(files[name])
                    waveform = _evaluation_waveform(samples, sampling_rate)
                    output = self.panns(
                        torch.from_numpy(waveform)[None].to(self.device)
                    )  # batch size 1, as audioldm_eval
                    embeddings.append(output.embedding.float().cpu().numpy())
                    logits.append(output.logits.float().cpu().numpy())
                    frames.append(self.vggish(vggish_examples(waveform).to(self.device)).float().cpu().numpy())
                    if score_captions:  # CLAP reads the file's own audio: channels averaged, its own rate
                        clap_waveforms.append(self.clap.prepare_audio(samples.mean(axis=1), sampling_rate))
                if score_captions:
                    texts = [captions[name] for name in chunk]
                    similarities.append(self.clap.similarities(clap_waveforms, texts, self.clap.sampling_rate))
                bar.update(len(chunk))
        return {
            "names": names,
            "panns_embeddings": np.concatenate(embeddings),
            "panns_logits": np.concatenate(logits),
            "vggish_embeddings": np.concatenate(frames),
            "clap_similarities": np.concatenate(similarities) if score_captions else None,
        }

    def evaluate(
        self,
        generated_dir: str | os.PathLike,
        reference_dir: str | os.PathLike,
        captions: Mapping[str, str] | None = None,
        progress: bool = True,
    ) -> dict:
        """
        The Table 1 metrics of the clips in `generated_dir` against the clips of the same names in `reference_dir`.

        Args:
            generated_dir (`str` or `os.PathLike`): Generated clips, e.g. `<id>.wav`.
            reference_dir (`str` or `os.PathLike`): Reference clips with the same names.
            captions (`Mapping[str, str]`, *optional*): Clip name → the caption it was generated from, for CLAP
                (needs the evaluator's CLAP scorer); without it `"CLAP"` is `None`.
            progress (`bool`, defaults to `True`): Show progress bars.

        Returns:
            `dict`: `"FD"`, `"FAD"`, `"KL"`, `"IS"` (and its std over splits, `"IS_std"`), `"CLAP"` (`float` or `None`)
            and `"num_clips"`. With fewer than 10 clips, IS uses one split per clip.

        Raises:
            `ValueError`: A folder has no audio, the two folders' clip names differ (both differences are listed),
                or `captions` are given without a CLAP scorer or miss a clip.
        """
        _check_clip_names(generated_dir, reference_dir)
        if captions is not None and self.clap is None:
            raise ValueError("`captions` were given but this evaluator has no CLAP scorer (`clap`).")

        generated = self.extract_features(generated_dir, captions=captions, progress=progress)
        reference = self.extract_features(reference_dir, progress=progress)
        num_clips = len(generated["names"])
        inception_mean, inception_std = inception_score(
            generated["panns_logits"], splits=min(INCEPTION_SCORE_SPLITS, num_clips)
        )
        similarities = generated["clap_similarities"]
        return {
            "FD": frechet_distance_from_features(generated["panns_embeddings"], reference["panns_embeddings"]),
            "FAD": frechet_distance_from_features(generated["vggish_embeddings"], reference["vggish_embeddings"]),
            "KL": kl_divergence(
                dict(zip(reference["names"], reference["panns_logits"])),
                dict(zip(generated["names"], generated["panns_logits"])),
            ),
            "IS": inception_mean,
            "IS_std": inception_std,
            "CLAP": None if similarities is None else float(similarities.mean()),
            "num_clips": num_clips,
        }


def evaluate_audio_folders(
    generated_dir: str | os.PathLike,
    reference_dir: str | os.PathLike,
    captions: Mapping[str, str] | None = None,
    panns_checkpoint: str | os.PathLike = PANNS_CNN14_16K_URL,
    vggish_checkpoint: str | os.PathLike = VGGISH_URL,
    clap_model: str | os.PathLike = CLAP_MODEL_ID,
    device: str | torch.device | None = None,
    progress: bool = True,
    panns_sha256: str | None = None,
    vggish_sha256: str | None = None,
) -> dict:
    """
    The paper's Table 1 metrics (FD, FAD, KL, IS, CLAP) of generated clips against reference clips, in one call.

    Loads the networks ([`AudioEvaluator.from_pretrained`]; CLAP only when `captions` are given) and runs
    [`AudioEvaluator.evaluate`]. Write both sets as 16 kHz mono files named by clip id (e.g. `examples/evaluation/evaluate.py`).

    Args:
        generated_dir (`str` or `os.PathLike`): Generated clips.
        reference_dir (`str` or `os.PathLike`): Reference clips with the same names.
        captions (`Mapping[str, str]`, *optional*): Clip name → caption, for the CLAP score.
        panns_checkpoint (`str` or `os.PathLike`, defaults to the Zenodo URL): `Cnn14_16k_mAP=0.438.pth`.
        vggish_checkpoint (`str` or `os.PathLike`, defaults to the GitHub release URL): `vggish-10086976.pth`.
        clap_model (`str` or `os.PathLike`, defaults to `"laion/clap-htsat-fused"`): CLAP Hub id or folder.
        device (`str` or `torch.device`, *optional*): Where the networks run; defaults to the CPU.
        progress (`bool`, defaults to `True`): Show progress bars.
        panns_sha256 (`str`, *optional*): SHA-256 of a PANNs checkpoint of your own (default: only the official one).
        vggish_sha256 (`str`, *optional*): The same for VGGish.

    Returns:
        `dict`: See [`AudioEvaluator.evaluate`].

    Example:

    ```py
    >>> import os, tempfile
    >>> import numpy as np
    >>> import soundfile
    >>> from diffusers_impact.evaluation import evaluate_audio_folders

    >>> root = tempfile.mkdtemp()
    >>> for folder, name in [("generated", "a"), ("generated", "b"), ("reference", "a"), ("reference", "c")]:
    ...     os.makedirs(os.path.join(root, folder), exist_ok=True)
    ...     soundfile.write(os.path.join(root, folder, f"{name}.wav"), np.zeros(16000), 16000)
    >>> try:  # the folders are checked before any network is loaded
    ...     evaluate_audio_folders(os.path.join(root, "generated"), os.path.join(root, "reference"))
    ... except ValueError as error:
    ...     print(str(error).split("(KL pairs clips by name). ")[1])
    Only generated: b. Only reference: c.
    ```
    """
    _check_clip_names(generated_dir, reference_dir)
    evaluator = AudioEvaluator.from_pretrained(
        panns_checkpoint=panns_checkpoint,
        vggish_checkpoint=vggish_checkpoint,
        clap_model=clap_model if captions is not None else None,
        device=device,
        panns_sha256=panns_sha256,
        vggish_sha256=vggish_sha256,
    )
    return evaluator.evaluate(generated_dir, reference_dir, captions=captions, progress=progress)
