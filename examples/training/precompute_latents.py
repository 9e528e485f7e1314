#!/usr/bin/env python
# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Encode an audio dataset with the pipeline's VAE once, so that training does not run the VAE every epoch.

    python examples/training/precompute_latents.py --pipeline ./impact-init --train_data ./audiocaps \
        --caption_column caption --output_dir ./audiocaps-latents

Each clip's first segment of the model's length (10.24 s for AudioLDM; AudioLDM front-end: 16 kHz mono,
normalised, zero-padded) is encoded and the VAE posterior's mean and standard deviation are stored (float16) with the
captions; training draws a fresh posterior sample per visit (`examples/training/train_impact.py --train_latents
./audiocaps-latents`). Unreadable, empty or silent files are skipped and counted. With `--text_embeddings` every
caption's text embeddings are stored as well, so training does not run the text encoders either.
"""

import argparse
from collections import Counter

import numpy as np
import torch
from tqdm.auto import tqdm

from diffusers_impact import ImpactPipeline
from diffusers_impact.audio import HOP_LENGTH, mel_spectrogram
from diffusers_impact.training.data import (
    AudioCaptionDataset,
    collate_audio_captions,
    load_audio_dataset,
    save_latent_dataset,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="ImpactPipeline folder or Hub id (its VAE is used).")
    parser.add_argument(
        "--train_data", required=True, help="Audio dataset: audiofolder, folder, saved dataset or Hub id."
    )
    parser.add_argument("--output_dir", required=True, help="Where the latent dataset is saved (save_to_disk).")
    parser.add_argument("--split", default="train")
    parser.add_argument("--audio_column", default="audio")
    parser.add_argument("--caption_column", default=None, help="Caption column (omit for audio without captions).")
    parser.add_argument(
        "--text_embeddings",
        action="store_true",
        help="Also store every caption's text-encoder (and CLAP) embeddings: training then skips them.",
    )
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--dataloader_num_workers", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def text_embedding_record(pipeline: ImpactPipeline, captions: list[str], device) -> dict:
    """Every caption's real text tokens (concatenated), their counts, and the pooled embeddings (float16)."""
    embeds, mask, pooled, *_ = pipeline.encode_prompt(captions, device, do_classifier_free_guidance=False)
    lengths = mask.sum(dim=1)
    tokens = torch.cat([row[: int(length)] for row, length in zip(embeds.float().cpu(), lengths)])
    record = {"text_embeds": tokens.numpy().astype(np.float16), "text_lengths": lengths.cpu().numpy().astype(np.int32)}
    if pooled is not None:
        record["pooled_text_embeds"] = pooled.float().cpu().numpy().astype(np.float16)
    return record


@torch.no_grad()
def encode_batches(pipeline, loader, device, skipped: Counter, text_embeddings: bool):
    """Yield one record per usable clip: posterior mean and std (float16), all its captions (and their embeddings)."""
    vae = pipeline.vae
    for examples in tqdm(loader, desc="Encoding"):
        batch = collate_audio_captions(
            examples, generator=None, num_samples=pipeline.num_mel_frames * HOP_LENGTH, all_captions=True
        )
        skipped.update(batch["skipped"])
        if len(batch["waveforms"]) == 0:
            continue
        mel = mel_spectrogram(batch["waveforms"].to(device), num_frames=pipeline.num_mel_frames)
        posterior = vae.encode(mel.to(vae.dtype)).latent_dist
        means, stds = posterior.mean.float().cpu().numpy(), posterior.std.float().cpu().numpy()
        for mean, std, captions in zip(means, stds, batch["captions"]):
            record = {
                "latent_mean": mean.astype(np.float16),
                "latent_std": std.astype(np.float16),
                "captions": captions,
            }
            if text_embeddings:
                if not captions:
                    raise ValueError("--text_embeddings needs captions: pass --caption_column.")
                record.update(text_embedding_record(pipeline, captions, device))
            yield record


def main(argv=None) -> None:
    args = parse_args(argv)
    pipeline = ImpactPipeline.from_pretrained(args.pipeline).to(args.device)
    dataset = AudioCaptionDataset(
        load_audio_dataset(args.train_data, args.split, args.audio_column, args.caption_column)
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, collate_fn=list, num_workers=args.dataloader_num_workers
    )
    skipped = Counter()
    records = encode_batches(pipeline, loader, args.device, skipped, args.text_embeddings)
    count = save_latent_dataset(records, args.output_dir)
    print(f"Saved {count} latents to {args.output_dir}; skipped {sum(skipped.values())} files {dict(skipped)}.")


if __name__ == "__main__":
    main()
