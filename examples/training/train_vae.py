#!/usr/bin/env python
# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Train a small mel-spectrogram VAE (diffusers `AutoencoderKL`) on the AudioLDM front-end.

IMPACT generates in the latent space of AudioLDM's VAE (paper §3). Where AudioLDM's weights cannot be used (no Hub
access, a new domain, a model small enough for a CPU), this script trains a replacement with the same interface:
1 input channel, log-mel spectrograms of 64 bins (`diffusers_impact.audio.mel_spectrogram`), a downsampling of
2^(len(block_out_channels) - 1) along time and frequency.

    python examples/training/train_vae.py --train_data ./clips --output_dir ./components/vae \
        --block_out_channels 16 32 64 64 --latent_channels 8 --max_train_steps 800

Each step cuts random `--crop_frames`-frame windows out of the log-mel spectrograms of random clips (clips are first
prepared as in training: `--segment_frames` frames, centred, peak 0.5, zero-padded) and minimises
L1(reconstruction) + `--kl_weight` · KL(posterior ‖ N(0, I)) per latent element, a GAN-free variant of AudioLDM's VAE
loss, optionally + `--detail_weight` · L1 of the differences between neighbouring mel bins and frames (`detail_loss`:
plain L1 regression smears harmonic stacks into bands; this term scores their peaks and valleys) and
`--adversarial_weight` · a PatchGAN hinge loss from `--adversarial_start` (`patch_discriminator`; the discriminator is
trained alongside and not saved). The saved config's `scaling_factor` is 1 / std of the training latents, so scaled
latents have unit variance (as Stable Diffusion's and AudioLDM's factors do).
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from diffusers_impact.audio import SEGMENT_FRAMES
from diffusers_impact.training.data import load_usable_audio, random_mel_windows


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--train_data", required=True, help="Audio dataset: audiofolder, folder, saved dataset or Hub id."
    )
    parser.add_argument("--output_dir", required=True, help="Where the trained VAE is saved (save_pretrained).")
    parser.add_argument("--split", default="train")
    parser.add_argument("--audio_column", default="audio")
    parser.add_argument(
        "--block_out_channels",
        type=int,
        nargs="+",
        default=[16, 32, 64, 64],
        help="Channels per resolution; the downsampling is 2^(count - 1).",
    )
    parser.add_argument("--latent_channels", type=int, default=8, help="AudioLDM: 8.")
    parser.add_argument("--layers_per_block", type=int, default=1)
    parser.add_argument("--norm_num_groups", type=int, default=8)
    parser.add_argument("--segment_frames", type=int, default=SEGMENT_FRAMES, help="Mel frames per prepared clip.")
    parser.add_argument("--crop_frames", type=int, default=128, help="Mel frames per training window.")
    parser.add_argument("--train_batch_size", type=int, default=16)
    parser.add_argument("--max_train_steps", type=int, required=True)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--kl_weight", type=float, default=1e-4, help="Weight of the KL term per latent element.")
    parser.add_argument(
        "--detail_weight",
        type=float,
        default=0.0,
        help="Weight of an L1 loss on the log-mel's differences between neighbouring mel bins and frames: it "
        "penalises smeared harmonics and onsets, which the plain L1 averages away (0: off).",
    )
    parser.add_argument(
        "--adversarial_weight",
        type=float,
        default=0.0,
        help="Weight of a PatchGAN hinge loss on the reconstructed log-mel (0: off). Regression losses alone blur "
        "harmonics; 0.1 is what the default model's experiments used.",
    )
    parser.add_argument(
        "--adversarial_start",
        type=int,
        default=200,
        help="Step from which the VAE gets the adversarial loss; the discriminator starts 50 steps earlier.",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.adversarial_weight < 0 or args.adversarial_start < 0:
        parser.error("--adversarial_weight and --adversarial_start must be ≥ 0.")
    downsampling = 2 ** (len(args.block_out_channels) - 1)
    if args.crop_frames % downsampling or args.segment_frames % downsampling or args.crop_frames > args.segment_frames:
        parser.error(f"--crop_frames ≤ --segment_frames, both multiples of the downsampling {downsampling}.")
    if any(channels % args.norm_num_groups for channels in args.block_out_channels):
        parser.error("Every --block_out_channels entry must be a multiple of --norm_num_groups.")
    return args


def detail_loss(reconstruction: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """L1 between the differences of neighbouring mel bins and of neighbouring frames of two log-mel batches."""
    return sum(
        (reconstruction.diff(dim=dim) - mel.diff(dim=dim)).abs().mean()
        for dim in (-1, -2)  # (B, 1, frames, mels)
    )


def patch_discriminator() -> torch.nn.Module:
    """A small PatchGAN on log-mel windows `(B, 1, frames, mels)`: one realness score per 8 × 8 patch."""
    layers, channels = [], 1
    for width in (32, 64, 128):
        layers += [torch.nn.Conv2d(channels, width, 4, stride=2, padding=1), torch.nn.LeakyReLU(0.2)]
        channels = width
    return torch.nn.Sequential(*layers, torch.nn.Conv2d(channels, 1, 3, padding=1))


def discriminator_hinge_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The hinge loss of a discriminator: real scores pushed above 1, reconstructions' scores below -1."""
    return torch.relu(1 - real_scores).mean() + torch.relu(1 + fake_scores).mean()


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    generator = np.random.default_rng(args.seed)
    dataset = load_usable_audio(args.train_data, args.split, args.audio_column)

    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        latent_channels=args.latent_channels,
        block_out_channels=args.block_out_channels,
        down_block_types=["DownEncoderBlock2D"] * len(args.block_out_channels),
        up_block_types=["UpDecoderBlock2D"] * len(args.block_out_channels),
        layers_per_block=args.layers_per_block,
        norm_num_groups=args.norm_num_groups,
        sample_size=args.segment_frames,
    )
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.learning_rate, weight_decay=0.0)
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, args.learning_rate, total_steps=args.max_train_steps, pct_start=0.05
    )
    discriminator = patch_discriminator() if args.adversarial_weight else None
    if discriminator is not None:
        discriminator_optimizer = torch.optim.AdamW(
            discriminator.parameters(), lr=args.learning_rate / 2, betas=(0.5, 0.9)
        )
    progress = tqdm(range(args.max_train_steps), desc="VAE training")
    for step in progress:
        mel, _, _ = random_mel_windows(
            dataset, args.train_batch_size, args.segment_frames, args.crop_frames, generator
        )
        posterior = vae.encode(mel).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        reconstruction_loss = (reconstruction - mel).abs().mean()
        kl_loss = posterior.kl().mean() / posterior.mean[0].numel()
        loss = reconstruction_loss + args.kl_weight * kl_loss
        if args.detail_weight:
            loss = loss + args.detail_weight * detail_loss(reconstruction, mel)
        if discriminator is not None and step >= args.adversarial_start:
            discriminator.requires_grad_(False)  # the VAE's step moves only the VAE
            loss = loss - args.adversarial_weight * discriminator(reconstruction).mean()
            discriminator.requires_grad_(True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad()
        if discriminator is not None and step >= args.adversarial_start - 50:
            discriminator_hinge_loss(discriminator(mel), discriminator(reconstruction.detach())).backward()
            discriminator_optimizer.step()
            discriminator_optimizer.zero_grad()
        progress.set_postfix(l1=f"{reconstruction_loss.item():.3f}", kl=f"{kl_loss.item():.2f}")

    # Scaled latents get unit variance: measured on posterior samples of whole prepared clips.
    vae.eval()
    with torch.no_grad():
        mel, _, _ = random_mel_windows(dataset, 64, args.segment_frames, args.segment_frames, generator)
        latents = vae.encode(mel).latent_dist.sample()
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(args.output_dir)
    print(
        f"Saved the VAE to {args.output_dir}: L1 {reconstruction_loss.item():.3f} (log-mel), "
        f"scaling factor {vae.config.scaling_factor:.3f}."
    )


if __name__ == "__main__":
    main()
