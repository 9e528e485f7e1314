#!/usr/bin/env python
# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Generation time of the two embedded models in one run: the default model (diffusion head) and its one-step
energy-head student, each at its recommended setting, with the per-stage breakdown and the head's share.

    OMP_NUM_THREADS=2 python benchmarks/benchmark_default_models.py --num_threads 2 \
        --output benchmarks/results/cpu_default_models.json

Each model makes one 5.12 s clip per call (batch 1, or `--batch_size`) at its recommended setting (8 decoding
iterations; the teacher's 25 head steps and guidance 5, the student's guidance 2: any guidance above 1 costs the
same, one batched conditional and unconditional pass), after `--warmup` untimed calls; the median of `--repeats`
timed calls is reported with that call's stages (`timing.instrument_impact`).
"""

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch
from benchmark_pipeline import machine_info
from timing import instrument_impact, measure

from diffusers_impact.pretrained import load_default_pipeline


PROMPT = "a dog barking"
HEADS = ("diffusion", "energy")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num_threads", type=int, default=None, help="torch.set_num_threads (default: torch's).")
    parser.add_argument("--output", default="default_models.json")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--batch_size and --repeats must be ≥ 1, --warmup ≥ 0.")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    device = torch.device("cpu")
    results = {
        "description": "The embedded models, each at its recommended setting, same prompt and seed, one run.",
        "command": shlex.join(sys.argv if argv is None else ["benchmark_default_models.py", *argv]),
        "machine": machine_info(device),
        "settings": {"prompt": PROMPT, "batch_size": args.batch_size, "warmup": args.warmup, "repeats": args.repeats},
        "models": {},
    }
    for head in HEADS:
        pipe = load_default_pipeline(head=head)
        pipe.set_progress_bar_config(disable=True)
        timer = instrument_impact(pipe, device)

        def call(pipe=pipe):
            return pipe([PROMPT] * args.batch_size, generator=torch.Generator().manual_seed(0))

        measurement = measure(call, timer, device, args.warmup, args.repeats)
        measurement["call_settings"] = pipe.call_defaults
        measurement["head_share"] = measurement["breakdown_s"]["head"] / measurement["latency_s"]
        results["models"][head] = measurement
        stages = " ".join(f"{stage}={seconds:.3f}" for stage, seconds in measurement["breakdown_s"].items())
        print(
            f"{head:9s} latency={measurement['latency_s']:.3f} s head share={measurement['head_share']:.1%} "
            f"[{stages}]",
            flush=True,
        )
    diffusion, energy = (results["models"][head] for head in HEADS)
    results["diffusion_over_energy_latency"] = diffusion["latency_s"] / energy["latency_s"]
    results["diffusion_over_energy_head"] = diffusion["breakdown_s"]["head"] / energy["breakdown_s"]["head"]
    print(
        f"The energy-head student is {results['diffusion_over_energy_latency']:.2f}× faster per call "
        f"(its head {results['diffusion_over_energy_head']:.1f}× faster)."
    )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"Results written to {output}")


if __name__ == "__main__":
    main()
