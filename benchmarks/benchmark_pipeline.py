#!/usr/bin/env python
# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Latency and throughput of `ImpactPipeline` against diffusers' `AudioLDMPipeline` (IMPACT paper, App. B, Table 8).

Both pipelines are built in code with random weights at their real sizes (no download): IMPACT base (Flan-T5-large
and CLAP text encoders, the paper's base transformer and diffusion head, AudioLDM VAE and HiFi-GAN) and AudioLDM
`cvssp/audioldm-s-full-v2` (CLAP text encoder, UNet, VAE, HiFi-GAN). Random weights cost the same time as trained
ones. Every pipeline call is timed end to end and split into stages (text encoding, transformer / UNet, diffusion
head, VAE decode, vocoder) by timing wrappers around the pipeline's own methods and models; on CUDA the device is
synchronised at every stage boundary. The pipelines' code is not changed.

Reduced grid (CPU; the unmeasured paper grid is extrapolated from per-step costs and marked as such):

    python benchmarks/benchmark_pipeline.py --device cpu --batch_sizes 1 --decoding_steps 2 4 --head_steps 2 \
        --audioldm_steps 2 4 --output benchmarks/results/cpu_reduced.json

Full paper grid on a GPU:

    python benchmarks/benchmark_pipeline.py --device cuda --dtype fp32 --batch_sizes 1 2 4 8 16 32 64 \
        --decoding_steps 4 8 16 32 64 --head_steps 100 --audioldm_steps 200 --audio_length 10.24 \
        --warmup 1 --repeats 3 --output benchmarks/results/gpu_full_grid.json

Plot with `python benchmarks/plot_benchmark.py RESULTS.json`.
"""

import argparse
import gc
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import diffusers
import torch
import transformers
from benchmark_models import (
    DEFAULT_AUDIO_LENGTH,
    DEFAULT_PROMPT,
    build_audioldm_pipeline,
    build_impact_pipeline,
    compile_forward,
    describe_components,
    prepare_pipeline,
    with_energy_head,
)
from extrapolation import AUDIOLDM_STAGE_SCALING, IMPACT_STAGE_SCALING, compare, extrapolate, side_by_side
from paper_reference import (
    AUDIOLDM_STEPS,
    PAPER_DECODING_STEPS,
    PAPER_HEAD_STEPS,
    paper_reference,
)
from timing import instrument_audioldm, instrument_impact, measure

import diffusers_impact
from diffusers_impact.pipelines.pipeline_impact import DIFFUSION_STEP_ANNEALING_SHAPES as ANNEALING_SHAPES


REPOSITORY_ROOT = Path(__file__).resolve().parents[1]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

IMPACT_GUIDANCE_SCALE = 5.0  # β_max of the paper's cosine guidance schedule (App. A)
AUDIOLDM_GUIDANCE_SCALE = 2.5  # AudioLDMPipeline's default

FULL_GRID_COMMAND = (
    "python benchmarks/benchmark_pipeline.py --device cuda --dtype fp32 --batch_sizes 1 2 4 8 16 32 64 "
    "--decoding_steps 4 8 16 32 64 --head_steps 100 --audioldm_steps 200 --audio_length 10.24 "
    "--warmup 1 --repeats 3 --output benchmarks/results/gpu_full_grid.json"
)


# ----------------------------------------------------------------------------------------------------- arguments
ENERGY_HEAD = "energy"  # a `--head_steps` value: AudioDEAR's one-step head instead of the diffusion head


def head_steps_argument(text: str) -> int | list | str:
    """
    `100`, or `50:5` for diffusion step annealing from 50 to 5 steps (a list, as the pipeline and JSON take it), or
    `50:5:geometric` for the pipeline's geometric annealing shape, or `energy` for the one-step energy head.
    """
    if text == ENERGY_HEAD:
        return text
    parts = text.split(":")
    shape = parts.pop() if len(parts) == 3 else None
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if not 1 <= len(values) <= 2 or min(values) < 1 or (shape is not None and shape not in ANNEALING_SHAPES):
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, FIRST:LAST, FIRST:LAST:SHAPE (SHAPE one of {ANNEALING_SHAPES}) or "
            f"{ENERGY_HEAD!r}, got {text!r}"
        )
    if len(values) == 1:
        return values[0]
    return values + [shape] if shape is not None else values


def annealing_kwargs(head_steps: int | list | str) -> dict:
    """The pipeline arguments for a `head_steps_argument` value (none for the energy head)."""
    if head_steps == ENERGY_HEAD:
        return {}
    if isinstance(head_steps, int):
        return {"num_diffusion_steps": head_steps}
    shape = head_steps[2] if len(head_steps) == 3 else "linear"
    return {"num_diffusion_steps": tuple(head_steps[:2]), "diffusion_step_annealing": shape}


def head_steps_label(head_steps: int | list[int] | str) -> str:
    return str(head_steps) if isinstance(head_steps, (int, str)) else ":".join(map(str, head_steps))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--batch_sizes", type=int, nargs="+", default=[1], help="Clips per pipeline call (paper: 1–64)."
    )
    parser.add_argument(
        "--decoding_steps",
        type=int,
        nargs="+",
        default=list(PAPER_DECODING_STEPS),
        help="IMPACT decoding iterations T to measure (paper: 4 8 16 32 64).",
    )
    parser.add_argument(
        "--head_steps",
        type=head_steps_argument,
        nargs="+",
        default=[PAPER_HEAD_STEPS],
        help="IMPACT diffusion-head sampling steps per iteration to measure (paper: 100), or FIRST:LAST for diffusion "
        "step annealing (DiSA, e.g. 50:5), or FIRST:LAST:geometric for its geometric shape, or 'energy' for "
        "AudioDEAR's one-step energy head (EAR-B size, sharing every other component).",
    )
    parser.add_argument(
        "--audioldm_steps",
        type=int,
        nargs="+",
        default=[AUDIOLDM_STEPS],
        help="AudioLDM denoising steps to measure (the comparison is at 200).",
    )
    parser.add_argument(
        "--audio_length",
        type=float,
        default=None,
        help="Seconds of audio per clip; IMPACT's latent length is built to match. Default 10.24 (0.64 with --tiny).",
    )
    parser.add_argument(
        "--pipelines",
        nargs="+",
        choices=["impact", "audioldm"],
        default=["impact", "audioldm"],
        help="Pipelines to time; the IMPACT/AudioLDM ratio needs both.",
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda or cuda:N."
    )
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default="fp32", help="Weights and activations (fp16: CUDA only)."
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the denoisers (IMPACT transformer and head, AudioLDM UNet).",
    )
    parser.add_argument("--warmup", type=int, default=1, help="Untimed calls before every timed configuration.")
    parser.add_argument(
        "--repeats", type=int, default=3, help="Timed calls per configuration; the median is reported."
    )
    parser.add_argument(
        "--num_threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)."
    )
    parser.add_argument(
        "--prompt", default=DEFAULT_PROMPT, help="Prompt of every clip; its length sets the text tokens."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the weights and of every call's generator.")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="Tiny random components (diffusers_impact.testing_utils) instead of the real sizes: a smoke test.",
    )
    parser.add_argument("--output", default="benchmark_results.json", help="Where to write the JSON results.")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device} was asked for but CUDA is not available.")
    if args.dtype == "fp16" and device.type != "cuda":
        parser.error("--dtype fp16 is only supported on CUDA; on the CPU use --dtype fp32 or bf16.")
    if args.compile and args.warmup < 1:
        parser.error("--compile needs --warmup ≥ 1 so that compilation is not timed.")
    for name in ("batch_sizes", "decoding_steps", "audioldm_steps"):
        if min(getattr(args, name)) < 1:
            parser.error(f"--{name} takes positive integers.")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be ≥ 1 and --warmup ≥ 0.")
    if args.audio_length is None:
        args.audio_length = DEFAULT_AUDIO_LENGTH["tiny" if args.tiny else "base"]
    if args.audio_length <= 0:
        parser.error("--audio_length must be positive.")
    return args


# --------------------------------------------------------------------------------------------------- benchmarks
def pipeline_call(pipe, args, device: torch.device, batch_size: int, **call_kwargs) -> Callable[[], object]:
    """A call of `pipe` on `batch_size` copies of the prompt, with a freshly seeded generator every time."""

    def call():
        return pipe(
            prompt=[args.prompt] * batch_size,
            audio_length_in_s=args.audio_length,
            generator=torch.Generator(device).manual_seed(args.seed),
            output_type="np",
            **call_kwargs,
        )

    return call


def benchmark_impact(args, device: torch.device, dtype: torch.dtype) -> dict:
    """Build IMPACT and time it at every (batch size, decoding iterations, head steps) of the arguments."""
    pipe = prepare_pipeline(build_impact_pipeline(args.tiny, args.audio_length, args.prompt, args.seed), device, dtype)
    # The energy-head variant shares every component but the head (its timer wraps the shared transformer again).
    energy_pipe = None
    if ENERGY_HEAD in args.head_steps:
        energy_pipe = prepare_pipeline(with_energy_head(pipe, args.tiny, args.seed), device, dtype)
    if args.compile:
        compile_forward(pipe.transformer)
        compile_forward(pipe.diff_head)
        if energy_pipe is not None:
            compile_forward(energy_pipe.energy_head)
    timer = instrument_impact(pipe, device)
    energy_timer = instrument_impact(energy_pipe, device) if energy_pipe is not None else None
    # The pipeline truncates the Flan-T5 tokens to the transformer's text length.
    text_tokens = {
        "text_encoder": min(len(pipe.tokenizer(args.prompt).input_ids), pipe.transformer.config.max_text_length)
    }
    if pipe.clap_tokenizer is not None:
        text_tokens["clap_text_encoder"] = len(pipe.clap_tokenizer(args.prompt).input_ids)
    measurements = []
    for batch_size in args.batch_sizes:
        for decoding_steps in args.decoding_steps:
            for head_steps in args.head_steps:
                energy = head_steps == ENERGY_HEAD
                call = pipeline_call(
                    energy_pipe if energy else pipe,
                    args,
                    device,
                    batch_size,
                    num_inference_steps=decoding_steps,
                    **annealing_kwargs(head_steps),
                    guidance_scale=IMPACT_GUIDANCE_SCALE,
                )
                result = measure(call, energy_timer if energy else timer, device, args.warmup, args.repeats)
                measurements.append(
                    {
                        "batch_size": batch_size,
                        "decoding_steps": decoding_steps,
                        "decoding_iterations_run": pipe.num_timesteps,
                        "head_steps": head_steps,
                        **result,
                        "throughput_clips_per_s": batch_size / result["latency_s"],
                    }
                )
                print(format_measurement("IMPACT", measurements[-1]), flush=True)
    report = {
        "components": describe_components(pipe) | (describe_components(energy_pipe) if energy_pipe else {}),
        "latent_shape": [
            pipe.transformer.config.latent_channels,
            pipe.transformer.config.latent_length,
            pipe.transformer.config.latent_width,
        ],
        "num_tokens": pipe.transformer.num_tokens,
        "text_tokens": text_tokens,
        "guidance_scale": IMPACT_GUIDANCE_SCALE,
        "measurements": measurements,
    }
    return report


def benchmark_audioldm(args, device: torch.device, dtype: torch.dtype) -> dict:
    """Build AudioLDM and time it at every (batch size, denoising steps) of the arguments."""
    pipe = prepare_pipeline(
        build_audioldm_pipeline(args.tiny, args.audio_length, args.prompt, args.seed), device, dtype
    )
    if args.compile:
        compile_forward(pipe.unet)
    timer = instrument_audioldm(pipe, device)
    measurements = []
    for batch_size in args.batch_sizes:
        for steps in args.audioldm_steps:
            call = pipeline_call(
                pipe, args, device, batch_size, num_inference_steps=steps, guidance_scale=AUDIOLDM_GUIDANCE_SCALE
            )
            result = measure(call, timer, device, args.warmup, args.repeats)
            measurements.append(
                {
                    "batch_size": batch_size,
                    "steps": steps,
                    **result,
                    "throughput_clips_per_s": batch_size / result["latency_s"],
                }
            )
            print(format_measurement("AudioLDM", measurements[-1]), flush=True)
    report = {
        "components": describe_components(pipe),
        "text_tokens": {"text_encoder": pipe.tokenizer.model_max_length, "padding": "max_length"},
        "guidance_scale": AUDIOLDM_GUIDANCE_SCALE,
        "measurements": measurements,
    }
    return report


def free_memory(device: torch.device) -> None:
    """Collect the finished pipeline (its timing wrappers form reference cycles) before the next one is built."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def format_measurement(name: str, measurement: dict) -> str:
    """One progress line per measured setting."""
    steps = (
        f"T={measurement['decoding_steps']} S={head_steps_label(measurement['head_steps'])}"
        if "decoding_steps" in measurement
        else f"steps={measurement['steps']}"
    )
    stages = " ".join(f"{stage}={seconds:.3f}" for stage, seconds in measurement["breakdown_s"].items())
    return (
        f"{name:8s} batch={measurement['batch_size']:<3d} {steps:14s} latency={measurement['latency_s']:.3f} s "
        f"throughput={measurement['throughput_clips_per_s']:.3f} clips/s  [{stages} unaccounted={measurement['unaccounted_s']:.3f}]"
    )


# ---------------------------------------------------------------------------------------------------- reporting
def machine_info(device: torch.device) -> dict:
    """The machine and software the numbers were measured with."""
    cpu_model = platform.processor() or None
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as cpuinfo:
            cpu_model = next(
                (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu_model
            )
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "diffusers_impact": diffusers_impact.__version__,
        "git_commit": commit,
    }


def print_summary(results: dict) -> None:
    """Print the IMPACT / AudioLDM ratios and the full-grid GPU command."""
    if results["side_by_side"]:
        print("\nMeasured side by side (IMPACT latency / AudioLDM latency):")
        for row in results["side_by_side"]:
            ratios = "  ".join(
                f"{key.removeprefix('over_')} {value:.3f}" for key, value in row.items() if key.startswith("over_")
            )
            print(
                f"  batch {row['batch_size']:<3d} T={row['decoding_steps']:<3d} S={head_steps_label(row['head_steps']):6s} "
                f"IMPACT {row['impact_latency_s']:8.2f} s (head {row['head_s']:.2f} s)  {ratios}"
            )
    if results["comparison"]:
        print("\nIMPACT (100 head steps) / AudioLDM (200 steps) latency:")
        for row in results["comparison"]:
            sources = [
                source if source == "measured" else source.upper()
                for source in (row["impact_source"], row["audioldm_source"])
            ]
            print(
                f"  batch {row['batch_size']:<3d} T={row['decoding_steps']:<3d} IMPACT {row['impact_latency_s']:9.2f} s "
                f"({sources[0]})  AudioLDM {row['audioldm_latency_s']:9.2f} s ({sources[1]})  "
                f"ratio {row['impact_over_audioldm']:.3f}"
            )
    print(f"\nFull paper grid on a GPU:\n  {FULL_GRID_COMMAND}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    results = {
        "description": "Latency (s per batch) and throughput (clips/s) of ImpactPipeline vs diffusers' AudioLDMPipeline, random weights.",
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(sys.argv if argv is None else ["benchmark_pipeline.py", *argv]),
        "machine": machine_info(device),
        "settings": {
            "model_config": "tiny" if args.tiny else "base",
            "device": str(device),
            "dtype": args.dtype,
            "compile": args.compile,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "seed": args.seed,
            "prompt": args.prompt,
            "audio_length_s": args.audio_length,
            "batch_sizes": args.batch_sizes,
            "decoding_steps": args.decoding_steps,
            "head_steps": args.head_steps,
            "audioldm_steps": args.audioldm_steps,
            "timing": (
                "time.perf_counter around each pipeline call (prompts in, NumPy waveforms out); latency is the median "
                "of the repeats and breakdown_s that call's stages (on CUDA synchronised at every stage boundary); "
                "unaccounted_s is the rest (schedulers, masking, host work)."
            ),
        },
    }
    targets = sorted(set(PAPER_DECODING_STEPS) | set(args.decoding_steps))
    if "impact" in args.pipelines:
        impact = benchmark_impact(args, device, dtype)
        impact["extrapolation"] = extrapolate(
            impact["measurements"],
            IMPACT_STAGE_SCALING,
            "decoding_steps",
            [{"decoding_steps": steps, "head_steps": PAPER_HEAD_STEPS} for steps in targets],
        )
        results["impact"] = impact
        free_memory(device)
    if "audioldm" in args.pipelines:
        audioldm = benchmark_audioldm(args, device, dtype)
        audioldm["extrapolation"] = extrapolate(
            audioldm["measurements"], AUDIOLDM_STAGE_SCALING, "steps", [{"steps": AUDIOLDM_STEPS}]
        )
        results["audioldm"] = audioldm
        free_memory(device)
    both = {"impact", "audioldm"} <= set(args.pipelines)
    results["comparison"] = compare(results["impact"], results["audioldm"], targets) if both else []
    results["side_by_side"] = side_by_side(results["impact"], results["audioldm"]) if both else []
    results["paper_reference"] = paper_reference()
    results["full_grid_command"] = FULL_GRID_COMMAND

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_summary(results)
    print(f"Results written to {output}")


if __name__ == "__main__":
    main()
