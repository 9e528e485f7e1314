#!/usr/bin/env python
# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Audio input on the embedded default model, measured on its ten real recordings (README, "Audio in, audio out").

    python examples/default_model/evaluate_audio_input.py --output_dir ./audio-input-report [--pipeline FOLDER]

(`--pipeline`: another model of the default model's kind, such as the recipe's `<output_dir>/pipeline`.)

About 4 minutes on a 2-core CPU. Each recording is taken as the model's 5.12 s clip (`prepare_segment`, as in
training), and with three seed sets:

* **Kept samples**: outside every generated region the output must equal the input sample for sample.
* **Inpainting follows the text**: a 2 s gap of each recording (at 1–3 s, and at 0–2 s, where the training clips have
  their calls) is filled with another animal's caption (the sound three places on in alphabetical order); the filled
  part is classified by its nearest real recording, as `evaluate_demo.py` does.
* **Continuation keeps the sound**: each recording's first second is continued by 4 s with its own caption; the 4 s
  are classified.
* **Seams**: the spectral flux of the log-mel spectrogram (mean |Δ log-mel| over the 64 bins between neighbouring
  10 ms frames), its maximum within ±50 ms of each boundary (region edges, the end of a continued input, the overlaps
  of long-form windows), against the same maximum at every active frame of the real recordings.
* **Long-form**: "a dog barking" for `--long_seconds` (60) in one call, and one 5.12 s call, each in a fresh process:
  peak resident memory (`ru_maxrss`) and time; its seams at the window overlaps.

Writes `results.json`, `report.md` (the README's tables) and `audio_input.png` (input, generated tokens and output mel
spectrograms for inpainting, continuation and long-form).
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_demo import ACTIVE_RANGE, ASSETS, acoustic_features, load_pipeline  # noqa: E402

from diffusers_impact.audio import load_audio, mel_spectrogram, prepare_segment  # noqa: E402


SEED_SETS = (0, 100, 200)
GAPS = ((1.0, 3.0), (0.0, 2.0))  # seconds
CONTINUED_SECONDS, CONTINUATION_SECONDS = 1.0, 4.0
SEAM_RADIUS_FRAMES = 5  # ±50 ms: the crossfade's length
MEMORY_SCRIPT = """
import json, resource, sys, time, torch
from diffusers_impact import load_default_pipeline
if sys.argv[3]:  # --pipeline: loaded as evaluate_demo.py loads it (imported only here, to keep the default's memory)
    sys.path.insert(0, sys.argv[4])
    from evaluate_demo import load_pipeline
    pipe = load_pipeline(sys.argv[3])
else:
    pipe = load_default_pipeline(head=sys.argv[2])
pipe.set_progress_bar_config(disable=True)
start = time.perf_counter()
audio = pipe("a dog barking", audio_length_in_s=float(sys.argv[1]), generator=torch.Generator().manual_seed(0)).audios
print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "samples": audio.shape[1]}))
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--head", choices=["diffusion", "energy"], default="diffusion", help="The embedded model's.")
    parser.add_argument(
        "--pipeline",
        default=None,
        help="An ImpactPipeline folder of the default model's kind, saved without its text encoder (e.g. the "
        "recipe's <output_dir>/pipeline) instead of the embedded model; --head does not apply.",
    )
    parser.add_argument("--long_seconds", type=float, default=60.0)
    return parser.parse_args(argv)


def log_mel(waveforms: np.ndarray) -> np.ndarray:
    """`(n, frames, 64)` log-mel spectrograms of 16 kHz waveforms, all frames."""
    return mel_spectrogram(torch.as_tensor(np.asarray(waveforms, dtype=np.float32)), num_frames=None)[:, 0].numpy()


def spectral_flux(mel: np.ndarray) -> np.ndarray:
    """Mean |Δ log-mel| over the bins between frame t and t − 1 (entry t − 1 of the result)."""
    return np.abs(np.diff(mel, axis=0)).mean(axis=1)


def seam_flux(waveform: np.ndarray, boundary_s: float) -> float:
    """The largest spectral flux within ±`SEAM_RADIUS_FRAMES` of `boundary_s`."""
    flux = spectral_flux(log_mel(waveform[None])[0])
    frame = round(boundary_s * 100)
    return float(flux[max(0, frame - SEAM_RADIUS_FRAMES) : frame + SEAM_RADIUS_FRAMES].max())


def real_flux_distribution(real: np.ndarray) -> np.ndarray:
    """The same windowed maximum at every active frame (within 40 dB of the loudest) of the real recordings."""
    values = []
    for mel in log_mel(real):
        flux = spectral_flux(mel)
        loudness = mel.mean(axis=1)
        active = np.flatnonzero(loudness[1:] >= loudness.max() - ACTIVE_RANGE)
        windowed = np.array([flux[max(0, t - SEAM_RADIUS_FRAMES) : t + SEAM_RADIUS_FRAMES].max() for t in active])
        values.append(windowed)
    return np.concatenate(values)


def percentiles(values) -> dict[str, float]:
    values = np.asarray(values)
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in (50, 90, 99)} | {
        "max": round(float(values.max()), 3)
    }


def classify(waveforms: list[np.ndarray], real_features: np.ndarray, sounds: list[str]) -> list[str]:
    """Nearest real recording (evaluate_demo.py's features) of each waveform, taken as a 5.12 s clip."""
    clips = np.stack([prepare_segment(waveform, num_samples=81920) for waveform in waveforms])
    distances = ((acoustic_features(clips)[:, None] - real_features[None]) ** 2).sum(-1)
    return [sounds[index] for index in distances.argmin(axis=1)]


def measure_long_form(seconds: float, head: str, pipeline: str | None) -> dict:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            MEMORY_SCRIPT,
            str(seconds),
            head,
            pipeline or "",
            str(Path(__file__).resolve().parent),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def save_figure(rows: list[tuple[str, np.ndarray, np.ndarray | None, np.ndarray, list[float]]], path: Path) -> None:
    """One row per use: input mel, output mel, the generated spans (seconds) marked, and other lines (window starts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(rows), 2, figsize=(12, 2.4 * len(rows)), squeeze=False)
    for (title, input_mel, output_mel, spans, lines), (input_axis, output_axis) in zip(rows, axes):
        for axis, mel, name in ((input_axis, input_mel, "input"), (output_axis, output_mel, "output")):
            if mel is None:
                axis.axis("off")
                axis.text(0.5, 0.5, "no input (text only)", ha="center", va="center", fontsize=10)
                continue
            seconds = mel.shape[0] / 100
            axis.imshow(
                mel.T, origin="lower", aspect="auto", cmap="magma", vmin=-11.5, vmax=2, extent=(0, seconds, 0, 64)
            )
            axis.set_title(f"{title}: {name}", fontsize=9)
            axis.set_xlabel("seconds", fontsize=8)
            axis.set_ylabel("mel bin", fontsize=8)
            axis.tick_params(labelsize=7)
        for start, end in spans:  # the generated spans: dashed edges on the output, shaded on the input
            for edge in (start, end):
                output_axis.axvline(edge, color="cyan", lw=1.0, ls="--")
            if input_mel is not None and end <= input_mel.shape[0] / 100:
                input_axis.axvspan(start, end, color="cyan", alpha=0.25, lw=0)
        for line in lines:
            output_axis.axvline(line, color="white", lw=0.6, ls="--")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None) -> int:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    from diffusers_impact import load_default_pipeline

    pipeline = load_pipeline(args.pipeline) if args.pipeline else load_default_pipeline(head=args.head)
    pipeline.set_progress_bar_config(disable=True)
    rate = pipeline.vocoder.config.sampling_rate
    captions = json.loads((ASSETS / "captions.json").read_text())
    sounds = sorted(captions)
    real = np.stack([prepare_segment(load_audio(ASSETS / f"{sound}.mp3"), num_samples=81920) for sound in sounds])
    real_features = acoustic_features(real)
    real_flux = real_flux_distribution(real)
    results = {
        "head": pipeline.head_type,
        "pipeline": args.pipeline,
        "real_seam_flux": percentiles(real_flux),
        "inpainting": {},
        "continuation": {},
    }
    seams = {"inpainting": [], "continuation": [], "long-form": []}
    kept_exact = {"continuation": 0}  # clips whose kept samples equal the input's, per task
    figure_rows = []
    start_time = time.perf_counter()

    for gap in GAPS:
        name = f"{gap[0]:.0f}–{gap[1]:.0f} s"
        correct, predictions = [], []
        for seed in SEED_SETS:
            outputs, wanted = [], []
            for index, sound in enumerate(sounds):
                other = sounds[(index + 3) % len(sounds)]
                out = pipeline(
                    captions[other][0],
                    audio=real[index],
                    mask_start_s=gap[0],
                    mask_end_s=gap[1],
                    generator=torch.Generator().manual_seed(seed + index),
                ).audios[0]
                start, end = round(gap[0] * rate), round(gap[1] * rate)
                kept = np.array_equal(out[:start], real[index, :start]) and np.array_equal(
                    out[end:], real[index, end:]
                )
                kept_exact[name] = kept_exact.get(name, 0) + int(kept)
                seams["inpainting"] += [seam_flux(out, boundary) for boundary in gap if 0 < boundary < 5.12]
                outputs.append(out[start:end])
                wanted.append(other)
                if seed == SEED_SETS[0] and index == 3 and gap == GAPS[0]:
                    figure_rows.append(
                        (
                            f"inpainting {sound} {name} with “{captions[other][0]}”",
                            log_mel(real[index][None])[0],
                            log_mel(out[None])[0],
                            [gap],
                            [],
                        )
                    )
            got = classify(outputs, real_features, sounds)
            correct.append(sum(a == b for a, b in zip(wanted, got)))
            predictions.append(
                {f"{sound} ← {want}": prediction for sound, want, prediction in zip(sounds, wanted, got)}
            )
        results["inpainting"][name] = {
            "correct_per_seed_set": correct,
            "total": len(sounds),
            "predictions": predictions,
        }
        print(f"inpainting {name}: {correct} /{len(sounds)} classified as the prompted sound", flush=True)

    correct, predictions = [], []
    continued = round(CONTINUED_SECONDS * rate)
    for seed in SEED_SETS:
        outputs = []
        for index, sound in enumerate(sounds):
            out = pipeline(
                captions[sound][0],
                audio=real[index, :continued],
                audio_length_in_s=CONTINUED_SECONDS + CONTINUATION_SECONDS,
                generator=torch.Generator().manual_seed(seed + index),
            ).audios[0]
            fade = round(0.05 * rate)
            kept_exact["continuation"] += int(np.array_equal(out[: continued - fade], real[index, : continued - fade]))
            seams["continuation"].append(seam_flux(out, CONTINUED_SECONDS))
            outputs.append(out[continued:])
            if seed == SEED_SETS[0] and index == 2:
                figure_rows.append(
                    (
                        f"continuation of {sound}'s first second",
                        log_mel(real[index, :continued][None])[0],
                        log_mel(out[None])[0],
                        [(CONTINUED_SECONDS, CONTINUED_SECONDS + CONTINUATION_SECONDS)],
                        [],
                    )
                )
        got = classify(outputs, real_features, sounds)
        correct.append(sum(a == b for a, b in zip(sounds, got)))
        predictions.append(dict(zip(sounds, got)))
    results["continuation"] = {"correct_per_seed_set": correct, "total": len(sounds), "predictions": predictions}
    print(f"continuation: {correct} /{len(sounds)} classified as the same sound", flush=True)
    results["kept_samples_exact"] = {
        name: f"{count}/{len(SEED_SETS) * len(sounds)}" for name, count in kept_exact.items()
    }

    # Long-form: one call in-process for its seams and figure, then memory and time in fresh processes.
    long_audio = pipeline(
        "a dog barking", audio_length_in_s=args.long_seconds, generator=torch.Generator().manual_seed(0)
    ).audios[0]
    column = pipeline.seconds_per_token_column
    window_columns = pipeline.transformer.config.latent_length // pipeline.transformer.config.patch_size
    from diffusers_impact.pipelines.audio_input import window_starts

    starts = window_starts(round(args.long_seconds / column), window_columns, window_columns // 2)
    joins = [start * column for start in starts[1:]] + [(start + window_columns // 2) * column for start in starts[1:]]
    joins = sorted(join for join in joins if join < args.long_seconds)
    seams["long-form"] = [seam_flux(long_audio, join) for join in joins]
    figure_rows.append(
        (
            f"long-form: “a dog barking”, {args.long_seconds:.0f} s in one call",
            None,
            log_mel(long_audio[None])[0],
            [],
            [start * column for start in starts[1:]],
        )
    )
    results["long_form"] = {
        "seconds": args.long_seconds,
        "windows": len(starts),
        args.long_seconds: measure_long_form(args.long_seconds, args.head, args.pipeline),
        pipeline.max_audio_length_in_s: measure_long_form(pipeline.max_audio_length_in_s, args.head, args.pipeline),
    }
    results["seam_flux"] = {name: percentiles(values) for name, values in seams.items()}
    results["seams_above_real_max"] = {
        name: int(sum(value > real_flux.max() for value in values)) for name, values in seams.items()
    }
    results["seconds"] = round(time.perf_counter() - start_time, 1)
    save_figure(figure_rows, output_dir / "audio_input.png")
    (output_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    (output_dir / "report.md").write_text(markdown_report(results))
    print(markdown_report(results))
    return 0


def markdown_report(results: dict) -> str:
    lines = ["| task | seed sets 0, 100, 200 | kept samples exact |", "|---|---|---|"]
    for name, entry in results["inpainting"].items():
        scores = ", ".join(f"{value}/{entry['total']}" for value in entry["correct_per_seed_set"])
        kept = results["kept_samples_exact"][name]
        lines.append(f"| inpainting a 2 s gap at {name}, another animal's caption | {scores} | {kept} clips |")
    entry = results["continuation"]
    scores = ", ".join(f"{value}/{entry['total']}" for value in entry["correct_per_seed_set"])
    lines.append(
        f"| continuing each first second by 4 s, own caption | {scores} | "
        f"{results['kept_samples_exact']['continuation']} clips |"
    )
    lines += [
        "",
        "| spectral flux within ±50 ms | p50 | p90 | p99 | max | above real max |",
        "|---|---|---|---|---|---|",
    ]
    real = results["real_seam_flux"]
    lines.append(
        f"| real recordings (every active frame) | {real['p50']} | {real['p90']} | {real['p99']} | {real['max']} | |"
    )
    for name, entry in results["seam_flux"].items():
        above = results["seams_above_real_max"][name]
        lines.append(f"| {name} seams | {entry['p50']} | {entry['p90']} | {entry['p99']} | {entry['max']} | {above} |")
    long_form = results["long_form"]
    lines += ["", "| one call | windows | time | peak memory (RSS) |", "|---|---|---|---|"]
    for seconds, entry in long_form.items():
        if isinstance(entry, dict):
            lines.append(
                f"| {float(seconds):.2f} s | {long_form['windows'] if float(seconds) == long_form['seconds'] else 1} | "
                f"{entry['seconds']:.1f} s | {entry['peak_rss_mib']:.0f} MiB |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
