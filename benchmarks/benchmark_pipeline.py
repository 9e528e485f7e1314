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
import functools
import gc
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import diffusers
import torch
import transformers
from diffusers import (
    AudioLDMPipeline,
    AutoencoderKL,
    DDIMScheduler,
    UNet2DConditionModel,
)
from paper_reference import (
    AUDIOLDM_STEPS,
    PAPER_DECODING_STEPS,
    PAPER_HEAD_STEPS,
    paper_reference,
)
from transformers import (
    ClapTextConfig,
    ClapTextModelWithProjection,
    RobertaTokenizer,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

import diffusers_impact
from diffusers_impact import (
    ImpactDiffHead,
    ImpactDiffHeadScheduler,
    ImpactMaskScheduler,
    ImpactPipeline,
    ImpactTransformer,
)
from diffusers_impact.configs import (
    AUDIOLDM_VAE_CONFIG,
    AUDIOLDM_VOCODER_CONFIG,
    IMPACT_TRANSFORMER_CONFIGS,
)
from diffusers_impact.testing_utils import tiny_impact_components


REPOSITORY_ROOT = Path(__file__).resolve().parents[1]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Audio seconds per VAE latent frame: 4× VAE downsampling × vocoder hop / sampling rate (160 / 16000 for AudioLDM,
# 16 / 1600 for the tiny test components), i.e. 10.24 s ↔ 256 latent frames.
SECONDS_PER_LATENT_FRAME = 0.04
LATENT_FRAME_MULTIPLE = 4  # IMPACT patches of 4 × 4 latents (2 × 2 in the tiny model; 4 suits both)
DEFAULT_AUDIO_LENGTH = {"base": 10.24, "tiny": 0.64}

IMPACT_GUIDANCE_SCALE = 5.0  # β_max of the paper's cosine guidance schedule (App. A)
AUDIOLDM_GUIDANCE_SCALE = 2.5  # AudioLDMPipeline's default
DEFAULT_PROMPT = "A dog barks repeatedly while cars pass by on a rainy street"

# google/flan-t5-large (= t5-v1_1-large) sizes; IMPACT takes the encoder's token sequence (§4.2).
FLAN_T5_LARGE_CONFIG = {
    "vocab_size": 32128,
    "d_model": 1024,
    "d_kv": 64,
    "d_ff": 2816,
    "num_layers": 24,
    "num_heads": 16,
    "feed_forward_proj": "gated-gelu",
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6,
    "tie_word_embeddings": False,
}
# The CLAP (laion/clap-htsat-*) text tower is RoBERTa-base with a 512-d projection: transformers' ClapTextConfig
# defaults. Used by IMPACT (pooled condition) and by AudioLDM (its only text encoder).
CLAP_TEXT_CONFIG = {
    "vocab_size": 50265,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "projection_dim": 512,
    "projection_hidden_act": "relu",
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}
# AudioLDMPipeline pads CLAP tokens to `tokenizer.model_max_length`; RoBERTa's 512, as AudioLDM's CLAP tokenizer.
CLAP_TOKENIZER_MAX_LENGTH = 512
# IMPACT base: the paper's text length (77 Flan-T5 tokens + 1 CLAP vector) and MAR's head (width 1024, depth 3).
IMPACT_MAX_TEXT_LENGTH = 77
IMPACT_HEAD_WIDTH = 1024
IMPACT_HEAD_DEPTH = 3

# cvssp/audioldm-s-full-v2 `unet/config.json` and `scheduler/scheduler_config.json` (diffusers' AudioLDM conversion
# script; 185.04M UNet parameters).
AUDIOLDM_S_UNET_CONFIG = {
    "sample_size": 128,
    "in_channels": 8,
    "out_channels": 8,
    "layers_per_block": 2,
    "block_out_channels": [128, 256, 384, 640],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": 8,
    "cross_attention_dim": [128, 256, 384, 640],
    "class_embed_type": "simple_projection",
    "projection_class_embeddings_input_dim": 512,
    "class_embeddings_concat": True,
}
AUDIOLDM_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0015,
    "beta_end": 0.0195,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}

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

FULL_GRID_COMMAND = (
    "python benchmarks/benchmark_pipeline.py --device cuda --dtype fp32 --batch_sizes 1 2 4 8 16 32 64 "
    "--decoding_steps 4 8 16 32 64 --head_steps 100 --audioldm_steps 200 --audio_length 10.24 "
    "--warmup 1 --repeats 3 --output benchmarks/results/gpu_full_grid.json"
)


# ----------------------------------------------------------------------------------------------------- arguments
def head_steps_argument(text: str) -> int | list[int]:
    """`100`, or `50:5` for diffusion step annealing from 50 to 5 steps (a list, as the pipeline and JSON take it)."""
    values = [int(part) for part in text.split(":")]
    if len(values) > 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or FIRST:LAST, got {text!r}")
    return values[0] if len(values) == 1 else values


def head_steps_label(head_steps: int | list[int]) -> str:
    return str(head_steps) if isinstance(head_steps, int) else ":".join(map(str, head_steps))


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
        "step annealing (DiSA, e.g. 50:5).",
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


# ---------------------------------------------------------------------------------------------------- components
def latent_frames(audio_length: float) -> int:
    """VAE latent frames covering `audio_length` seconds, rounded up to a multiple of `LATENT_FRAME_MULTIPLE`."""
    return LATENT_FRAME_MULTIPLE * math.ceil(audio_length / SECONDS_PER_LATENT_FRAME / LATENT_FRAME_MULTIPLE - 1e-9)


def prompt_t5_tokenizer(prompt: str) -> T5Tokenizer:
    """A Unigram (Flan-T5-style) tokenizer built in code with one token per whitespace-separated word of `prompt`."""
    words = dict.fromkeys(prompt.split())
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"▁{word}", -1.0) for word in words]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def prompt_clap_tokenizer(prompt: str) -> RobertaTokenizer:
    """A byte-level BPE (RoBERTa/CLAP-style) tokenizer built in code whose merges spell every word of `prompt`."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    splitter = RobertaTokenizer(vocab=dict(vocab), merges=[])
    merges = []
    for piece, _ in splitter.backend_tokenizer.pre_tokenizer.pre_tokenize_str(prompt):
        for character in piece:
            vocab.setdefault(character, len(vocab))
        for end in range(2, len(piece) + 1):
            if piece[:end] not in vocab:
                vocab[piece[:end]] = len(vocab)
                merges.append((piece[: end - 1], piece[end - 1]))
    return RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=CLAP_TOKENIZER_MAX_LENGTH)


def build_impact_pipeline(tiny: bool, audio_length: float, prompt: str, seed: int) -> ImpactPipeline:
    """IMPACT base (paper §4.2) with random weights, or the tiny test pipeline, generating `audio_length` seconds."""
    torch.manual_seed(seed)
    frames = latent_frames(audio_length)
    if tiny:
        return ImpactPipeline(**tiny_impact_components(seed=seed, latent_length=frames))
    vae = AutoencoderKL(**AUDIOLDM_VAE_CONFIG)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**AUDIOLDM_VOCODER_CONFIG))
    text_encoder = T5EncoderModel(T5Config(**FLAN_T5_LARGE_CONFIG))
    clap_text_encoder = ClapTextModelWithProjection(ClapTextConfig(**CLAP_TEXT_CONFIG))
    transformer = ImpactTransformer(
        **IMPACT_TRANSFORMER_CONFIGS["base"],
        latent_channels=vae.config.latent_channels,
        latent_length=frames,
        latent_width=vocoder.config.model_in_dim // 2 ** (len(vae.config.block_out_channels) - 1),
        text_embed_dim=text_encoder.config.d_model,
        max_text_length=IMPACT_MAX_TEXT_LENGTH,
        pooled_text_embed_dim=clap_text_encoder.config.projection_dim,
    )
    diff_head = ImpactDiffHead(
        in_channels=transformer.config.latent_channels * transformer.config.patch_size**2,
        model_channels=IMPACT_HEAD_WIDTH,
        condition_channels=transformer.config.hidden_size,
        num_res_blocks=IMPACT_HEAD_DEPTH,
    )
    return ImpactPipeline(
        vae=vae,
        vocoder=vocoder,
        text_encoder=text_encoder,
        tokenizer=prompt_t5_tokenizer(prompt),
        transformer=transformer,
        diff_head=diff_head,
        scheduler=ImpactMaskScheduler(),
        head_scheduler=ImpactDiffHeadScheduler(),
        clap_text_encoder=clap_text_encoder,
        clap_tokenizer=prompt_clap_tokenizer(prompt),
    )


def build_audioldm_pipeline(tiny: bool, audio_length: float, prompt: str, seed: int) -> AudioLDMPipeline:
    """AudioLDM `cvssp/audioldm-s-full-v2` with random weights, or a tiny one sharing the tiny IMPACT VAE/vocoder/CLAP."""
    torch.manual_seed(seed)
    if tiny:
        components = tiny_impact_components(seed=seed, latent_length=latent_frames(audio_length))
        vae, vocoder = components["vae"], components["vocoder"]
        text_encoder, tokenizer = components["clap_text_encoder"], components["clap_tokenizer"]
        unet = UNet2DConditionModel(
            sample_size=latent_frames(audio_length),
            in_channels=vae.config.latent_channels,
            out_channels=vae.config.latent_channels,
            layers_per_block=1,
            block_out_channels=[8, 16],
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
            norm_num_groups=4,
            attention_head_dim=4,
            cross_attention_dim=[8, 16],
            class_embed_type="simple_projection",
            projection_class_embeddings_input_dim=text_encoder.config.projection_dim,
            class_embeddings_concat=True,
        )
    else:
        vae = AutoencoderKL(**AUDIOLDM_VAE_CONFIG)
        vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**AUDIOLDM_VOCODER_CONFIG))
        text_encoder = ClapTextModelWithProjection(ClapTextConfig(**CLAP_TEXT_CONFIG))
        tokenizer = prompt_clap_tokenizer(prompt)
        unet = UNet2DConditionModel(**AUDIOLDM_S_UNET_CONFIG)
    return AudioLDMPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**AUDIOLDM_SCHEDULER_CONFIG),
        vocoder=vocoder,
    )


def prepare_pipeline(pipe, device: torch.device, dtype: torch.dtype):
    """Move to `device`/`dtype`, switch every model to eval mode and silence the progress bar."""
    pipe.to(device)
    if dtype != torch.float32:  # the models are built in float32; casting them again only logs warnings
        pipe.to(dtype=dtype)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def describe_components(pipe) -> dict:
    """Class and parameter count of every model of the pipeline."""
    return {
        name: {"class": type(component).__name__, "parameters": sum(p.numel() for p in component.parameters())}
        for name, component in pipe.components.items()
        if isinstance(component, torch.nn.Module)
    }


def compile_forward(module: torch.nn.Module) -> None:
    """torch.compile the module's `forward` only, so that timing wrappers around it stay outside the compiled code."""
    module.forward = torch.compile(module.forward)


# -------------------------------------------------------------------------------------------------------- timing
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
    """Stages: text encoding (tokenizers, Flan-T5, CLAP), transformer forwards, head sampling loops (head forwards and
    head-scheduler steps), VAE decode, vocoder (including the copy of the waveforms to the CPU)."""
    timer = StageTimer(["text_encoding", "transformer", "head", "vae_decode", "vocoder"], device)
    timer.instrument(pipe, "encode_prompt", "text_encoding")
    timer.instrument(pipe.transformer, "forward", "transformer")
    timer.instrument(pipe, "sample_tokens", "head")
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
    if args.compile:
        compile_forward(pipe.transformer)
        compile_forward(pipe.diff_head)
    timer = instrument_impact(pipe, device)
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
                call = pipeline_call(
                    pipe,
                    args,
                    device,
                    batch_size,
                    num_inference_steps=decoding_steps,
                    num_diffusion_steps=head_steps if isinstance(head_steps, int) else tuple(head_steps),
                    guidance_scale=IMPACT_GUIDANCE_SCALE,
                )
                result = measure(call, timer, device, args.warmup, args.repeats)
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
        "components": describe_components(pipe),
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


# ------------------------------------------------------------------------------------------------- extrapolation
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
