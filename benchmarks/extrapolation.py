# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Extrapolation of measured latencies to the paper grid, and the IMPACT / AudioLDM comparisons (no torch import here).

Per batch size, every stage's measured time is fitted as a fixed cost, linear in the iterations T (decoding iterations
for IMPACT, denoising steps for AudioLDM) or, for the diffusion head, head steps S × linear in T; the fits predict the
settings that were not measured, each marked as extrapolated. `compare` and `side_by_side` build the latency ratios.
"""

import statistics

from paper_reference import AUDIOLDM_STEPS, PAPER_HEAD_STEPS


# How each stage's time scales, for the extrapolation: with the number of iterations T (decoding iterations for
# IMPACT, denoising steps for AudioLDM), additionally with the head steps S, or not at all.
FIXED, PER_ITERATION, PER_ITERATION_AND_HEAD_STEP = "fixed", "per_iteration", "per_iteration_and_head_step"
IMPACT_STAGE_SCALING = {
    "text_encoding": FIXED,
    "transformer": PER_ITERATION,
    "head": PER_ITERATION_AND_HEAD_STEP,
    "vae_decode": FIXED,
    "vocoder": FIXED,
    "unaccounted": PER_ITERATION,
}
AUDIOLDM_STAGE_SCALING = {
    "text_encoding": FIXED,
    "unet": PER_ITERATION,
    "vae_decode": FIXED,
    "vocoder": FIXED,
    "unaccounted": PER_ITERATION,
}
STAGE_MODEL_FORMULAS = {
    FIXED: "t = intercept",
    PER_ITERATION: "t = intercept + slope · T",
    PER_ITERATION_AND_HEAD_STEP: "t = S · (intercept + slope · T)",
}


def fit_line(points: list[tuple[float, float]]) -> dict:
    """
    Least-squares `y = intercept + slope · x`. With a single distinct x, or when the fit gives a negative intercept or
    slope (noise), the line through the origin is used instead.
    """
    distinct_x = {x for x, _ in points}
    if len(distinct_x) > 1:
        mean_x = statistics.fmean(x for x, _ in points)
        mean_y = statistics.fmean(y for _, y in points)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
        intercept = mean_y - slope * mean_x
        if intercept >= 0 and slope >= 0:
            return {"intercept_s": intercept, "slope_s": slope}
    return {"intercept_s": 0.0, "slope_s": sum(x * y for x, y in points) / sum(x * x for x, _ in points)}


def fit_stages(measurements: list[dict], scaling: dict[str, str], iterations_key: str) -> dict[str, dict]:
    """Per-stage cost model of one batch size from its measurements (see `STAGE_MODEL_FORMULAS`)."""
    fits = {}
    for stage, kind in scaling.items():
        times = [{**m["breakdown_s"], "unaccounted": m["unaccounted_s"]}[stage] for m in measurements]
        if kind == FIXED:
            fit = {"intercept_s": statistics.median(times), "slope_s": 0.0}
        else:
            divisors = [m["head_steps"] if kind == PER_ITERATION_AND_HEAD_STEP else 1 for m in measurements]
            fit = fit_line([(m[iterations_key], t / d) for m, t, d in zip(measurements, times, divisors)])
        fits[stage] = {"scaling": kind, "model": STAGE_MODEL_FORMULAS[kind], **fit}
    return fits


def predict_stages(fits: dict[str, dict], iterations: int, head_steps: int | None = None) -> dict[str, float]:
    """Stage times predicted by `fit_stages` models for `iterations` (and `head_steps` for the head)."""
    predicted = {}
    for stage, fit in fits.items():
        seconds = fit["intercept_s"] + fit["slope_s"] * iterations
        predicted[stage] = seconds * head_steps if fit["scaling"] == PER_ITERATION_AND_HEAD_STEP else seconds
    return predicted


def extrapolate(measurements: list[dict], scaling: dict[str, str], iterations_key: str, targets: list[dict]) -> dict:
    """
    Fit per-stage costs at every measured batch size and predict the `targets` (settings such as
    `{"decoding_steps": 64, "head_steps": 100}`) that were not measured. Everything returned is EXTRAPOLATED.
    """
    fits, predictions = [], []
    measurements = [m for m in measurements if isinstance(m.get("head_steps", 0), int)]  # annealed steps: not modelled
    for batch_size in sorted({m["batch_size"] for m in measurements}):
        batch = [m for m in measurements if m["batch_size"] == batch_size]
        stage_fits = fit_stages(batch, scaling, iterations_key)
        fits.append({"batch_size": batch_size, "from_measurements": len(batch), "stages": stage_fits})
        for target in targets:
            if any(all(m[key] == value for key, value in target.items()) for m in batch):
                continue
            stages = predict_stages(stage_fits, target[iterations_key], target.get("head_steps"))
            latency = sum(stages.values())
            predictions.append(
                {
                    "batch_size": batch_size,
                    **target,
                    "latency_s": latency,
                    "throughput_clips_per_s": batch_size / latency,
                    "breakdown_s": {stage: seconds for stage, seconds in stages.items() if stage != "unaccounted"},
                    "unaccounted_s": stages["unaccounted"],
                    "extrapolated": True,
                }
            )
    return {
        "extrapolated": True,
        "note": (
            "EXTRAPOLATED, not measured: per batch size, every stage's measured time is fitted as fixed, linear in the "
            "iterations T, or (diffusion head) head steps S × linear in T; the fits predict the settings below that "
            "were not measured. Only measured batch sizes and the measured audio length, device and dtype are covered."
        ),
        "fits": fits,
        "predictions": predictions,
    }


def lookup_latency(report: dict, batch_size: int, settings: dict) -> tuple[float, str] | None:
    """Latency of `settings` at `batch_size`: measured if available, else extrapolated; `None` if neither."""
    for source, entries in (
        ("measured", report["measurements"]),
        ("extrapolated", report["extrapolation"]["predictions"]),
    ):
        for entry in entries:
            if entry["batch_size"] == batch_size and all(entry[key] == value for key, value in settings.items()):
                return entry["latency_s"], source
    return None


def compare(impact: dict, audioldm: dict, decoding_steps: list[int]) -> list[dict]:
    """IMPACT (T decoding iterations, 100 head steps) over AudioLDM (200 steps) latency at every common batch size."""
    comparison = []
    common = sorted(
        {m["batch_size"] for m in impact["measurements"]} & {m["batch_size"] for m in audioldm["measurements"]}
    )
    for batch_size in common:
        audioldm_latency = lookup_latency(audioldm, batch_size, {"steps": AUDIOLDM_STEPS})
        for steps in decoding_steps:
            impact_latency = lookup_latency(
                impact, batch_size, {"decoding_steps": steps, "head_steps": PAPER_HEAD_STEPS}
            )
            if impact_latency is None or audioldm_latency is None:
                continue
            comparison.append(
                {
                    "batch_size": batch_size,
                    "decoding_steps": steps,
                    "head_steps": PAPER_HEAD_STEPS,
                    "audioldm_steps": AUDIOLDM_STEPS,
                    "impact_latency_s": impact_latency[0],
                    "audioldm_latency_s": audioldm_latency[0],
                    "impact_over_audioldm": impact_latency[0] / audioldm_latency[0],
                    "impact_source": impact_latency[1],
                    "audioldm_source": audioldm_latency[1],
                }
            )
    return comparison


def side_by_side(impact: dict, audioldm: dict) -> list[dict]:
    """Every measured IMPACT setting against every measured AudioLDM step count, at the same batch size."""
    rows = []
    for entry in impact["measurements"]:
        ratios = {
            f"over_audioldm_{other['steps']}_steps": entry["latency_s"] / other["latency_s"]
            for other in audioldm["measurements"]
            if other["batch_size"] == entry["batch_size"]
        }
        if ratios:
            rows.append(
                {
                    "batch_size": entry["batch_size"],
                    "decoding_steps": entry["decoding_steps"],
                    "head_steps": entry["head_steps"],
                    "impact_latency_s": entry["latency_s"],
                    "head_s": entry["breakdown_s"]["head"],
                    **ratios,
                }
            )
    return rows
