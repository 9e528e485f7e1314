# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""IMPACT base and AudioLDM-S pipelines at their real sizes with random weights, built in code (no download).

IMPACT base: Flan-T5-large and CLAP text encoders, the paper's base transformer and diffusion head, AudioLDM VAE and
HiFi-GAN. AudioLDM `cvssp/audioldm-s-full-v2`: CLAP text encoder, UNet, VAE, HiFi-GAN, DDIM. Random weights cost the
same time as trained ones. Tokenizers are built from the prompt's words; `tiny=True` gives the tiny test components of
`diffusers_impact.testing_utils` instead. Used by `benchmark_pipeline.py` and `benchmark_stages.py`.
"""

import math

import torch
from diffusers import (
    AudioLDMPipeline,
    AutoencoderKL,
    DDIMScheduler,
    UNet2DConditionModel,
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

from diffusers_impact import (
    ImpactDiffHead,
    ImpactDiffHeadScheduler,
    ImpactEnergyHead,
    ImpactMaskScheduler,
    ImpactPipeline,
    ImpactTransformer,
)
from diffusers_impact.configs import (
    AUDIOLDM_VAE_CONFIG,
    AUDIOLDM_VOCODER_CONFIG,
    IMPACT_ENERGY_HEAD_CONFIGS,
    IMPACT_TRANSFORMER_CONFIGS,
)
from diffusers_impact.testing_utils import tiny_impact_components


# Audio seconds per VAE latent frame: 4× VAE downsampling × vocoder hop / sampling rate (160 / 16000 for AudioLDM,
# 16 / 1600 for the tiny test components), i.e. 10.24 s ↔ 256 latent frames.
SECONDS_PER_LATENT_FRAME = 0.04
LATENT_FRAME_MULTIPLE = 4  # IMPACT patches of 4 × 4 latents (2 × 2 in the tiny model; 4 suits both)
DEFAULT_AUDIO_LENGTH = {"base": 10.24, "tiny": 0.64}

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


def with_energy_head(pipe: ImpactPipeline, tiny: bool, seed: int) -> ImpactPipeline:
    """The same pipeline (its components shared, not copied) with AudioDEAR's one-step head instead of the diffusion
    head: EAR-B's size (`IMPACT_ENERGY_HEAD_CONFIGS["base"]`), or a tiny one."""
    torch.manual_seed(seed)
    transformer = pipe.transformer
    sizes = (
        {"model_channels": 32, "noise_channels": 8, "num_res_blocks": 2}
        if tiny
        else {
            key: IMPACT_ENERGY_HEAD_CONFIGS["base"][key]
            for key in ("model_channels", "noise_channels", "num_res_blocks")
        }
    )
    energy_head = ImpactEnergyHead(
        out_channels=transformer.config.latent_channels * transformer.config.patch_size**2,
        condition_channels=transformer.config.hidden_size,
        **sizes,
    )
    components = {**pipe.components, "diff_head": None, "head_scheduler": None, "energy_head": energy_head}
    return ImpactPipeline(**components)


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
