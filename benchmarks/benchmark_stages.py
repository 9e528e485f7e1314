#!/usr/bin/env python
# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Each stage of IMPACT base against what this machine can do: a roofline bound per stage, measured in one run.

The machine's limits are measured first, in the same process: the peak fp32 FLOP rate (a large matrix product) and
the memory bandwidth (a reduction over an array far larger than the caches). Each stage is then timed at batch 1
(median of `--repeats` calls after a warm-up) and its work counted: FLOPs with `torch.utils.flop_counter` (matrix
products, convolutions, attention), bytes as the least traffic the stage needs (its weights read once, its inputs
read and its output written once). Its bound is max(FLOPs / peak, bytes / bandwidth), and the table reports
measured / bound.

Stages (components at their real sizes, random weights; `benchmark_models.build_impact_pipeline`):

- `head call`: one call of `ImpactDiffHead` on `--head_rows` rows (one sampling step of the diffusion head; at T = 16
  the pipeline generates 16 tokens per iteration on average, ×2 for the guidance branches: 32 rows);
- `head, decoding pass`: every head sampling loop of one decoding pass (`ImpactPipeline.sample_tokens` with the
  scheduler's token counts, guidance on), at T = 16 with 100 steps and with DiSA 50→5 (linear and geometric); its
  bound is the sum of the bounds of its head calls (each reads the weights once);
- `transformer iteration`: one `ImpactTransformer` forward, guidance batch of 2, half of the 256 tokens visible
  (the middle of a decoding pass);
- `VAE decode`: `decode_latents` of one 10.24 s latent (1024 × 64 mel spectrogram);
- `vocoder`: HiFi-GAN on that mel spectrogram (163,840 samples).

    OMP_NUM_THREADS=2 python benchmarks/benchmark_stages.py --output benchmarks/results/cpu_stages.json
"""

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode


sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_models import DEFAULT_PROMPT, build_impact_pipeline, prepare_pipeline  # noqa: E402

from diffusers_impact.pipelines.pipeline_impact import annealed_diffusion_steps  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--head_rows", type=int, nargs="+", default=[2, 8, 32, 128], help="Rows of the head calls timed."
    )
    parser.add_argument("--repeats", type=int, default=5, help="Timed calls per stage; the median is reported.")
    parser.add_argument("--num_threads", type=int, default=None, help="torch.set_num_threads (default: torch's).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="benchmarks/results/cpu_stages.json")
    return parser.parse_args(argv)


def median_seconds(call, repeats: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_limits(repeats: int) -> dict:
    """Peak fp32 FLOP rate (4096² · 1024 matrix product) and memory bandwidth (sum of a 1 GiB array), best of runs."""
    a, b = torch.randn(1024, 4096), torch.randn(4096, 4096)
    matmul = min(median_seconds(lambda: a @ b, 1) for _ in range(repeats))
    array = torch.ones(2**28)  # 1 GiB of float32, four times the last-level cache of the largest CPUs here
    reduction = min(median_seconds(array.sum, 1) for _ in range(repeats))
    return {
        "peak_flops_per_s": 2 * 1024 * 4096 * 4096 / matmul,
        "memory_bandwidth_bytes_per_s": array.numel() * array.element_size() / reduction,
        "method": "fp32 matmul (1024×4096)·(4096×4096); torch.sum over 1 GiB of float32; best of runs",
    }


def tensor_bytes(*values) -> int:
    total = 0
    for value in values:
        if isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
        elif isinstance(value, (list, tuple)):
            total += tensor_bytes(*value)
        elif isinstance(value, dict):
            total += tensor_bytes(*value.values())
    return total


def stage(name: str, module: torch.nn.Module, call, limits: dict, repeats: int) -> dict:
    """Time `call`, count its FLOPs and least bytes, and compare with the roofline bound."""
    with FlopCounterMode(display=False) as counter:
        output = call()
    flops = counter.get_total_flops()
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    least_bytes = weight_bytes + tensor_bytes(call.inputs) + tensor_bytes(output)
    seconds = median_seconds(call, repeats)
    bound = max(flops / limits["peak_flops_per_s"], least_bytes / limits["memory_bandwidth_bytes_per_s"])
    return stage_row(name, seconds, flops, least_bytes, bound, limits)


def stage_row(name: str, seconds: float, flops: float, least_bytes: float, bound: float, limits: dict) -> dict:
    return {
        "stage": name,
        "measured_s": seconds,
        "flops": flops,
        "least_bytes": least_bytes,
        "compute_bound_s": flops / limits["peak_flops_per_s"],
        "memory_bound_s": least_bytes / limits["memory_bandwidth_bytes_per_s"],
        "bound_s": bound,
        "measured_over_bound": seconds / bound,
        "achieved_flops_per_s": flops / seconds,
    }


def head_pass(
    pipe, num_inference_steps: int, num_diffusion_steps, annealing: str, limits: dict, repeats: int, generator
) -> dict:
    """Every head sampling loop of one decoding pass (batch 1, guidance on), timed together; bound = Σ call bounds."""
    scheduler = pipe.scheduler
    scheduler.set_timesteps(num_inference_steps, pipe.transformer.num_tokens)
    steps = annealed_diffusion_steps(num_diffusion_steps, len(scheduler.timesteps), annealing)
    head = pipe.diff_head
    weight_bytes = sum(p.numel() * p.element_size() for p in head.parameters())
    token_dim, width = head.config.in_channels, head.config.condition_channels
    loops = [
        (
            torch.randn(2, count, width, generator=generator),
            torch.randn(1, count, token_dim, generator=generator),
            count,
            step_count,
        )
        for count, step_count in zip(scheduler.num_tokens_to_predict, steps)
    ]
    step_kwargs = {"generator": generator}

    def run():
        with torch.inference_mode():
            for hidden, noise, _, step_count in loops:
                pipe.sample_tokens(hidden, noise, 3.0, step_count, step_kwargs)

    flops = bound = least_bytes = 0.0
    for _, _, count, step_count in loops:
        call_flops = 2 * (2 * count) * sum(m.weight.numel() for m in head.modules() if isinstance(m, torch.nn.Linear))
        call_bytes = weight_bytes + 4 * 2 * count * (token_dim + width + 2 * token_dim)
        flops += step_count * call_flops
        least_bytes += step_count * call_bytes
        bound += step_count * max(
            call_flops / limits["peak_flops_per_s"], call_bytes / limits["memory_bandwidth_bytes_per_s"]
        )
    shape = f" {annealing}" if isinstance(num_diffusion_steps, tuple) else ""
    name = f"head, decoding pass (T = {num_inference_steps}, steps {num_diffusion_steps}{shape}, {sum(steps)} calls)"
    return stage_row(name, median_seconds(run, repeats), flops, least_bytes, bound, limits)


class Call:
    """A stage call with its inputs recorded (for the byte count)."""

    def __init__(self, function, *inputs):
        self.function, self.inputs = function, inputs

    def __call__(self):
        with torch.inference_mode():
            return self.function(*self.inputs)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    limits = machine_limits(args.repeats)
    pipe = prepare_pipeline(
        build_impact_pipeline(False, 10.24, DEFAULT_PROMPT, args.seed), torch.device("cpu"), torch.float32
    )
    transformer, head = pipe.transformer, pipe.diff_head
    generator = torch.Generator().manual_seed(args.seed)

    stages = []
    token_dim, condition_dim = head.config.in_channels, head.config.condition_channels
    for rows in args.head_rows:
        noisy = torch.randn(rows, token_dim, generator=generator)
        condition = torch.randn(rows, condition_dim, generator=generator)
        timestep = torch.full((rows,), 500)
        stages.append(
            stage(f"head call ({rows} rows)", head, Call(head, noisy, timestep, condition), limits, args.repeats)
        )

    for num_diffusion_steps, annealing in ((100, "linear"), ((50, 5), "linear"), ((50, 5), "geometric")):
        stages.append(
            head_pass(pipe, 16, num_diffusion_steps, annealing, limits, max(1, args.repeats // 2), generator)
        )

    num_tokens, text_length = transformer.num_tokens, 12
    tokens = torch.randn(2, num_tokens, token_dim, generator=generator)
    mask = torch.zeros(2, num_tokens, dtype=torch.bool)
    mask[:, torch.randperm(num_tokens, generator=generator)[: num_tokens // 2]] = True
    text = torch.randn(2, text_length, transformer.config.text_embed_dim, generator=generator)
    text_mask = torch.ones(2, text_length, dtype=torch.bool)
    pooled = torch.randn(2, transformer.config.pooled_text_embed_dim, generator=generator)
    drop = torch.tensor([False, True])
    stages.append(
        stage(
            "transformer iteration (2 × 256 tokens, half visible)",
            transformer,
            Call(
                lambda *inputs: transformer(*inputs, return_dict=False)[0], tokens, mask, text, text_mask, pooled, drop
            ),
            limits,
            args.repeats,
        )
    )

    latents = torch.randn(
        1,
        transformer.config.latent_channels,
        transformer.config.latent_length,
        transformer.config.latent_width,
        generator=generator,
    )
    stages.append(stage("VAE decode (10.24 s)", pipe.vae, Call(pipe.decode_latents, latents), limits, args.repeats))
    with torch.inference_mode():
        mel = pipe.decode_latents(latents)
    stages.append(
        stage("vocoder (10.24 s)", pipe.vocoder, Call(pipe.mel_spectrogram_to_waveform, mel), limits, args.repeats)
    )

    results = {
        "description": "Stages of IMPACT base at batch 1 against this machine's roofline bound, measured in one run.",
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "torch_num_threads": torch.get_num_threads(),
        },
        "limits": limits,
        "stages": stages,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(markdown_table(results))


def markdown_table(results: dict) -> str:
    limits = results["limits"]
    lines = [
        f"Peak {limits['peak_flops_per_s'] / 1e9:.1f} GFLOP/s, bandwidth {limits['memory_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s, "
        f"{results['machine']['torch_num_threads']} threads.",
        "",
        "| stage | GFLOP | least MB | bound (ms) | measured (ms) | measured / bound |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["stages"]:
        kind = "compute" if row["compute_bound_s"] >= row["memory_bound_s"] else "memory"
        lines.append(
            f"| {row['stage']} | {row['flops'] / 1e9:.2f} | {row['least_bytes'] / 1e6:.1f} | {row['bound_s'] * 1e3:.1f} "
            f"({kind}) | {row['measured_s'] * 1e3:.1f} | {row['measured_over_bound']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
