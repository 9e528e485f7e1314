#!/usr/bin/env python
# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Train a small HiFi-GAN vocoder (transformers `SpeechT5HifiGan`, AudioLDM's vocoder class) with spectral losses.

The vocoder turns the VAE's log-mel spectrograms (`diffusers_impact.audio.mel_spectrogram`: 16 kHz, hop 160,
64 bins) back into waveforms. Where AudioLDM's HiFi-GAN cannot be used, this script trains a replacement:

    python examples/training/train_vocoder.py --train_data ./clips --output_dir ./components/vocoder \
        --upsample_initial_channel 64 --max_train_steps 2000

The generator is HiFi-GAN's (upsampling rates multiplying to the hop, 160); the discriminators are left out for a
short CPU budget, so the loss is spectral only: a multi-resolution STFT loss (spectral convergence + log-magnitude
L1, Parallel WaveGAN / HiFi-GAN's mel loss family) plus the L1 distance of the AudioLDM log-mel spectrograms. Expect
a slightly buzzy timbre compared with an adversarially trained HiFi-GAN. At the default size, 2000 steps (12 minutes
on a 2-core CPU) do not come close enough to the mel spectrogram for the embedded default model, which uses a
non-learned `GriffinLimVocoder` instead (`examples/default_model/train_default_model.py` gives the measurement).
"""

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

from diffusers_impact.audio import HOP_LENGTH, N_MELS, SAMPLING_RATE, SEGMENT_FRAMES, mel_spectrogram
from diffusers_impact.training.data import load_usable_audio, random_mel_windows


# (n_fft, hop, window) of the multi-resolution STFT loss (Parallel WaveGAN's three resolutions).
STFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--train_data", required=True, help="Audio dataset: audiofolder, folder, saved dataset or Hub id."
    )
    parser.add_argument("--output_dir", required=True, help="Where the trained vocoder is saved (save_pretrained).")
    parser.add_argument("--split", default="train")
    parser.add_argument("--audio_column", default="audio")
    parser.add_argument("--upsample_initial_channel", type=int, default=64, help="AudioLDM's HiFi-GAN: 1024.")
    parser.add_argument("--upsample_rates", type=int, nargs="+", default=[5, 4, 4, 2], help="Product = hop (160).")
    parser.add_argument("--resblock_kernel_sizes", type=int, nargs="+", default=[3, 7, 11])
    parser.add_argument("--segment_frames", type=int, default=SEGMENT_FRAMES, help="Mel frames per prepared clip.")
    parser.add_argument("--crop_frames", type=int, default=48, help="Mel frames per training window (48 = 0.48 s).")
    parser.add_argument("--train_batch_size", type=int, default=16)
    parser.add_argument("--max_train_steps", type=int, required=True)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--mel_loss_weight", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if math.prod(args.upsample_rates) != HOP_LENGTH:
        parser.error(f"--upsample_rates must multiply to the hop length {HOP_LENGTH}, got {args.upsample_rates}.")
    if not 0 < args.crop_frames <= args.segment_frames:
        parser.error("--crop_frames must be in (0, --segment_frames].")
    return args


def multi_resolution_stft_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over `STFT_RESOLUTIONS`."""
    total = prediction.new_zeros(())
    for n_fft, hop, window_length in STFT_RESOLUTIONS:
        window = torch.hann_window(window_length, device=prediction.device)
        magnitudes = [
            torch.stft(signal, n_fft, hop, window_length, window, return_complex=True).abs().clamp(min=1e-7)
            for signal in (prediction, target)
        ]
        spectral_convergence = torch.linalg.norm(magnitudes[1] - magnitudes[0]) / torch.linalg.norm(magnitudes[1])
        log_magnitude = (magnitudes[1].log() - magnitudes[0].log()).abs().mean()
        total = total + spectral_convergence + log_magnitude
    return total / len(STFT_RESOLUTIONS)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    generator = np.random.default_rng(args.seed)
    dataset = load_usable_audio(args.train_data, args.split, args.audio_column)

    config = SpeechT5HifiGanConfig(
        model_in_dim=N_MELS,
        sampling_rate=SAMPLING_RATE,
        upsample_initial_channel=args.upsample_initial_channel,
        upsample_rates=args.upsample_rates,
        # kernel − rate even, so that each upsampling multiplies the length exactly: output = frames × hop samples
        upsample_kernel_sizes=[2 * rate + rate % 2 for rate in args.upsample_rates],
        resblock_kernel_sizes=args.resblock_kernel_sizes,
        resblock_dilation_sizes=[[1, 3, 5]] * len(args.resblock_kernel_sizes),
        normalize_before=False,  # the input is the raw AudioLDM log-mel, as for AudioLDM's vocoder
    )
    vocoder = SpeechT5HifiGan(config)
    optimizer = torch.optim.AdamW(vocoder.parameters(), lr=args.learning_rate, betas=(0.8, 0.99), weight_decay=0.0)
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, args.learning_rate, total_steps=args.max_train_steps, pct_start=0.05
    )
    crop_samples = args.crop_frames * HOP_LENGTH
    progress = tqdm(range(args.max_train_steps), desc="Vocoder training")
    for _ in progress:
        mel, waveforms, starts = random_mel_windows(
            dataset, args.train_batch_size, args.segment_frames, args.crop_frames, generator
        )
        # Mel frame t is centred on sample t · hop, so frames [s, s + n) cover samples [s · hop, (s + n) · hop).
        target = torch.stack(
            [waveform[start * HOP_LENGTH :][:crop_samples] for waveform, start in zip(waveforms, starts)]
        )
        prediction = vocoder(mel[:, 0])
        stft_loss = multi_resolution_stft_loss(prediction, target)
        mel_loss = (
            (mel_spectrogram(prediction, num_frames=None) - mel_spectrogram(target, num_frames=None)).abs().mean()
        )
        loss = stft_loss + args.mel_loss_weight * mel_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vocoder.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad()
        progress.set_postfix(stft=f"{stft_loss.item():.3f}", mel=f"{mel_loss.item():.3f}")

    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    vocoder.save_pretrained(args.output_dir)
    print(f"Saved the vocoder to {args.output_dir}: STFT loss {stft_loss.item():.3f}, mel L1 {mel_loss.item():.3f}.")


if __name__ == "__main__":
    main()
