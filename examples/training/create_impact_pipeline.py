#!/usr/bin/env python
# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Assemble an untrained ImpactPipeline from pretrained components: the starting point of training.

    python examples/training/create_impact_pipeline.py --output_dir ./impact-init --size base \
        --audioldm cvssp/audioldm-s-full-v2 --text_encoder google/flan-t5-large --clap laion/clap-htsat-fused

The AudioLDM VAE and HiFi-GAN vocoder, the text encoder (Flan-T5 in the paper; any transformers encoder works) and
the optional CLAP text encoder (or, with `--pooled_from_text_encoder`, the text encoder's mean-pooled sentence embedding
as the pooled condition) are loaded from their folders or Hub ids; the transformer and diffusion head are new
(paper sizes `base` / `large`, §4.2). Initialise them from a MAR checkpoint (App. D.3) with
`examples/training/convert_mar_checkpoint.py` next.

`--head energy` gives AudioDEAR's one-step `ImpactEnergyHead` instead of the diffusion head (EAR-B's 6 × 1024 with 64
noise channels by default). With `--teacher`, the pipeline is a student of a trained one, as AudioDEAR starts: the
teacher's VAE, vocoder, text encoders and transformer (its weights) with a new head, to be trained with
`train_impact.py --teacher` (representation distillation):

    python examples/training/create_impact_pipeline.py --teacher ./impact-text --head energy \
        --output_dir ./impact-energy-init
"""

import argparse

import torch
from diffusers import AutoencoderKL
from transformers import AutoConfig, AutoModel, AutoTokenizer, ClapTextModelWithProjection, T5EncoderModel

from diffusers_impact import (
    ImpactDiffHead,
    ImpactDiffHeadScheduler,
    ImpactEnergyHead,
    ImpactMaskScheduler,
    ImpactPipeline,
    ImpactTransformer,
)
from diffusers_impact.configs import IMPACT_TRANSFORMER_CONFIGS
from diffusers_impact.models import load_vocoder, vocoder_front_end


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument(
        "--teacher",
        default=None,
        help="A trained ImpactPipeline (folder or Hub id): take its VAE, vocoder, text encoders and transformer, and "
        "give them a new head (a student; replaces --audioldm, --text_encoder and the transformer's options).",
    )
    parser.add_argument("--size", choices=sorted(IMPACT_TRANSFORMER_CONFIGS), default=None, help="Default: base.")
    parser.add_argument(
        "--audioldm",
        default=None,
        help="Folder or Hub id with `vae/` and `vocoder/` (AudioLDM; the vocoder may be a `GriffinLimVocoder`).",
    )
    parser.add_argument(
        "--text_encoder", default=None, help="Text encoder folder or Hub id (e.g. google/flan-t5-large)."
    )
    parser.add_argument("--clap", default=None, help="CLAP folder or Hub id for the pooled condition (optional).")
    parser.add_argument(
        "--pooled_from_text_encoder",
        action="store_true",
        help="Pooled condition without CLAP: the unit-norm mean of the text encoder's token states "
        "(sentence-transformers pooling, e.g. for all-MiniLM-L6-v2).",
    )
    parser.add_argument("--max_text_length", type=int, default=None, help="Longest text token sequence (paper: 77).")
    parser.add_argument("--audio_length_in_s", type=float, default=None, help="Generated length (paper: 10.24 s).")
    parser.add_argument(
        "--seed", type=int, default=0, help="Seed of the new transformer's and head's initial weights."
    )
    custom = parser.add_argument_group("custom sizes (override --size and the head's defaults)")
    custom.add_argument("--hidden_size", type=int, default=None, help="Transformer width D.")
    custom.add_argument("--num_layers", type=int, default=None, help="Blocks of each sub-encoder (Enc_φ1, Enc_φ2).")
    custom.add_argument("--num_attention_heads", type=int, default=None)
    custom.add_argument("--patch_size", type=int, default=None, help="Latent patch side per token (paper: 4).")
    head = parser.add_argument_group("the head")
    head.add_argument(
        "--head",
        choices=["diffusion", "energy"],
        default="diffusion",
        help="MAR's diffusion head, or AudioDEAR's one-step energy head.",
    )
    head.add_argument("--head_width", type=int, default=1024, help="Head width W (MAR, EAR-B: 1024).")
    head.add_argument(
        "--head_depth", type=int, default=None, help="Head residual blocks (diffusion, MAR: 3; energy, EAR-B: 6)."
    )
    head.add_argument("--noise_channels", type=int, default=None, help="Energy head: noise vector size (EAR: 64).")
    args = parser.parse_args(argv)
    if args.clap and args.pooled_from_text_encoder:
        parser.error("Pass at most one of --clap and --pooled_from_text_encoder: there is one pooled condition.")
    transformer_options = (
        "size", "audioldm", "text_encoder", "clap", "max_text_length", "audio_length_in_s", "hidden_size",
        "num_layers", "num_attention_heads", "patch_size",
    )  # fmt: skip
    if args.teacher is not None:
        passed = [f"--{name}" for name in transformer_options if getattr(args, name) not in (None, False)]
        passed += ["--pooled_from_text_encoder"] if args.pooled_from_text_encoder else []
        if passed:
            parser.error(f"{', '.join(passed)} come(s) from the --teacher pipeline; leave them out.")
    elif args.audioldm is None or args.text_encoder is None:
        parser.error("Pass --audioldm and --text_encoder (a new pipeline), or --teacher (a student of a trained one).")
    if args.noise_channels is not None and args.head != "energy":
        parser.error("--noise_channels sets the energy head's noise: pass --head energy.")
    args.head_depth = args.head_depth or (6 if args.head == "energy" else 3)
    args.noise_channels = args.noise_channels or 64
    defaults = {"size": "base", "max_text_length": 77, "audio_length_in_s": 10.24, "patch_size": 4}
    for name, default in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


def create_head(args, transformer: ImpactTransformer) -> dict:
    """The new head's pipeline components: `diff_head` and `head_scheduler`, or `energy_head`."""
    token_dim = transformer.config.latent_channels * transformer.config.patch_size**2
    if args.head == "energy":
        energy_head = ImpactEnergyHead(
            out_channels=token_dim,
            model_channels=args.head_width,
            condition_channels=transformer.config.hidden_size,
            noise_channels=args.noise_channels,
            num_res_blocks=args.head_depth,
        )
        return {"energy_head": energy_head}
    diff_head = ImpactDiffHead(
        in_channels=token_dim,
        model_channels=args.head_width,
        condition_channels=transformer.config.hidden_size,
        num_res_blocks=args.head_depth,
    )
    return {"diff_head": diff_head, "head_scheduler": ImpactDiffHeadScheduler()}


def create_student(args) -> ImpactPipeline:
    """The --teacher's components with its transformer's weights and a new head (seeded)."""
    teacher = ImpactPipeline.from_pretrained(args.teacher)
    torch.manual_seed(args.seed)
    components = {
        name: component
        for name, component in teacher.components.items()
        if name not in ("diff_head", "head_scheduler", "energy_head")
    }
    settings = {
        key: value
        for key, value in (teacher.config.recommended_call_settings or {}).items()
        if args.head == "diffusion" or key != "num_diffusion_steps"  # a one-step head has no head steps
    }
    head = {"diff_head": None, "head_scheduler": None, **create_head(args, teacher.transformer)}
    return ImpactPipeline(
        **components,
        **head,
        pooled_text_embedding=teacher.config.pooled_text_embedding,
        recommended_call_settings=settings or None,
    )


def load_text_encoder(name_or_path: str):
    """T5 checkpoints load as their encoder alone; other models as the bare transformers encoder."""
    model_class = (
        T5EncoderModel if AutoConfig.from_pretrained(name_or_path).model_type in ("t5", "mt5", "umt5") else AutoModel
    )
    return model_class.from_pretrained(name_or_path), AutoTokenizer.from_pretrained(name_or_path)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.teacher is not None:
        pipeline = create_student(args)
        pipeline.save_pretrained(args.output_dir)
        head = pipeline.energy_head if args.head == "energy" else pipeline.diff_head
        print(
            f"Saved a student of {args.teacher} with a new {args.head} head ({sum(p.numel() for p in head.parameters()) / 1e6:.1f}M "
            f"parameters; the transformer is the teacher's) to {args.output_dir}."
        )
        return
    vae = AutoencoderKL.from_pretrained(args.audioldm, subfolder="vae")
    vocoder = load_vocoder(args.audioldm)  # HiFi-GAN, or a `GriffinLimVocoder`
    text_encoder, tokenizer = load_text_encoder(args.text_encoder)
    clap_text_encoder = clap_tokenizer = None
    if args.clap:
        clap_text_encoder = ClapTextModelWithProjection.from_pretrained(args.clap)
        clap_tokenizer = AutoTokenizer.from_pretrained(args.clap)
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    sampling_rate, hop_length, num_mel_bins = vocoder_front_end(vocoder)
    seconds_per_latent_frame = scale * hop_length / sampling_rate
    torch.manual_seed(args.seed)  # the initial weights: the same pipeline for the same seed
    sizes = dict(IMPACT_TRANSFORMER_CONFIGS[args.size])
    overrides = {
        "hidden_size": args.hidden_size,
        "num_encoder_layers": args.num_layers,
        "num_decoder_layers": args.num_layers,
        "num_attention_heads": args.num_attention_heads,
    }
    sizes.update({name: value for name, value in overrides.items() if value is not None})
    transformer = ImpactTransformer(
        **sizes,
        patch_size=args.patch_size,
        latent_channels=vae.config.latent_channels,
        latent_length=round(args.audio_length_in_s / seconds_per_latent_frame),
        latent_width=num_mel_bins // scale,
        text_embed_dim=text_encoder.config.hidden_size,
        max_text_length=args.max_text_length,
        pooled_text_embed_dim=(
            clap_text_encoder.config.projection_dim
            if clap_text_encoder is not None
            else text_encoder.config.hidden_size
            if args.pooled_from_text_encoder
            else None
        ),
    )
    head = create_head(args, transformer)
    pipeline = ImpactPipeline(
        vae=vae,
        vocoder=vocoder,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        scheduler=ImpactMaskScheduler(),
        clap_text_encoder=clap_text_encoder,
        clap_tokenizer=clap_tokenizer,
        pooled_text_embedding="text_encoder_mean" if args.pooled_from_text_encoder else "clap",
        diff_head=head.get("diff_head"),
        head_scheduler=head.get("head_scheduler"),
        energy_head=head.get("energy_head"),
    )
    pipeline.save_pretrained(args.output_dir)
    total = sum(p.numel() for p in transformer.parameters()) + sum(
        p.numel() for module in head.values() if isinstance(module, torch.nn.Module) for p in module.parameters()
    )
    print(f"Saved an untrained IMPACT pipeline ({total / 1e6:.1f}M trainable parameters) to {args.output_dir}.")


if __name__ == "__main__":
    main()
