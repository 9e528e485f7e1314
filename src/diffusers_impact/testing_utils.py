"""Tiny randomly initialised IMPACT pipelines for tests and offline demos (no download needed)."""

import torch
from diffusers import AutoencoderKL
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

from .models import ImpactDiffHead, ImpactEnergyHead, ImpactTransformer
from .pipelines import ImpactPipeline
from .schedulers import ImpactDiffHeadScheduler, ImpactMaskScheduler


_WORDS = "a an the dog cat bird rain wind car engine hammer bark ing meow s ed on in of and very long loud soft water".split()


def tiny_t5_tokenizer() -> T5Tokenizer:
    """A small Unigram T5 tokenizer built in code (unknown words map to `<unk>`)."""
    vocab = (
        [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
        + [(f"▁{w}", -1.0) for w in _WORDS]
        + [(w, -2.0) for w in _WORDS]
    )
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def tiny_clap_tokenizer() -> RobertaTokenizer:
    """A small byte-level BPE (RoBERTa-style) tokenizer built in code, as CLAP's."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for word in _WORDS:
        vocab.setdefault(word, len(vocab))
        vocab.setdefault(f"Ġ{word}", len(vocab))
    for char in "abcdefghijklmnopqrstuvwxyzĠ":
        vocab.setdefault(char, len(vocab))
    return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=64)


def tiny_vae(scaling_factor: float = 0.18215) -> AutoencoderKL:
    """A tiny `AutoencoderKL` with the AudioLDM VAE's layout: 1 → 8 latent channels, 4× downsampling."""
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        latent_channels=8,
        block_out_channels=[8, 8, 16],
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=scaling_factor,
    )


def tiny_impact_components(
    seed: int = 0,
    with_clap: bool = True,
    latent_length: int | None = None,
    audioldm_format: bool = False,
    head: str = "diffusion",
) -> dict:
    """
    Components of a tiny IMPACT pipeline: 0.64 s of audio at 1.6 kHz from 16 × 4 latents (16 tokens of 32 values).

    Args:
        seed (`int`): Seed of the random weights.
        with_clap (`bool`): Include the optional CLAP text encoder (pooled condition).
        latent_length (`int`, *optional*): Latent frames (multiple of 4): 16 by default (0.64 s), 256 in AudioLDM's
            format (10.24 s); e.g. 32 with `audioldm_format` gives 1.28 s clips of 32 tokens for fast audio-input tests.
        audioldm_format (`bool`): Tiny widths but AudioLDM's data format instead: 16 kHz audio, 64 mel bins,
            10.24 s from (8, 256, 16) latents in 256 tokens of 128 values, so that the package's AudioLDM front-end
            (training, latent pre-computation) applies.
        head (`str`): `"diffusion"` (`diff_head` and `head_scheduler`) or `"energy"` (`energy_head`, AudioDEAR's
            one-step head, with 8 noise channels).
    """
    if head not in ("diffusion", "energy"):
        raise ValueError(f"`head` must be 'diffusion' or 'energy', got {head!r}.")
    torch.manual_seed(seed)
    vae = tiny_vae()
    vocoder = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=64 if audioldm_format else 16,
            sampling_rate=16000 if audioldm_format else 1600,
            upsample_initial_channel=16,
            upsample_rates=[8, 5, 4] if audioldm_format else [4, 4],
            upsample_kernel_sizes=[16, 10, 8] if audioldm_format else [8, 8],
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1, 3]],
            normalize_before=False,
            initializer_range=0.1,  # waveforms of order 0.1 (the real vocoder's 0.01 gives ~1e-5 at random init)
        )
    )
    text_encoder = T5EncoderModel(
        T5Config(vocab_size=len(tiny_t5_tokenizer()), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    )
    transformer = ImpactTransformer(
        latent_channels=8,
        latent_length=latent_length or (256 if audioldm_format else 16),
        latent_width=16 if audioldm_format else 4,
        patch_size=4 if audioldm_format else 2,
        hidden_size=32,
        num_encoder_layers=1,
        num_decoder_layers=1,
        num_attention_heads=2,
        text_embed_dim=16,
        max_text_length=24,
        pooled_text_embed_dim=8 if with_clap else None,
    )
    token_dim = 128 if audioldm_format else 32
    if head == "diffusion":
        head_model = ImpactDiffHead(in_channels=token_dim, model_channels=32, condition_channels=32, num_res_blocks=2)
    else:
        head_model = ImpactEnergyHead(
            out_channels=token_dim, model_channels=32, condition_channels=32, noise_channels=8, num_res_blocks=2
        )
    # A fresh head outputs exactly 0 (zero-initialised modulation and output); give those layers random weights so
    # that the tiny pipeline's output depends on every component.
    for parameter in head_model.parameters():
        if not parameter.any():
            torch.nn.init.normal_(parameter, std=0.3)
    components = {
        "vae": vae,
        "vocoder": vocoder,
        "text_encoder": text_encoder,
        "tokenizer": tiny_t5_tokenizer(),
        "transformer": transformer,
        "diff_head": head_model if head == "diffusion" else None,
        "scheduler": ImpactMaskScheduler(),
        "head_scheduler": ImpactDiffHeadScheduler() if head == "diffusion" else None,
        "energy_head": head_model if head == "energy" else None,
        "clap_text_encoder": None,
        "clap_tokenizer": None,
    }
    if with_clap:
        clap_tokenizer = tiny_clap_tokenizer()
        components["clap_text_encoder"] = ClapTextModelWithProjection(
            ClapTextConfig(
                vocab_size=len(clap_tokenizer),
                hidden_size=16,
                intermediate_size=32,
                num_attention_heads=2,
                num_hidden_layers=1,
                projection_dim=8,
                max_position_embeddings=80,
                pad_token_id=1,
                bos_token_id=0,
                eos_token_id=2,
            )
        )
        components["clap_tokenizer"] = clap_tokenizer
    return components


def tiny_impact_pipeline(
    seed: int = 0,
    with_clap: bool = True,
    head: str = "diffusion",
    audioldm_format: bool = False,
    latent_length: int | None = None,
) -> ImpactPipeline:
    """A tiny randomly initialised [`ImpactPipeline`] (for tests and offline smoke runs; it makes noise, not sound),
    with a diffusion head or, for `head="energy"`, AudioDEAR's one-step energy head; the other arguments as for
    [`tiny_impact_components`] (`audioldm_format=True` for audio input, which needs AudioLDM's mel front-end)."""
    components = tiny_impact_components(
        seed=seed, with_clap=with_clap, head=head, audioldm_format=audioldm_format, latent_length=latent_length
    )
    pipe = ImpactPipeline(**components)
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    return pipe
