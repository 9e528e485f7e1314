#!/usr/bin/env python
# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Plot results of `benchmark_pipeline.py`: latency against decoding iterations, with the paper's V100 figures.

    python benchmarks/plot_benchmark.py benchmarks/results/gpu_full_grid.json [more.json ...] --output latency.png

Left: IMPACT latency per batch against decoding iterations T (log-log). Filled markers and solid lines are measured
at 100 head steps, hollow markers and dashed lines are EXTRAPOLATED to 100 head steps, crosses are measurements at
other head-step counts; horizontal dash-dotted lines are AudioLDM at 200 steps (measured or extrapolated); dotted
lines with squares are IMPACT base on a V100 (paper App. B, Table 8). Right: the stage breakdown of every measured call.
"""

import argparse
import json
from pathlib import Path

import matplotlib
from extrapolation import lookup_latency
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter
from paper_reference import (
    AUDIOLDM_STEPS,
    PAPER_HEAD_STEPS,
    PAPER_TABLE_8_IMPACT_BASE,
    PAPER_TABLE_8_SOURCE,
)


STAGE_COLORS = {
    "text_encoding": "tab:purple",
    "transformer": "tab:blue",
    "unet": "tab:cyan",
    "head": "tab:orange",
    "vae_decode": "tab:green",
    "vocoder": "tab:red",
    "unaccounted": "tab:gray",
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="JSON files written by benchmark_pipeline.py.")
    parser.add_argument("--output", default=None, help="PNG to write (default: the first JSON's path with .png).")
    return parser.parse_args(argv)


def impact_curve(impact: dict, batch_size: int) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(measured, extrapolated) `(decoding_steps, latency)` points at the paper's head steps for one batch size."""
    measured = sorted(
        (m["decoding_steps"], m["latency_s"])
        for m in impact["measurements"]
        if m["batch_size"] == batch_size and m["head_steps"] == PAPER_HEAD_STEPS
    )
    extrapolated = sorted(
        (p["decoding_steps"], p["latency_s"])
        for p in impact["extrapolation"]["predictions"]
        if p["batch_size"] == batch_size and p["head_steps"] == PAPER_HEAD_STEPS
    )
    return measured, extrapolated


def plot_latency(axis, results: list[dict]) -> None:
    batch_sizes = sorted({m["batch_size"] for r in results for m in r.get("impact", {}).get("measurements", [])})
    steps = set(PAPER_TABLE_8_IMPACT_BASE)
    palette = matplotlib.colormaps["tab10"].colors
    colors = {batch: palette[i % len(palette)] for i, batch in enumerate(batch_sizes)}
    for result in results:
        impact = result.get("impact")
        if impact is None:
            continue
        for batch_size in sorted({m["batch_size"] for m in impact["measurements"]}):
            color = colors[batch_size]
            measured, extrapolated = impact_curve(impact, batch_size)
            steps.update(point[0] for point in measured + extrapolated)
            if measured:
                axis.plot(*zip(*measured), "o-", color=color, label=f"IMPACT b={batch_size}, measured")
            if extrapolated:
                # Join the extrapolated points to the measured ones so that the curve reads as one line.
                points = sorted(extrapolated + measured)
                axis.plot(*zip(*points), "--", color=color, alpha=0.7)
                axis.plot(
                    *zip(*extrapolated), "o", mfc="none", color=color, label=f"IMPACT b={batch_size}, EXTRAPOLATED"
                )
            other = [
                (m["decoding_steps"], m["latency_s"])
                for m in impact["measurements"]
                if m["batch_size"] == batch_size
                and isinstance(m["head_steps"], int)
                and m["head_steps"] != PAPER_HEAD_STEPS
            ]
            annealed = sorted(
                (m["decoding_steps"], m["latency_s"])
                for m in impact["measurements"]
                if m["batch_size"] == batch_size and not isinstance(m["head_steps"], int)
            )
            steps.update(point[0] for point in other + annealed)
            if other:
                axis.plot(*zip(*other), "x", color=color, label=f"IMPACT b={batch_size}, measured at fewer head steps")
            if annealed:
                schedules = sorted(
                    {
                        ":".join(map(str, m["head_steps"]))
                        for m in impact["measurements"]
                        if m["batch_size"] == batch_size and not isinstance(m["head_steps"], int)
                    }
                )
                axis.plot(
                    *zip(*annealed),
                    "^-",
                    color=color,
                    alpha=0.8,
                    label=f"IMPACT b={batch_size}, DiSA {', '.join(schedules)}, measured",
                )
            if "audioldm" in result and (
                reference := lookup_latency(result["audioldm"], batch_size, {"steps": AUDIOLDM_STEPS})
            ):
                latency, source = reference
                label = f"AudioLDM-S {AUDIOLDM_STEPS} steps b={batch_size}" + (
                    ", EXTRAPOLATED" if source == "extrapolated" else ""
                )
                axis.axhline(latency, color=color, linestyle="-.", linewidth=1, label=label)
    for batch_size in batch_sizes:
        if all(batch_size in row for row in PAPER_TABLE_8_IMPACT_BASE.values()):
            paper = sorted((steps, row[batch_size]) for steps, row in PAPER_TABLE_8_IMPACT_BASE.items())
            axis.plot(
                *zip(*paper),
                "s:",
                color=colors[batch_size],
                alpha=0.5,
                markersize=4,
                label=f"paper Table 8, V100, b={batch_size}",
            )
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xticks(sorted(steps))
    axis.xaxis.set_major_formatter(ScalarFormatter())
    axis.set_xlabel("decoding iterations T")
    axis.set_ylabel("latency per batch (s)")
    devices = ", ".join(sorted({f"{r['machine']['device_name']} {r['settings']['dtype']}" for r in results}))
    axis.set_title(f"IMPACT latency, {PAPER_HEAD_STEPS} head steps ({devices})", fontsize=9)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=6)


def plot_breakdown(axis, results: list[dict]) -> None:
    labels, rows = [], []
    for result in results:
        for name, steps in (("impact", "T={decoding_steps} S={head_steps}"), ("audioldm", "{steps} steps")):
            for m in result.get(name, {}).get("measurements", []):
                m = {
                    **m,
                    "head_steps": ":".join(map(str, m["head_steps"]))
                    if isinstance(m.get("head_steps"), list)
                    else m.get("head_steps"),
                }
                labels.append(
                    f"{'IMPACT' if name == 'impact' else 'AudioLDM'} b={m['batch_size']} {steps.format(**m)}"
                )
                rows.append({**m["breakdown_s"], "unaccounted": m["unaccounted_s"]})
    positions = range(len(rows))
    left = [0.0] * len(rows)
    for stage, color in STAGE_COLORS.items():
        widths = [row.get(stage, 0.0) for row in rows]
        if any(widths):
            axis.barh(positions, widths, left=left, color=color, label=stage)
            left = [a + b for a, b in zip(left, widths)]
    axis.set_yticks(list(positions), labels, fontsize=6)
    axis.invert_yaxis()
    axis.set_xlabel("seconds per batch (measured)")
    axis.set_title("Stage breakdown of the measured calls")
    axis.legend(fontsize=6)


def plot_results(result_paths: list[str | Path], output: str | Path) -> Path:
    """Draw the figure for the given result files and save it as a PNG."""
    results = [json.loads(Path(path).read_text(encoding="utf-8")) for path in result_paths]
    figure = Figure(figsize=(15, 6))  # no pyplot: works without a display and leaves no global state
    latency_axis, breakdown_axis = figure.subplots(1, 2)
    plot_latency(latency_axis, results)
    plot_breakdown(breakdown_axis, results)
    figure.text(0.01, 0.01, f"Reference: {PAPER_TABLE_8_SOURCE}", fontsize=6)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=150)
    return output


def main(argv=None) -> None:
    args = parse_args(argv)
    output = args.output or Path(args.results[0]).with_suffix(".png")
    print(f"Plot written to {plot_results(args.results, output)}")


if __name__ == "__main__":
    main()
