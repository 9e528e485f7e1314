# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
Audio–caption datasets for training and latent pre-computation, built on 🤗 datasets.

Audio stays undecoded in the dataset (`datasets.Audio(decode=False)`: `{"path", "bytes"}`); it is decoded with
[`~diffusers_impact.audio.load_audio`] (soundfile) when an example is read, so nothing here needs torchcodec.
"""

import collections
import csv
import json
import os
from collections.abc import Iterable
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from diffusers.utils import logging

from ..audio import (
    AUDIO_EXTENSIONS,
    HOP_LENGTH,
    SAMPLING_RATE,
    SEGMENT_SAMPLES,
    AudioDecodeError,
    is_silent,
    load_audio,
    mel_spectrogram,
    prepare_segment,
)


logger = logging.get_logger(__name__)

# The metadata files and the `file_name` convention of the 🤗 datasets "audiofolder" layout.
METADATA_FILENAMES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")
SKIP_REASONS = ("unreadable", "empty", "silent")


def _is_saved_dataset(folder: str) -> bool:
    # `Dataset.save_to_disk` writes dataset_info.json + state.json; `DatasetDict.save_to_disk` dataset_dict.json.
    if os.path.isfile(os.path.join(folder, "dataset_dict.json")):
        return True
    return all(os.path.isfile(os.path.join(folder, name)) for name in ("dataset_info.json", "state.json"))


def _is_utf8(text: str) -> bool:
    """Whether `text`, read with `errors="surrogateescape"`, was valid UTF-8 (invalid bytes become lone surrogates)."""
    return not any("\udc80" <= character <= "\udcff" for character in text)


def _read_metadata(path: str) -> list[dict]:
    """The rows of a metadata file; CSV and JSON Lines rows that are not UTF-8 text are skipped with a warning."""
    if path.endswith(".parquet"):
        return pq.read_table(path).to_pylist()
    rows, bad_lines = [], []
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as file:
        if path.endswith(".csv"):
            reader = csv.DictReader(file)
            for row in reader:  # a missing field is None
                if all(_is_utf8(value) for value in row.values() if isinstance(value, str)):
                    rows.append(row)
                else:
                    bad_lines.append(reader.line_num)
        else:
            for line_number, line in enumerate(file, start=1):
                if not _is_utf8(line):
                    bad_lines.append(line_number)
                elif line.strip():
                    rows.append(json.loads(line))
    if bad_lines:
        logger.warning(
            f"Skipped {len(bad_lines)} row(s) of {path} that are not UTF-8 text, on line(s) {bad_lines}; save the file "
            "as UTF-8 to use them."
        )
    return rows


def _load_audio_folder(folder: str, split: str) -> datasets.Dataset:
    """The audiofolder layout (metadata `file_name` relative to the metadata file, or every audio file), in memory."""
    if os.path.isdir(os.path.join(folder, split)):
        folder = os.path.join(folder, split)
    elif split != "train":
        raise ValueError(f"Split {split!r} not found: {folder} has no {split!r} subfolder (its files form 'train').")

    metadata_files, audio_files = [], []
    for root, directories, files in os.walk(folder):
        directories.sort()
        for name in sorted(files):
            if name in METADATA_FILENAMES:
                metadata_files.append(os.path.join(root, name))
            elif name.lower().endswith(AUDIO_EXTENSIONS):
                audio_files.append(os.path.join(root, name))

    if not metadata_files:
        return datasets.Dataset.from_dict({"audio": [{"bytes": None, "path": path} for path in audio_files]})

    extensions = {os.path.splitext(path)[1] for path in metadata_files}
    if len(extensions) > 1:
        raise ValueError(f"Metadata files of different formats in {folder}: {metadata_files}.")
    rows = []
    for metadata_file in metadata_files:
        for row in _read_metadata(metadata_file):
            if "file_name" not in row:
                raise ValueError(f"{metadata_file} has no `file_name` column; its columns are {sorted(row)}.")
            file_name = row.pop("file_name")
            if os.path.isabs(file_name) or os.path.normpath(file_name).startswith(".."):
                raise ValueError(f"`file_name` {file_name!r} in {metadata_file} must be relative to its folder.")
            path = os.path.join(os.path.dirname(metadata_file), os.path.normpath(file_name))
            rows.append({"audio": {"bytes": None, "path": path}, **row})
    return datasets.Dataset.from_list(rows)


def _as_caption_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [caption for caption in value if isinstance(caption, str) and caption.strip()]


def load_audio_dataset(
    source: str | os.PathLike,
    split: str = "train",
    audio_column: str = "audio",
    caption_column: str | None = "caption",
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """
    Loads an audio–caption dataset with one row per audio file: columns `audio` (undecoded) and `captions`.

    `source` may be:

    * a local folder in the 🤗 datasets *audiofolder* layout: audio files plus `metadata.csv` / `metadata.jsonl` /
      `metadata.parquet` whose `file_name` column names each file relative to the metadata file (one row per
      caption is fine, AudioCaps style). Without a metadata file every audio file in the folder is one row (no
      captions: pass `caption_column=None`). A `<split>` subfolder, when present, holds that split. CSV and JSON
      Lines rows that are not valid UTF-8 are skipped with a warning naming the file and the lines.
    * a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk` (read with `datasets.load_from_disk`);
    * a Hub dataset id (`datasets.load_dataset(source, split=split, cache_dir=cache_dir)`).

    The audio column is cast to `datasets.Audio(decode=False)` and renamed `audio`. String captions become
    one-element lists, list captions stay lists (empty strings and missing values are dropped), and rows naming the
    same audio file (equal path and, for embedded audio, equal byte count) are merged into one row holding all their
    captions in order. Rows left without any caption are dropped with a warning.

    Local folders are indexed here rather than by `load_dataset("audiofolder")`: in datasets >= 4 that builder encodes
    every file with torchcodec, which this package does not depend on. For the same reason a Hub repository of raw
    audio files (no parquet) needs torchcodec; download it and pass the local folder instead.

    Args:
        source (`str`): Local folder or Hub dataset id.
        split (`str`, defaults to `"train"`): Split to return.
        audio_column (`str`, defaults to `"audio"`): Column holding the audio (or paths to it).
        caption_column (`str`, *optional*, defaults to `"caption"`): Column holding a caption or a list of captions;
            `None` returns the audio column only.
        cache_dir (`str`, *optional*): 🤗 datasets cache for Hub datasets.

    Returns:
        `datasets.Dataset` with columns `audio` and `captions` (`list[str]`), or `audio` only.

    Raises:
        `ValueError`: `audio_column` or `caption_column` is not a column (the message lists the columns), or `split`
            does not exist.

    Example:

    ```py
    >>> import os, tempfile
    >>> import numpy as np
    >>> import soundfile
    >>> from diffusers_impact.training.data import load_audio_dataset

    >>> folder = tempfile.mkdtemp()
    >>> for name in ("dog.wav", "rain.wav"):
    ...     soundfile.write(os.path.join(folder, name), np.full(1600, 0.1, dtype=np.float32), 16000)
    >>> with open(os.path.join(folder, "metadata.csv"), "w") as file:
    ...     _ = file.write("file_name,caption\\ndog.wav,a dog barks\\nrain.wav,rain falls\\ndog.wav,barking\\n")
    >>> dataset = load_audio_dataset(folder)
    >>> dataset.column_names, dataset["captions"][:]
    (['audio', 'captions'], [['a dog barks', 'barking'], ['rain falls']])
    ```
    """
    source = os.path.expanduser(os.fspath(source))
    if os.path.isdir(source):
        if _is_saved_dataset(source):
            dataset = datasets.load_from_disk(source)
        else:
            dataset = _load_audio_folder(source, split)
    elif os.path.exists(source) or source.startswith((".", "/")):
        raise FileNotFoundError(f"{source!r} is not a folder (a local dataset must be a folder).")
    else:
        dataset = datasets.load_dataset(source, split=split, cache_dir=cache_dir)
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise ValueError(f"Split {split!r} not found in {source}; its splits are {list(dataset)}.")
        dataset = dataset[split]

    for role, column in (("audio_column", audio_column), ("caption_column", caption_column)):
        if column is not None and column not in dataset.column_names:
            raise ValueError(f"{role}={column!r} is not a column of {source}; its columns are {dataset.column_names}.")

    dataset = dataset.select_columns([column for column in (audio_column, caption_column) if column is not None])
    dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))
    if audio_column != "audio":
        dataset = dataset.rename_column(audio_column, "audio")
    # Group rows by audio file (every file once, also without captions), reading only the paths and byte counts
    # (not the audio) from Arrow.
    audio = dataset.select_columns(["audio"]).with_format("arrow")[:].column("audio")
    paths = pc.struct_field(audio, "path").to_pylist()
    byte_counts = pc.binary_length(pc.struct_field(audio, "bytes")).to_pylist()
    row_captions = dataset[caption_column][:] if caption_column is not None else [None] * len(dataset)

    first_row_of_file, kept_rows, captions = {}, [], []
    for row, (path, byte_count, value) in enumerate(zip(paths, byte_counts, row_captions)):
        key = (path, byte_count) if path is not None else ("<row>", row)
        if key not in first_row_of_file:
            first_row_of_file[key] = len(kept_rows)
            kept_rows.append(row)
            captions.append([])
        if value is not None:
            captions[first_row_of_file[key]].extend(_as_caption_list(value))

    if caption_column is None:
        return dataset.select(kept_rows) if len(kept_rows) < len(dataset) else dataset
    with_captions = [position for position, texts in enumerate(captions) if texts]
    if len(with_captions) < len(captions):
        logger.warning(f"{len(captions) - len(with_captions)} audio file(s) in {source} have no caption; dropped.")
    kept_rows = [kept_rows[position] for position in with_captions]
    captions = [captions[position] for position in with_captions]

    if len(kept_rows) < len(dataset):
        dataset = dataset.select(kept_rows)
    return dataset.remove_columns([caption_column]).add_column(
        "captions", captions, feature=datasets.List(datasets.Value("string"))
    )


class AudioCaptionDataset(torch.utils.data.Dataset):
    """
    Decodes the audio of a [`load_audio_dataset`] dataset when an example is read; bad audio never raises.

    Each example is `{"index", "waveform", "captions", "skip_reason"}`: `waveform` is the whole file as a 16 kHz
    mono float32 array (cropping and normalisation happen in [`collate_audio_captions`]), or `None` when
    `skip_reason` is `"unreadable"` (cannot be decoded, or NaN/inf samples), `"empty"` (no samples) or `"silent"`
    (peak below 1e-4, see [`~diffusers_impact.audio.is_silent`]). Counting and reporting skips is the caller's job.

    Args:
        dataset (`datasets.Dataset`): Columns `audio` and optionally `captions` (as returned by
            [`load_audio_dataset`]); a decoding `Audio` column is switched to `decode=False`.
        sampling_rate (`int`, defaults to 16000): Sampling rate of the returned waveforms.

    Example:

    ```py
    >>> import datasets
    >>> from diffusers_impact.training.data import AudioCaptionDataset

    >>> table = datasets.Dataset.from_dict({"audio": [{"bytes": b"junk", "path": None}], "captions": [["noise"]]})
    >>> example = AudioCaptionDataset(table)[0]
    >>> example["waveform"], example["captions"], example["skip_reason"]
    (None, ['noise'], 'unreadable')
    ```
    """

    def __init__(self, dataset: datasets.Dataset, sampling_rate: int = SAMPLING_RATE):
        if "audio" not in dataset.column_names:
            raise ValueError(f"The dataset needs an `audio` column; its columns are {dataset.column_names}.")
        feature = dataset.features["audio"]
        if not isinstance(feature, datasets.Audio) or feature.decode:
            dataset = dataset.cast_column("audio", datasets.Audio(decode=False))
        self.dataset = dataset
        self.sampling_rate = sampling_rate

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        row = self.dataset[int(index)]
        captions = list(row.get("captions") or [])
        waveform, skip_reason = None, None
        try:
            waveform = load_audio(row["audio"], sampling_rate=self.sampling_rate)
            if is_silent(waveform):
                waveform, skip_reason = None, "silent"
        except AudioDecodeError as error:
            waveform, skip_reason = None, error.reason
        return {"index": index, "waveform": waveform, "captions": captions, "skip_reason": skip_reason}


def _choose_caption(captions: list[str], generator: np.random.Generator) -> str:
    """One caption drawn uniformly (AudioCaps-style clips have several); `""` when there is none."""
    return captions[int(generator.integers(len(captions)))] if captions else ""


def _per_example(generator, examples: list) -> list:
    """The generator of each example: the list's own, or the one generator drawn from in turn."""
    if not isinstance(generator, list):
        return [generator] * len(examples)
    if len(generator) != len(examples):
        raise ValueError(f"`generator` is a list of {len(generator)} generators for {len(examples)} examples.")
    return generator


def collate_audio_captions(
    examples: list[dict],
    generator: np.random.Generator | list[np.random.Generator] | None,
    num_samples: int = SEGMENT_SAMPLES,
    all_captions: bool = False,
) -> dict:
    """
    Batches [`AudioCaptionDataset`] examples: drops skipped ones, cuts a segment from each waveform and picks one
    caption per example.

    For each kept example, in order, `generator` first draws the crop start
    ([`~diffusers_impact.audio.prepare_segment`]: random crop, centring, peak 0.5, zero padding) and then the
    caption, uniformly among its captions (an example without captions gets `""`). Use it as a `DataLoader`
    `collate_fn` through `functools.partial`; with `num_workers > 0` every worker holds a copy of the same generator,
    so seed one per worker (`worker_init_fn`) if the workers' draws must differ.

    Args:
        examples (`list[dict]`): Examples from [`AudioCaptionDataset`].
        generator (`np.random.Generator`, *optional*): Draws the crops and the captions; a list holds one generator
            per example (each example's draws then do not depend on the others); `None` takes each clip's first
            segment (then `all_captions` must be set).
        num_samples (`int`, defaults to 163840): Segment length.
        all_captions (`bool`, defaults to `False`): Return every caption of each example (`list[list[str]]`).

    Returns:
        `dict`: `"waveforms"` (`torch.FloatTensor` of shape `(num_kept, num_samples)`), `"captions"` (`list[str]`),
        `"indices"` (the kept examples' dataset indices) and `"skipped"` (`collections.Counter` of skip reasons).

    Example:

    ```py
    >>> import numpy as np
    >>> from diffusers_impact.training.data import collate_audio_captions

    >>> examples = [
    ...     {"index": 0, "waveform": np.ones(10) * np.arange(10), "captions": ["a dog"], "skip_reason": None},
    ...     {"index": 1, "waveform": None, "captions": ["rain"], "skip_reason": "silent"},
    ... ]
    >>> batch = collate_audio_captions(examples, np.random.default_rng(0), num_samples=16)
    >>> batch["waveforms"].shape, batch["captions"], batch["indices"], batch["skipped"]
    (torch.Size([1, 16]), ['a dog'], [0], Counter({'silent': 1}))
    ```
    """
    if generator is None and not all_captions:
        raise ValueError("`collate_audio_captions` needs a `generator` to choose captions (or `all_captions=True`).")
    skipped = collections.Counter(example["skip_reason"] for example in examples if example["skip_reason"] is not None)
    waveforms, captions, indices = [], [], []
    for example, example_generator in zip(examples, _per_example(generator, examples)):
        if example["skip_reason"] is not None:
            continue
        waveforms.append(prepare_segment(example["waveform"], num_samples=num_samples, generator=example_generator))
        texts = example["captions"]
        captions.append(list(texts) if all_captions else _choose_caption(texts, example_generator))
        indices.append(example["index"])
    batch = torch.from_numpy(np.stack(waveforms)) if waveforms else torch.zeros(0, num_samples)
    return {"waveforms": batch, "captions": captions, "indices": indices, "skipped": skipped}


def load_usable_audio(source: str | os.PathLike, split: str = "train", audio_column: str = "audio"):
    """
    The decodable, non-silent clips of an audio dataset, for training the VAE or the vocoder (captions unused).

    Every file is read once here: unreadable, empty and silent ones are left out (see [`AudioCaptionDataset`]), and a
    dataset without any usable clip is an error.

    Returns:
        `torch.utils.data.Subset` of [`AudioCaptionDataset`] examples.

    Example:

    ```py
    >>> import os, tempfile
    >>> import numpy as np, soundfile
    >>> from diffusers_impact.training.data import load_usable_audio

    >>> folder = tempfile.mkdtemp()
    >>> soundfile.write(os.path.join(folder, "tone.wav"), np.sin(np.arange(16000) / 10), 16000)
    >>> soundfile.write(os.path.join(folder, "silence.wav"), np.zeros(16000), 16000)
    >>> clips = load_usable_audio(folder)
    >>> len(clips), clips[0]["waveform"].shape
    (1, (16000,))
    ```
    """
    dataset = AudioCaptionDataset(load_audio_dataset(source, split, audio_column, caption_column=None))
    usable = [index for index in range(len(dataset)) if dataset[index]["skip_reason"] is None]
    if not usable:
        raise ValueError(f"No usable audio in {source}: every file is unreadable, empty or silent.")
    return torch.utils.data.Subset(dataset, usable)


def random_mel_windows(
    dataset, batch_size: int, segment_frames: int, crop_frames: int, generator: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """
    Random log-mel windows for training a VAE or a vocoder on the AudioLDM front-end.

    `batch_size` examples are drawn (with replacement) from `dataset` ([`AudioCaptionDataset`] examples without
    skipped audio); each is prepared as a training segment of `segment_frames` mel frames
    ([`collate_audio_captions`]: random crop, centring, peak 0.5, zero padding), its log-mel spectrogram computed,
    and a random window of `crop_frames` frames cut out of it. Frame t is centred on sample t · 160, so the window
    starting at frame s covers samples [s · 160, (s + crop_frames) · 160) of its segment.

    Returns:
        `tuple`: the windows `(batch_size, 1, crop_frames, 64)`, the segments' waveforms
        `(batch_size, segment_frames · 160)` and the windows' first frames `(batch_size,)`.

    Example:

    ```py
    >>> import numpy as np
    >>> from diffusers_impact.training.data import random_mel_windows

    >>> examples = [{"index": 0, "waveform": np.random.randn(8000), "captions": [], "skip_reason": None}]
    >>> windows, waveforms, starts = random_mel_windows(examples, 3, 64, 16, np.random.default_rng(0))
    >>> windows.shape, waveforms.shape, starts.shape
    (torch.Size([3, 1, 16, 64]), torch.Size([3, 10240]), (3,))
    ```
    """
    examples = [dataset[int(index)] for index in generator.integers(len(dataset), size=batch_size)]
    waveforms = collate_audio_captions(examples, generator, num_samples=segment_frames * HOP_LENGTH)["waveforms"]
    mels = mel_spectrogram(waveforms, num_frames=segment_frames)
    starts = generator.integers(0, segment_frames - crop_frames + 1, size=len(mels))
    windows = torch.stack([mel[:, start : start + crop_frames] for mel, start in zip(mels, starts)])
    return windows, waveforms, starts


# ------------------------------------------------------------------------------------------ pre-computed latents
LATENT_COLUMNS = ("latent_mean", "latent_std")
TEXT_EMBEDDING_COLUMNS = ("text_embeds", "text_lengths", "pooled_text_embeds")


def save_latent_dataset(records: Iterable[dict], path: str | os.PathLike, shard_size: int = 1000) -> int:
    """
    Save VAE posterior parameters with their captions as a `save_to_disk` dataset; returns the number of records.

    Each record holds `latent_mean` and `latent_std` (float16 arrays of one shape, e.g. `(8, 256, 16)`) and
    `captions` (`list[str]`, possibly empty). Records may also carry pre-computed text embeddings (all records or
    none): `text_embeds` (float16, `(total_tokens, text_dim)`: the real tokens of every caption, one after the
    other), `text_lengths` (tokens per caption) and, for a pooled condition, `pooled_text_embeds` (float16,
    `(num_captions, pooled_dim)`). Records are written in shards of `shard_size`, so memory stays bounded.

    Example:

    ```py
    >>> import numpy as np, tempfile
    >>> from diffusers_impact.training.data import load_latent_dataset, save_latent_dataset

    >>> records = [{"latent_mean": np.zeros((8, 4, 2), np.float16), "latent_std": np.ones((8, 4, 2), np.float16),
    ...             "captions": ["a dog", "a puppy"]}] * 3
    >>> folder = tempfile.mkdtemp()
    >>> save_latent_dataset(records, folder)
    3
    >>> load_latent_dataset(folder)[0]["captions"]
    ['a dog', 'a puppy']
    ```
    """
    shards, buffer, features = [], [], None
    for record in records:
        if features is None:
            shape = tuple(record["latent_mean"].shape)
            features = {
                "latent_mean": datasets.Array3D(shape=shape, dtype="float16"),
                "latent_std": datasets.Array3D(shape=shape, dtype="float16"),
                "captions": datasets.Sequence(datasets.Value("string")),
            }
            if "text_embeds" in record:
                features["text_embeds"] = datasets.Array2D(
                    shape=(None, record["text_embeds"].shape[1]), dtype="float16"
                )
                features["text_lengths"] = datasets.Sequence(datasets.Value("int32"))
            if "pooled_text_embeds" in record:
                pooled_dim = record["pooled_text_embeds"].shape[1]
                features["pooled_text_embeds"] = datasets.Array2D(shape=(None, pooled_dim), dtype="float16")
            features = datasets.Features(features)
        buffer.append({name: record[name] for name in features})
        if len(buffer) == shard_size:
            shards.append(datasets.Dataset.from_list(buffer, features=features))
            buffer = []
    if buffer:
        shards.append(datasets.Dataset.from_list(buffer, features=features))
    if not shards:
        raise ValueError("No usable audio: the latent dataset would be empty.")
    dataset = datasets.concatenate_datasets(shards)
    dataset.save_to_disk(str(path))
    return len(dataset)


def load_latent_dataset(path: str | os.PathLike, require_captions: bool = True) -> datasets.Dataset:
    """
    Load a dataset written by [`save_latent_dataset`] (NumPy format). With `require_captions`, every row must have
    at least one caption (text-conditional training); a missing column raises a `ValueError` listing those present.
    """
    dataset = datasets.load_from_disk(str(path))
    if isinstance(dataset, datasets.DatasetDict):
        raise ValueError(f"{path} holds several splits {list(dataset)}; point to one split's folder.")
    missing = [name for name in (*LATENT_COLUMNS, "captions") if name not in dataset.column_names]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; it has {dataset.column_names}.")
    if require_captions:
        uncaptioned = sum(1 for captions in dataset["captions"] if not captions)
        if uncaptioned:
            raise ValueError(f"{uncaptioned} of {len(dataset)} latents in {path} have no caption.")
    array_columns = [name for name in (*LATENT_COLUMNS, *TEXT_EMBEDDING_COLUMNS) if name in dataset.column_names]
    return dataset.with_format("numpy", columns=array_columns, output_all_columns=True)


class LatentCaptionDataset(torch.utils.data.Dataset):
    """
    Examples of a [`load_latent_dataset`] dataset: `{"index", "latent_mean", "latent_std", "captions"}`.

    Example:

    ```py
    >>> import numpy as np, tempfile
    >>> from diffusers_impact.training.data import LatentCaptionDataset, load_latent_dataset, save_latent_dataset

    >>> folder = tempfile.mkdtemp()
    >>> _ = save_latent_dataset([{"latent_mean": np.zeros((8, 4, 2), np.float16),
    ...                           "latent_std": np.ones((8, 4, 2), np.float16), "captions": ["a dog"]}], folder)
    >>> example = LatentCaptionDataset(load_latent_dataset(folder))[0]
    >>> example["latent_mean"].shape, example["captions"]
    ((8, 4, 2), ['a dog'])
    ```
    """

    def __init__(self, dataset: datasets.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        row = self.dataset[index]
        example = {"index": index, "captions": list(row["captions"])}
        example.update({name: row[name] for name in (*LATENT_COLUMNS, *TEXT_EMBEDDING_COLUMNS) if name in row})
        return example


def collate_latent_captions(examples: list[dict], generator: np.random.Generator | list[np.random.Generator]) -> dict:
    """
    Batch [`LatentCaptionDataset`] examples: float32 `latent_mean` / `latent_std` tensors and one caption per example
    drawn with `generator` (a list: one per example, as [`collate_audio_captions`]); `"skipped"` is empty (bad audio
    was skipped when the latents were computed). With pre-computed text embeddings, the chosen caption's are returned
    too: `"prompt_embeds"` (float32, padded to the batch's longest caption), `"prompt_attention_mask"` and, for a
    pooled condition, `"pooled_prompt_embeds"`.
    """
    chosen = [
        int(example_generator.integers(len(e["captions"]))) if len(e["captions"]) else None
        for e, example_generator in zip(examples, _per_example(generator, examples))
    ]
    batch = {
        "latent_mean": torch.from_numpy(np.stack([e["latent_mean"] for e in examples]).astype(np.float32)),
        "latent_std": torch.from_numpy(np.stack([e["latent_std"] for e in examples]).astype(np.float32)),
        "captions": [e["captions"][k] if k is not None else "" for e, k in zip(examples, chosen)],
        "indices": [e["index"] for e in examples],
        "skipped": collections.Counter(),
    }
    if "text_embeds" not in examples[0]:
        return batch
    if any(k is None for k in chosen):
        raise ValueError("Pre-computed text embeddings need a caption for every latent.")
    token_rows = []
    for example, k in zip(examples, chosen):
        starts = np.concatenate([[0], np.cumsum(example["text_lengths"])])
        token_rows.append(torch.from_numpy(example["text_embeds"][starts[k] : starts[k + 1]].astype(np.float32)))
    batch["prompt_embeds"] = torch.nn.utils.rnn.pad_sequence(token_rows, batch_first=True)
    lengths = torch.tensor([len(rows) for rows in token_rows])
    batch["prompt_attention_mask"] = torch.arange(batch["prompt_embeds"].shape[1])[None] < lengths[:, None]
    if "pooled_text_embeds" in examples[0]:
        pooled = [e["pooled_text_embeds"][k].astype(np.float32) for e, k in zip(examples, chosen)]
        batch["pooled_prompt_embeds"] = torch.from_numpy(np.stack(pooled))
    return batch


def epoch_batches(num_examples: int, batch_size: int, seed: int, epoch: int, process_index: int, num_processes: int):
    """This process's index batches of one epoch: a seeded permutation, the last partial global batch dropped."""
    order = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed + 7919 * epoch)).tolist()
    global_batch = batch_size * num_processes
    starts = range(
        process_index * batch_size, num_examples - global_batch + 1 + process_index * batch_size, global_batch
    )
    return [order[start : start + batch_size] for start in starts]


def batch_generators(
    seed: int, batch_counter: int, first_position: int, num_samples: int
) -> tuple[torch.Generator, list[torch.Generator], list[np.random.Generator]]:
    """
    Reproducible generators for one global batch: one for the batch itself (its mask ratio and dropout seed, the same
    on every process), and a torch and a NumPy generator per sample, keyed by the sample's position in the global
    batch (`first_position` is this process's first), so that no draw depends on how the batch is split.
    """
    batch_state = np.random.SeedSequence([seed, batch_counter]).generate_state(1)
    sample_states = [
        np.random.SeedSequence([seed, batch_counter, position]).generate_state(2)
        for position in range(first_position, first_position + num_samples)
    ]
    return (
        torch.Generator().manual_seed(int(batch_state[0])),
        [torch.Generator().manual_seed(int(state[0])) for state in sample_states],
        [np.random.default_rng(int(state[1])) for state in sample_states],
    )
