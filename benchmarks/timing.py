# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Timing of pipeline calls: end-to-end latency, a per-stage breakdown and peak memory.

`instrument_impact` / `instrument_audioldm` wrap the pipeline's own methods and models (the pipelines' code is not
changed) with a `StageTimer`; `measure` times repeated calls after warm-up ones and reports the median call with its
breakdown and the peak memory. On CUDA the device is synchronised at every stage boundary.
"""

import functools
import resource
import statistics
import sys
import time
from collections.abc import Callable

import torch
from diffusers import AudioLDMPipeline

from diffusers_impact import ImpactPipeline


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageTimer:
    """
    Wall-clock seconds spent in named stages of a pipeline call.

    `instrument(owner, attribute, stage)` replaces `owner.attribute` (a pipeline method or a model's `forward`) by a
    wrapper that adds the time of each call to `stage`. On CUDA the device is synchronised before and after every
    call, so queued GPU work is charged to the stage that issued it. The stages never nest, so their sum is at most
    the time of the whole call.
    """

    def __init__(self, stages: list[str], device: torch.device):
        self.stages = list(stages)
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.stages, 0.0)

    def instrument(self, owner, attribute: str, stage: str) -> None:
        function = getattr(owner, attribute)

        @functools.wraps(function)
        def timed(*args, **kwargs):
            synchronize(self.device)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                synchronize(self.device)
                self.seconds[stage] += time.perf_counter() - start

        setattr(owner, attribute, timed)


def instrument_impact(pipe: ImpactPipeline, device: torch.device) -> StageTimer:
    """Stages: text encoding (tokenizers, Flan-T5, CLAP), transformer forwards, head sampling (the diffusion head's
    loops of head forwards and head-scheduler steps, or the energy head's one call per iteration with its guidance),
    VAE decode, vocoder (including the copy of the waveforms to the CPU)."""
    timer = StageTimer(["text_encoding", "transformer", "head", "vae_decode", "vocoder"], device)
    timer.instrument(pipe, "encode_prompt", "text_encoding")
    timer.instrument(pipe.transformer, "forward", "transformer")
    timer.instrument(pipe, "sample_tokens_one_step" if pipe.head_type == "energy" else "sample_tokens", "head")
    timer.instrument(pipe, "decode_latents", "vae_decode")
    timer.instrument(pipe, "mel_spectrogram_to_waveform", "vocoder")
    return timer


def instrument_audioldm(pipe: AudioLDMPipeline, device: torch.device) -> StageTimer:
    """Stages: text encoding (tokenizer and CLAP, prompt and empty negative prompt), UNet forwards, VAE decode,
    vocoder (including the copy of the waveforms to the CPU). DDIM steps fall in `unaccounted`."""
    timer = StageTimer(["text_encoding", "unet", "vae_decode", "vocoder"], device)
    timer.instrument(pipe, "_encode_prompt", "text_encoding")
    timer.instrument(pipe.unet, "forward", "unet")
    timer.instrument(pipe, "decode_latents", "vae_decode")
    timer.instrument(pipe, "mel_spectrogram_to_waveform", "vocoder")
    return timer


def reset_peak_memory(device: torch.device) -> bool:
    """Reset the peak-memory counter: CUDA allocator statistics, or the process's peak RSS via /proc (Linux)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM, the peak resident set size
        return True
    except OSError:
        return False


def read_peak_memory(device: torch.device, was_reset: bool) -> dict:
    """Peak memory since `reset_peak_memory`, with a note of what was measured."""
    if device.type == "cuda":
        return {
            "peak_memory_bytes": torch.cuda.max_memory_allocated(device),
            "peak_memory_kind": "torch.cuda.max_memory_allocated",
        }
    if was_reset:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return {
                        "peak_memory_bytes": int(line.split()[1]) * 1024,
                        "peak_memory_kind": "process peak RSS (VmHWM, reset before the timed calls)",
                    }
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, in KiB on Linux
    return {
        "peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
        "peak_memory_kind": "process peak RSS since start (ru_maxrss)",
    }


def measure(call: Callable[[], object], timer: StageTimer, device: torch.device, warmup: int, repeats: int) -> dict:
    """
    Time `repeats` calls after `warmup` untimed ones. The reported latency is the median call (the lower median for an
    even count) and the breakdown is that call's own, so that the stages add up to at most the latency.
    """
    for _ in range(warmup):
        call()
    was_reset = reset_peak_memory(device)
    latencies, breakdowns = [], []
    for _ in range(repeats):
        timer.reset()
        synchronize(device)
        start = time.perf_counter()
        call()
        synchronize(device)
        latencies.append(time.perf_counter() - start)
        breakdowns.append(dict(timer.seconds))
    latency = statistics.median_low(latencies)
    breakdown = breakdowns[latencies.index(latency)]
    return {
        "latency_s": latency,
        "latencies_s": latencies,
        "breakdown_s": breakdown,
        "unaccounted_s": max(0.0, latency - sum(breakdown.values())),
        **read_peak_memory(device, was_reset),
    }
