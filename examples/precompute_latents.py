#!/usr/bin/env python
# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Encode an audio dataset with the pipeline's VAE once, so that training does not run the VAE every epoch.

    python examples/precompute_latents.py --pipeline ./impact-init --train_data ./audiocaps \
        --caption_column caption --output_dir ./audiocaps-latents

Each clip's first 10.24 s (AudioLDM front-end: 16 kHz mono, normalised, zero-padded) is encoded and the VAE
posterior's mean and standard deviation are stored (float16) with the captions; training draws a fresh posterior
sample per visit (`examples/train_impact.py --train_latents ./audiocaps-latents`). Unreadable, empty or silent files
are skipped and counted.
"""

import argparse
from collections import Counter

import numpy as np
import torch
from tqdm.auto import tqdm

from diffusers_impact import ImpactPipeline
from diffusers_impact.audio import mel_spectrogram
from diffusers_impact.data import AudioCaptionDataset, collate_audio_captions, load_audio_dataset, save_latent_dataset


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="ImpactPipeline folder or Hub id (its VAE is used).")
    parser.add_argument("--train_data", required=True, help="Audio dataset: audiofolder, folder, saved dataset or Hub id.")
    parser.add_argument("--output_dir", required=True, help="Where the latent dataset is saved (save_to_disk).")
    parser.add_argument("--split", default="train")
    parser.add_argument("--audio_column", default="audio")
    parser.add_argument("--caption_column", default=None, help="Caption column (omit for audio without captions).")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--dataloader_num_workers", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


@torch.no_grad()
def encode_batches(vae, loader, device, skipped: Counter):
    """Yield one record per usable clip: posterior mean and std (float16) and all its captions."""
    for examples in tqdm(loader, desc="Encoding"):
        batch = collate_audio_captions(examples, generator=None, all_captions=True)
        skipped.update(batch["skipped"])
        if len(batch["waveforms"]) == 0:
            continue
        mel = mel_spectrogram(batch["waveforms"].to(device))
        posterior = vae.encode(mel.to(vae.dtype)).latent_dist
        means, stds = posterior.mean.float().cpu().numpy(), posterior.std.float().cpu().numpy()
        for mean, std, captions in zip(means, stds, batch["captions"]):
            yield {"latent_mean": mean.astype(np.float16), "latent_std": std.astype(np.float16), "captions": captions}


def main(argv=None) -> None:
    args = parse_args(argv)
    vae = ImpactPipeline.from_pretrained(args.pipeline).vae.to(args.device).eval()
    dataset = AudioCaptionDataset(
        load_audio_dataset(args.train_data, args.split, args.audio_column, args.caption_column)
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, collate_fn=list, num_workers=args.dataloader_num_workers
    )
    skipped = Counter()
    count = save_latent_dataset(encode_batches(vae, loader, args.device, skipped), args.output_dir)
    print(f"Saved {count} latents to {args.output_dir}; skipped {sum(skipped.values())} files {dict(skipped)}.")


if __name__ == "__main__":
    main()
