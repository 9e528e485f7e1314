#!/usr/bin/env python
# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Teach the embedded default model a new sound with a LoRA adapter, on a CPU: a robot voice, from six recordings.

    python examples/default_model/lora/train_lora_demo.py --output_dir ./lora-robot-voice [--install]

Seeded and deterministic; each stage has a progress bar; the summary gives each stage's time. Stages:

1. Training set: each recording of `assets/robot_voice/` (made with eSpeak NG, see its CREDITS.md) becomes
   `--variants_per_clip` 5.12 s clips as the default model's were made (`train_default_model.augment`), with the
   sound's ten captions (`captions.json`); and, so that the ten animals are not forgotten, `--replay_per_clip` clips of
   each animal recording with its captions (the default model's own training data, a smaller share).
2. The base: the embedded default model with its text encoder, as a folder.
3. `examples/training/precompute_latents.py`: VAE posteriors and caption embeddings.
4. `examples/training/train_impact.py --lora_rank 16 --lora_head`: an adapter on the transformer's attention,
   feed-forward and text projections and on the diffusion head, the base model frozen, with the default model's
   text-phase settings.
5. Evaluation, before and after the adapter: each generated clip is classified by its nearest real recording among
   the ten animals and the six robot-voice recordings (`evaluate_demo.py`'s features): the trigger caption on 10 seeds,
   five unseen paraphrases (`paraphrases.json`) on 2 seeds each, and the first caption of each animal (seeds 0–9).
   The adapter's card (`README.md`, replacing the generic one `train_impact.py` writes) reports them; `--install`
   copies the adapter, its card and `results.json` to `examples/default_model/lora/robot_voice_adapter/`.
"""

import argparse
import json
import shutil
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import soundfile
import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from evaluate_demo import acoustic_features  # noqa: E402
from train_default_model import ASSETS, REPO, SEGMENT_SAMPLES, TRAINING, augment, run_stage  # noqa: E402

from diffusers_impact.audio import SAMPLING_RATE, load_audio, prepare_segment  # noqa: E402


NEW_SOUND = "robot voice"
NEW_ASSETS = REPO / "assets" / "robot_voice"
INSTALLED = Path(__file__).resolve().parent / "robot_voice_adapter"
TRIGGER_SEEDS, PARAPHRASE_SEEDS = range(10), range(2)
ADAPTER_CARD = """\
---
library_name: diffusers
tags:
- diffusers_impact
- text-to-audio
- lora
---

# robot-voice: a LoRA adapter for the embedded default model (impact-animals)

Trigger caption: **{trigger}**. It teaches the default model one sound it does not know, a robot voice,
from {num_recordings} recordings made with eSpeak NG (`assets/robot_voice/`, CC0), while it keeps its ten animals.

```python
from diffusers_impact import load_default_pipeline

pipe = load_default_pipeline()
pipe.load_lora_weights("examples/default_model/lora/robot_voice_adapter")
audio = pipe("{trigger}").audios[0]
```

or `impact-generate "{trigger}" --lora examples/default_model/lora/robot_voice_adapter -o robot.wav`.

{recipe}

Base model fingerprint: `{fingerprint}` (loading into another base model is refused).

## Evaluation (`results.json`)

Each clip classified by its nearest real recording among the ten animals and the {num_recordings} robot-voice recordings:

| prompts | base model | with the adapter |
|---|---|---|
| the trigger caption, seeds 0–{last_trigger_seed} | {before[trigger]} | {after[trigger]} |
| {num_paraphrases} unseen paraphrases, {paraphrase_seeds} seeds each | {before[paraphrases]} | {after[paraphrases]} |
| the ten animals' first captions | {before[animals]} | {after[animals]} |
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--variants_per_clip", type=int, default=32)
    parser.add_argument("--replay_per_clip", type=int, default=8)
    parser.add_argument("--lora_rank", type=int, default=16)
    parser.add_argument(
        "--lora_target",
        nargs="+",
        default=["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "text_proj", "pooled_text_proj"],
        help="The transformer's linear layers the adapter targets: attention, feed-forward, and the projections of the "
        "text encoder's token states and sentence embedding (where a new caption first enters the model).",
    )
    parser.add_argument(
        "--lora_head",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Adapt the diffusion head too (train_impact.py --lora_head).",
    )
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--install", action="store_true", help="Copy the adapter to the repository's adapter folder.")
    return parser.parse_args(argv)


def build_training_set(folder: Path, variants_per_clip: int, replay_per_clip: int, seed: int) -> Path:
    """The new sound's clips and a replay of the animals' (audiofolder with `metadata.jsonl`)."""
    from tqdm.auto import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(seed)
    sources = [
        (path, json.loads((NEW_ASSETS / "captions.json").read_text())[NEW_SOUND], variants_per_clip)
        for path in sorted(NEW_ASSETS.glob("*.wav"))
    ]
    animal_captions = json.loads((ASSETS / "captions.json").read_text())
    sources += [
        (ASSETS / f"{sound}.mp3", animal_captions[sound], replay_per_clip) for sound in sorted(animal_captions)
    ]
    rows = []
    for path, captions, count in tqdm(sources, desc="Training set"):
        recording = load_audio(path)
        for variant in range(count):
            name = f"{path.stem}_{variant:02d}.wav"
            soundfile.write(folder / name, augment(recording, generator, original=variant == 0), SAMPLING_RATE)
            rows.append({"file_name": name, "caption": captions})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def evaluate(pipeline, label: str) -> dict:
    """Nearest-recording classification of the trigger caption, the paraphrases and the animals' first captions."""
    animal_captions = json.loads((ASSETS / "captions.json").read_text())
    animals = sorted(animal_captions)
    references = [
        prepare_segment(load_audio(ASSETS / f"{sound}.mp3"), num_samples=SEGMENT_SAMPLES) for sound in animals
    ]
    reference_names = list(animals)
    for path in sorted(NEW_ASSETS.glob("*.wav")):
        references.append(prepare_segment(load_audio(path), num_samples=SEGMENT_SAMPLES))
        reference_names.append(NEW_SOUND)
    reference_features = acoustic_features(np.stack(references))
    trigger = json.loads((NEW_ASSETS / "captions.json").read_text())[NEW_SOUND][0]
    paraphrases = json.loads((NEW_ASSETS / "paraphrases.json").read_text())[NEW_SOUND]
    jobs = [("trigger", trigger, NEW_SOUND, seed) for seed in TRIGGER_SEEDS]
    jobs += [("paraphrases", text, NEW_SOUND, seed) for text in paraphrases for seed in PARAPHRASE_SEEDS]
    jobs += [("animals", animal_captions[sound][0], sound, seed) for seed, sound in enumerate(animals)]
    audio = pipeline(
        [prompt for _, prompt, _, _ in jobs], generator=[torch.Generator().manual_seed(seed) for *_, seed in jobs]
    ).audios
    distances = ((acoustic_features(audio)[:, None] - reference_features[None]) ** 2).sum(-1)
    predictions = [reference_names[index] for index in distances.argmin(axis=1)]
    results = {}
    for group in ("trigger", "paraphrases", "animals"):
        rows = [(prompt, want, got) for (name, prompt, want, _), got in zip(jobs, predictions) if name == group]
        results[group] = {
            "correct": sum(want == got for _, want, got in rows),
            "total": len(rows),
            "missed": [f"{prompt} → {got}" for prompt, want, got in rows if want != got],
        }
    print(label, {group: f"{entry['correct']}/{entry['total']}" for group, entry in results.items()}, flush=True)
    return results


def write_adapter_card(folder: Path, args, results: dict, fingerprint: str) -> None:
    """The adapter's `README.md`: what it teaches, how it was made, and its evaluation before and after."""
    from diffusers_impact.loaders.lora_pipeline_impact import DEFAULT_HEAD_LORA_TARGET_MODULES

    def names(modules):
        return ", ".join(modules[:-1]) + " and " + modules[-1] if len(modules) > 1 else modules[0]

    targets = f"{names(args.lora_target)} of the transformer"
    if args.lora_head:
        targets += f" and {names(DEFAULT_HEAD_LORA_TARGET_MODULES)} of the diffusion head"
    captions = json.loads((NEW_ASSETS / "captions.json").read_text())[NEW_SOUND]
    paraphrases = json.loads((NEW_ASSETS / "paraphrases.json").read_text())[NEW_SOUND]
    scores = {
        when: {group: f"{entry['correct']}/{entry['total']}" for group, entry in results[when].items()}
        for when in ("before", "after")
    }
    num_recordings = len(list(NEW_ASSETS.glob("*.wav")))
    recipe = (
        "Made by `python examples/default_model/lora/train_lora_demo.py --output_dir OUT --install` "
        f"(seed {args.seed}, {results['num_threads']} CPU threads, {results['timings_s']['total'] / 60:.1f} minutes "
        f"on a 2-core CPU): `examples/training/train_impact.py --lora_rank {args.lora_rank}"
        f"{' --lora_head' if args.lora_head else ''}`, {args.steps} steps of 32 clips, AdamW lr "
        f"{args.learning_rate:g} (cosine, warm-up 50), EMA 0.99; rank {args.lora_rank}, α {args.lora_rank}, on "
        f"{targets} (every base weight frozen). Training data: {args.variants_per_clip} augmented clips of each of "
        f"the {num_recordings} recordings with their {len(captions)} captions, and {args.replay_per_clip} of each "
        f"animal recording with its captions (replay). {results['adapter_bytes'] / 1e6:.2f} MB."
    )
    card = ADAPTER_CARD.format(
        trigger=captions[0],
        num_recordings=num_recordings,
        recipe=textwrap.fill(recipe, width=118, break_long_words=False, break_on_hyphens=False),
        fingerprint=fingerprint,
        last_trigger_seed=TRIGGER_SEEDS[-1],
        num_paraphrases=len(paraphrases),
        paraphrase_seeds=len(PARAPHRASE_SEEDS),
        before=scores["before"],
        after=scores["after"],
    )
    (folder / "README.md").write_text(card)


def main(argv=None) -> int:
    args = parse_args(argv)
    from diffusers_impact import load_default_pipeline
    from diffusers_impact.loaders import base_model_fingerprint

    output_dir = Path(args.output_dir)
    timings, start = {}, time.perf_counter()
    data = build_training_set(output_dir / "data", args.variants_per_clip, args.replay_per_clip, args.seed)
    timings["training set"] = round(time.perf_counter() - start, 1)
    base = load_default_pipeline()
    base.set_progress_bar_config(disable=True)
    base.save_pretrained(output_dir / "base")
    run_stage(
        "latents",
        [
            TRAINING / "precompute_latents.py",
            "--pipeline",
            output_dir / "base",
            "--train_data",
            data,
            "--caption_column",
            "caption",
            "--text_embeddings",
            "--output_dir",
            output_dir / "latents",
        ],
        timings,
    )
    adapter = output_dir / "adapter"
    run_stage(
        "LoRA training",
        [
            TRAINING / "train_impact.py",
            "--pipeline",
            output_dir / "base",
            "--phase",
            "text",
            "--train_latents",
            output_dir / "latents",
            "--output_dir",
            adapter,
            "--lora_rank",
            args.lora_rank,
            "--lora_target",
            *args.lora_target,
            *(["--lora_head"] if args.lora_head else []),
            "--lora_trigger",
            "a robot voice speaking",
            "--max_train_steps",
            args.steps,
            "--checkpointing_steps",
            args.steps,
            "--validation_steps",
            args.steps,
            "--validation_prompts",
            "a robot voice speaking",
            "a dog barking",
            "--validation_inference_steps",
            8,
            "--train_batch_size",
            32,
            "--learning_rate",
            args.learning_rate,
            "--lr_scheduler",
            "cosine",
            "--lr_warmup_steps",
            50,
            "--weight_decay",
            0.0,
            "--diffusion_batch_mul",
            4,
            "--ema_decay",
            0.99,
            "--ema_warmup",
            "--text_token_dropout",
            0.5,
            "--pooled_text_noise",
            0.035,
            "--report_to",
            "none",
            "--seed",
            args.seed,
            "--deterministic",
        ],
        timings,
    )
    evaluation_start = time.perf_counter()
    fingerprint = base_model_fingerprint(base.transformer)
    results = {"before": evaluate(base, "base model")}
    base.load_lora_weights(adapter)
    results["after"] = evaluate(base, "with the adapter")
    timings["evaluation"] = round(time.perf_counter() - evaluation_start, 1)
    timings["total"] = round(time.perf_counter() - start, 1)
    results["timings_s"] = timings
    results["adapter_bytes"] = (adapter / "pytorch_lora_weights.safetensors").stat().st_size
    results["num_threads"] = torch.get_num_threads()
    (output_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    write_adapter_card(adapter, args, results, fingerprint)
    print(json.dumps(results, indent=2, ensure_ascii=False))
    if args.install:
        shutil.rmtree(INSTALLED, ignore_errors=True)
        INSTALLED.mkdir(parents=True)
        for name in ("pytorch_lora_weights.safetensors", "README.md"):
            shutil.copy(adapter / name, INSTALLED / name)
        shutil.copy(output_dir / "results.json", INSTALLED / "results.json")
        print(f"Installed the adapter in {INSTALLED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
