#!/usr/bin/env python
# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Generate one clip per AudioCaps test caption with an ImpactPipeline, then score them as the paper's Table 1.

    python examples/evaluation/evaluate.py --pipeline ./impact --captions audiocaps_test.csv --id_column youtube_id \
        --output_dir ./generated --reference_dir ./audiocaps_test_16k \
        --panns_checkpoint Cnn14_16k_mAP=0.438.pth --vggish_checkpoint vggish-10086976.pth

`--captions` is a CSV, JSON (a list of records, or `{"data": [...]}`) or JSON Lines file with an id and a caption
column, or a 🤗 datasets dataset (a `save_to_disk` folder or a Hub id) with id, caption and optionally audio columns.
An id listed several times (AudioCaps has five captions per clip) keeps its first caption.

Every clip is written as a 16 kHz mono WAV `<output_dir>/<id>.wav` (through a temporary file renamed when complete),
and ids whose WAV exists are skipped, so an interrupted run resumes where it stopped. Under `accelerate launch` (or
`torchrun`) the clips are shared out: process p of N generates clips p, p + N, p + 2N, ... on its own device, and once
all are written the main process alone computes the metrics:

    accelerate launch --num_processes 8 examples/evaluation/evaluate.py --pipeline ./impact --captions audiocaps_test.csv ...
 Clip i of the list is generated
with its own generator seeded `--seed + i`, so it does not depend on the batch size or on resuming (but for
floating-point rounding).

With `--reference_dir`, the generated folder is evaluated against the reference clips of the same ids (FD, FAD, KL,
IS with PANNs Cnn14 and VGGish as audioldm_eval; CLAP with laion/clap-htsat-fused; paper §4.3 and App. F). When the
dataset has an audio column, its clips are first written there as 16 kHz mono WAVs. The checkpoints default to their
public URLs (downloaded once); pass local files on a machine without network access. Only the official files are
loaded (checked by SHA-256); `--panns_sha256` / `--vggish_sha256` give the hash of a checkpoint of your own. The
metrics are printed and written as JSON to `--metrics_file` (default: `<output_dir>_metrics.json`).
"""

import argparse
import csv
import json
import os
from pathlib import Path

import numpy as np
import soundfile
import torch
from accelerate import PartialState
from tqdm.auto import tqdm

from diffusers_impact import ImpactPipeline
from diffusers_impact.audio import load_audio, resample
from diffusers_impact.evaluation import (
    CLAP_MODEL_ID,
    PANNS_CNN14_16K_URL,
    VGGISH_URL,
    AudioEvaluator,
)


# audioldm_eval evaluates at 16 kHz; writing 16 kHz files avoids any resampling there (evaluation.md §1).
OUTPUT_SAMPLING_RATE = 16000
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="ImpactPipeline folder or Hub id.")
    parser.add_argument("--captions", required=True, help="CSV / JSON / JSONL file, or a datasets folder or Hub id.")
    parser.add_argument("--output_dir", required=True, help="Where the generated <id>.wav files go.")
    parser.add_argument("--id_column", default="id")
    parser.add_argument("--caption_column", default="caption")
    parser.add_argument("--audio_column", default="audio", help="Reference audio column of a dataset, if it has one.")
    parser.add_argument("--split", default="test", help="Split of a dataset with several.")
    parser.add_argument("--batch_size", type=int, default=8, help="Captions per pipeline call.")
    parser.add_argument("--num_inference_steps", type=int, default=64, help="Decoding iterations (Table 1: 64).")
    parser.add_argument("--num_diffusion_steps", type=int, default=100, help="Diffusion-head steps (Table 1: 100).")
    parser.add_argument("--guidance_scale", type=float, default=5.0, help="β_max of the cfg schedule (App. A: 5).")
    parser.add_argument("--seed", type=int, default=0, help="Clip i uses seed + i.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="Pipeline weights' dtype.")
    parser.add_argument("--reference_dir", default=None, help="Reference clips <id>.<ext>: evaluate against them.")
    parser.add_argument(
        "--panns_checkpoint", default=PANNS_CNN14_16K_URL, help="Cnn14_16k_mAP=0.438.pth: file or URL."
    )
    parser.add_argument("--vggish_checkpoint", default=VGGISH_URL, help="vggish-10086976.pth: file or URL.")
    parser.add_argument(
        "--panns_sha256",
        default=None,
        help="SHA-256 of a PANNs checkpoint of your own (by default only the official file loads).",
    )
    parser.add_argument("--vggish_sha256", default=None, help="SHA-256 of a VGGish checkpoint of your own.")
    parser.add_argument("--clap_model", default=CLAP_MODEL_ID, help="CLAP Hub id or folder (paper App. F.4).")
    parser.add_argument("--metrics_file", default=None, help="JSON output (default: <output_dir>_metrics.json).")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch_size must be at least 1.")
    return args


CAPTION_FILE_SUFFIXES = (".csv", ".json", ".jsonl")


def read_records(path: str) -> list[dict]:
    """The rows of a CSV, JSON (a list, or {"data": list}) or JSON Lines file."""
    with open(path, encoding="utf-8", newline="") as file:
        suffix = Path(path).suffix.lower()
        if suffix == ".csv":
            records = list(csv.DictReader(file))
        elif suffix == ".jsonl":
            records = [json.loads(line) for line in file if line.strip()]
        else:
            records = json.load(file)
            records = records["data"] if isinstance(records, dict) and "data" in records else records
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise ValueError(f'--captions {path!r} must hold records (objects with named fields), e.g. {{"data": [...]}}.')
    return records


def load_dataset(source: str, split: str, audio_column: str):
    """A 🤗 dataset (save_to_disk folder or Hub id), its audio column undecoded (no torchcodec needed)."""
    import datasets

    if os.path.isdir(source):
        dataset = datasets.load_from_disk(source)
        if isinstance(dataset, datasets.DatasetDict):
            if split not in dataset:
                raise ValueError(f"Split {split!r} is not in {source!r}; it has {sorted(dataset)}.")
            dataset = dataset[split]
    else:
        dataset = datasets.load_dataset(source, split=split)
    if audio_column in dataset.column_names:
        dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))
    return dataset


def load_captions(args) -> tuple[list[tuple[str, str]], dict, object]:
    """
    `(id, caption)` pairs in list order (first caption per id), and for a dataset with audio: id → row index and the
    dataset (otherwise `{}` and `None`).
    """
    dataset = None
    if Path(args.captions).suffix.lower() in CAPTION_FILE_SUFFIXES:
        records = read_records(args.captions)
        columns = set(records[0]) if records else set()
    else:
        dataset = load_dataset(args.captions, args.split, args.audio_column)
        records = dataset.select_columns(
            [c for c in (args.id_column, args.caption_column) if c in dataset.column_names]
        )
        columns = set(dataset.column_names)
    missing = [column for column in (args.id_column, args.caption_column) if column not in columns]
    if missing:
        raise ValueError(
            f"--captions {args.captions!r} has no column(s) {missing}; its columns are {sorted(columns)}."
        )

    captions, rows = {}, {}
    for index, record in enumerate(records):
        clip_id, caption = record.get(args.id_column), record.get(args.caption_column)
        clip_id = "" if clip_id is None else str(clip_id).strip()
        if not clip_id or clip_id in {".", ".."} or "/" in clip_id or "\\" in clip_id:
            raise ValueError(f"Row {index}: id {clip_id!r} cannot be a file name (<id>.wav).")
        if not caption:
            raise ValueError(f"Row {index} (id {clip_id!r}) has no caption.")
        if clip_id not in captions:
            captions[clip_id] = str(caption)
            rows[clip_id] = index
    if not captions:
        raise ValueError(f"--captions {args.captions!r} has no rows.")
    if len(captions) < len(records):
        print(f"{len(records)} rows, {len(captions)} distinct ids: each id keeps its first caption.")
    has_audio = dataset is not None and args.audio_column in dataset.column_names
    return list(captions.items()), (rows if has_audio else {}), (dataset if has_audio else None)


def write_wav(path: Path, waveform: np.ndarray, sampling_rate: int) -> None:
    """A 16 kHz mono 16-bit WAV, written to a temporary file first and renamed, so `path` is complete if it exists."""
    waveform = np.asarray(waveform, dtype=np.float64)
    waveform = resample(waveform, sampling_rate, OUTPUT_SAMPLING_RATE)
    temporary = path.with_name(f".{path.name}.tmp")
    soundfile.write(temporary, np.clip(waveform, -1.0, 1.0), OUTPUT_SAMPLING_RATE, subtype="PCM_16", format="WAV")
    os.replace(temporary, path)


def generate(args, clips: list[tuple[str, str]], output_dir: Path, state: PartialState) -> None:
    """This process's share of the clips (every `num_processes`-th, see the module docstring) that are not written."""
    share = list(enumerate(clips))[state.process_index :: state.num_processes]
    pending = [
        (index, clip_id, caption)
        for index, (clip_id, caption) in share
        if not (output_dir / f"{clip_id}.wav").exists()
    ]
    shard = f" (process {state.process_index} of {state.num_processes})" if state.num_processes > 1 else ""
    print(
        f"{len(share) - len(pending)} of {len(share)} clips already in {output_dir}; generating {len(pending)}{shard}."
    )
    if not pending:
        return
    device = args.device if state.num_processes == 1 else state.device
    pipeline = ImpactPipeline.from_pretrained(args.pipeline, dtype=DTYPES[args.dtype]).to(device)
    pipeline.set_progress_bar_config(disable=True)
    sampling_rate = pipeline.vocoder.config.sampling_rate
    with tqdm(total=len(pending), desc=f"Generating{shard}", position=state.local_process_index) as progress:
        for start in range(0, len(pending), args.batch_size):
            batch = pending[start : start + args.batch_size]
            audios = pipeline(
                [caption for _, _, caption in batch],
                num_inference_steps=args.num_inference_steps,
                num_diffusion_steps=args.num_diffusion_steps,
                guidance_scale=args.guidance_scale,
                generator=[torch.Generator().manual_seed(args.seed + index) for index, _, _ in batch],
            ).audios
            for (_, clip_id, _), audio in zip(batch, audios):
                write_wav(output_dir / f"{clip_id}.wav", audio, sampling_rate)
            progress.update(len(batch))


def export_references(dataset, rows: dict, audio_column: str, reference_dir: Path) -> None:
    """Writes the dataset's clips as 16 kHz mono `<id>.wav` (the package's audio front-end), skipping existing ones."""
    pending = [clip_id for clip_id in rows if not (reference_dir / f"{clip_id}.wav").exists()]
    for clip_id in tqdm(pending, desc="Writing references", disable=not pending):
        audio = dataset[rows[clip_id]][audio_column]
        write_wav(reference_dir / f"{clip_id}.wav", load_audio(audio, OUTPUT_SAMPLING_RATE), OUTPUT_SAMPLING_RATE)


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    state = PartialState(cpu=args.device == "cpu")
    clips, reference_rows, dataset = load_captions(args)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    evaluator = None
    if args.reference_dir is not None and state.is_main_process:
        reference_dir = Path(args.reference_dir)
        if dataset is None and not reference_dir.is_dir():
            raise FileNotFoundError(f"--reference_dir {str(reference_dir)!r} does not exist.")
        # Load the evaluation networks first: a missing checkpoint fails now, not after the generation.
        evaluator = AudioEvaluator.from_pretrained(
            panns_checkpoint=args.panns_checkpoint,
            vggish_checkpoint=args.vggish_checkpoint,
            clap_model=args.clap_model,
            device=args.device,
            panns_sha256=args.panns_sha256,
            vggish_sha256=args.vggish_sha256,
        )

    generate(args, clips, output_dir, state)
    state.wait_for_everyone()  # every process's clips are written
    if evaluator is None:
        return None

    if dataset is not None:
        reference_dir.mkdir(parents=True, exist_ok=True)
        export_references(dataset, reference_rows, args.audio_column, reference_dir)
    metrics = evaluator.evaluate(output_dir, reference_dir, captions=dict(clips))
    print(
        "  ".join(
            f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}"
            for name, value in metrics.items()
        )
    )
    metrics_file = Path(args.metrics_file or f"{output_dir.resolve()}_metrics.json")
    settings = {
        name: getattr(args, name)
        for name in (
            "pipeline",
            "captions",
            "num_inference_steps",
            "num_diffusion_steps",
            "guidance_scale",
            "seed",
            "dtype",
            "reference_dir",
            "panns_checkpoint",
            "vggish_checkpoint",
            "panns_sha256",
            "vggish_sha256",
            "clap_model",
        )
    }
    metrics_file.write_text(json.dumps({**metrics, "settings": settings}, indent=2) + "\n")
    print(f"Metrics written to {metrics_file}.")
    return metrics


if __name__ == "__main__":
    main()
