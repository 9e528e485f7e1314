#!/usr/bin/env python
# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Does the text control the output? Score an animal-sound pipeline (the embedded default model by default).

    python examples/default_model/evaluate_demo.py [--pipeline ./impact-animals/pipeline] [--output_dir ./evaluation]

With fixed seeds, one clip is generated for a training caption of each of the ten sounds (the first caption of
`assets/animal_sounds/captions.json`) and one for each of the three paraphrases per sound that never appeared in
training (`paraphrases.json`: 30 prompts, new words such as "a kitten mewing", "a bull bellowing"). Each output
is classified by its nearest real recording in a fixed acoustic feature space:
the mean and standard deviation of every log-mel band over the clip's active frames (those within 40 dB of its
loudest frame), so silence and the position of the call do not count. Printed: accuracy on both sets, the confusion
table, and the Fréchet distance between the generated and the real feature sets. Every output must be finite,
not silent, and different from the others; the script exits with an error otherwise.

With `--output_dir`: the WAVs, `results.json`, and `mel_comparison.png` (each real recording beside the clip
generated from its training caption).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from diffusers_impact import ImpactPipeline
from diffusers_impact.audio import (
    HOP_LENGTH,
    is_silent,
    load_audio,
    mel_spectrogram,
    prepare_segment,
)
from diffusers_impact.cli import diffusion_steps
from diffusers_impact.evaluation import frechet_distance_from_features
from diffusers_impact.schedulers.scheduling_impact_mask import GUIDANCE_SCHEDULES


ASSETS = Path(__file__).resolve().parents[2] / "assets" / "animal_sounds"
ACTIVE_RANGE = np.log(10 ** (40 / 20))  # 40 dB in natural-log magnitude units


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=None, help="ImpactPipeline folder (default: the embedded model).")
    parser.add_argument("--assets", default=str(ASSETS), help="Folder with the recordings and caption files.")
    parser.add_argument(
        "--num_inference_steps",
        type=int,
        default=None,
        help="Decoding iterations (default: the pipeline's recommended setting).",
    )
    parser.add_argument(
        "--num_diffusion_steps",
        type=diffusion_steps,
        default=None,
        help="Head steps per decoding iteration, or FIRST:LAST to anneal them (DiSA); default: the "
        "pipeline's recommended setting.",
    )
    parser.add_argument(
        "--diffusion_step_annealing",
        default="linear",
        help="How FIRST:LAST anneals the head steps: linear (DiSA) or geometric.",
    )
    parser.add_argument(
        "--guidance_scale", type=float, default=None, help="Default: the pipeline's recommended setting (else 5)."
    )
    parser.add_argument(
        "--guidance_schedule",
        choices=GUIDANCE_SCHEDULES,
        default=None,
        help="How guidance rises over the decoding iterations (default: the pipeline scheduler's, cosine).",
    )
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="Noise scale of the head (its input noise for an energy head)."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default=None, help="Write the WAVs, results.json and mel_comparison.png.")
    return parser.parse_args(argv)


def acoustic_features(waveforms: np.ndarray) -> np.ndarray:
    """Per-band mean and standard deviation of the log-mel spectrogram over active frames: `(n, 128)`."""
    mels = mel_spectrogram(torch.as_tensor(np.asarray(waveforms, dtype=np.float32)), num_frames=None)[:, 0].numpy()
    features = []
    for mel in mels:
        loudness = mel.mean(axis=1)
        active = mel[loudness >= loudness.max() - ACTIVE_RANGE]
        features.append(np.concatenate([active.mean(axis=0), active.std(axis=0)]))
    return np.stack(features)


def confusion_table(sounds: list[str], targets: list[int], predictions: list[int]) -> str:
    """Rows: the sound asked for; columns: the nearest real recording."""
    counts = np.zeros((len(sounds), len(sounds)), dtype=int)
    for target, prediction in zip(targets, predictions):
        counts[target, prediction] += 1
    width = max(map(len, sounds)) + 1
    lines = [" " * width + "".join(f"{sound[:7]:>8}" for sound in sounds)]
    lines += [f"{sound:<{width}}" + "".join(f"{count:>8}" for count in row) for sound, row in zip(sounds, counts)]
    return "\n".join(lines)


def load_pipeline(path: str | None) -> ImpactPipeline:
    from diffusers_impact.pretrained import (
        load_default_pipeline,
        load_minilm_text_encoder,
    )

    if path is None:
        return load_default_pipeline()
    pipeline = ImpactPipeline.from_pretrained(path)
    if pipeline.text_encoder is None:  # saved without its text encoder, as the default model
        text_encoder, tokenizer = load_minilm_text_encoder()
        pipeline.register_modules(text_encoder=text_encoder, tokenizer=tokenizer)
    return pipeline


def main(argv=None) -> int:
    args = parse_args(argv)
    assets = Path(args.assets)
    captions = json.loads((assets / "captions.json").read_text())
    paraphrases = json.loads((assets / "paraphrases.json").read_text())
    sounds = sorted(captions)
    pipeline = load_pipeline(args.pipeline)
    for name in ("num_inference_steps", "num_diffusion_steps", "guidance_scale"):  # not given: the pipeline's own
        if getattr(args, name) is None:
            setattr(args, name, pipeline.call_defaults.get(name))  # an energy head has no head steps
    # The head-step arguments go to a diffusion head only (an energy-head pipeline refuses them).
    head_arguments = {"temperature": args.temperature}
    if args.num_diffusion_steps is not None:
        head_arguments.update(
            num_diffusion_steps=args.num_diffusion_steps, diffusion_step_annealing=args.diffusion_step_annealing
        )
    pipeline.set_progress_bar_config(disable=True)
    sampling_rate = pipeline.vocoder.config.sampling_rate

    num_samples = pipeline.num_mel_frames * HOP_LENGTH
    real = np.stack(
        [prepare_segment(load_audio(assets / f"{sound}.mp3"), num_samples=num_samples) for sound in sounds]
    )
    real_features = acoustic_features(real)

    # prompt set → (prompt, index of the sound asked for) pairs
    prompt_sets = {
        "training captions": [(captions[sound][0], target) for target, sound in enumerate(sounds)],
        "unseen paraphrases": [(text, target) for target, sound in enumerate(sounds) for text in paraphrases[sound]],
    }
    prompts = [prompt for prompt_set in prompt_sets.values() for prompt, _ in prompt_set]
    targets = [target for prompt_set in prompt_sets.values() for _, target in prompt_set]
    start = time.perf_counter()
    audio = pipeline(
        prompts,
        num_inference_steps=args.num_inference_steps,
        guidance_scale=args.guidance_scale,
        guidance_schedule=args.guidance_schedule,
        **head_arguments,
        generator=[torch.Generator().manual_seed(args.seed + index) for index in range(len(prompts))],
    ).audios
    seconds = time.perf_counter() - start

    problems = [f"{prompt!r}: not finite" for prompt, clip in zip(prompts, audio) if not np.isfinite(clip).all()]
    problems += [
        f"{prompt!r}: silent" for prompt, clip in zip(prompts, audio) if np.isfinite(clip).all() and is_silent(clip)
    ]
    identical = [
        (prompts[i], prompts[j]) for i in range(len(audio)) for j in range(i) if np.array_equal(audio[i], audio[j])
    ]
    problems += [f"{first!r} and {second!r}: identical outputs" for first, second in identical]
    if problems:
        print("Invalid outputs:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1

    generated_features = acoustic_features(audio)
    distances = ((generated_features[:, None] - real_features[None]) ** 2).sum(-1)
    predictions = distances.argmin(axis=1).tolist()
    results = {
        "generation_seconds": round(seconds, 2),
        "num_prompts": len(prompts),
        "settings": vars(args) | {"pipeline": args.pipeline},
    }
    offset = 0
    for name, prompt_set in prompt_sets.items():
        predicted = predictions[offset : offset + len(prompt_set)]
        correct = sum(prediction == target for prediction, (_, target) in zip(predicted, prompt_set))
        results[name] = {
            "correct": correct,
            "total": len(prompt_set),
            "predictions": {prompt: sounds[prediction] for prediction, (prompt, _) in zip(predicted, prompt_set)},
            "missed": {
                prompt: {"asked_for": sounds[target], "classified_as": sounds[prediction]}
                for prediction, (prompt, target) in zip(predicted, prompt_set)
                if prediction != target
            },
        }
        print(f"{name}: {correct}/{len(prompt_set)} classified as the sound asked for")
        offset += len(prompt_set)
    results["frechet_distance"] = frechet_distance_from_features(generated_features, real_features)
    print("\nConfusion table (rows: sound asked for, columns: nearest real recording), both prompt sets:")
    print(confusion_table(sounds, targets, predictions))
    print(
        f"\nFréchet distance, generated ({len(prompts)}) vs real ({len(sounds)}) features: "
        f"{results['frechet_distance']:.2f}"
    )
    print(f"Generated {len(prompts)} clips of {pipeline.max_audio_length_in_s:.2f} s in {seconds:.1f} s.")

    if args.output_dir:
        from diffusers_impact.visualization import save_mel_spectrograms_png

        output_dir = Path(args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        for index, (prompt, clip) in enumerate(zip(prompts, audio)):
            soundfile.write(output_dir / f"{index:02d}_{prompt.replace(' ', '_')}.wav", clip, sampling_rate)
        (output_dir / "results.json").write_text(json.dumps(results, indent=2))
        real_mels = mel_spectrogram(torch.from_numpy(real), num_frames=pipeline.num_mel_frames)[:, 0]
        generated_mels = mel_spectrogram(torch.from_numpy(audio[: len(sounds)]), num_frames=pipeline.num_mel_frames)[
            :, 0
        ]
        panels = torch.stack([mel for pair in zip(real_mels, generated_mels) for mel in pair]).numpy()
        titles = [
            title
            for sound, (prompt, _) in zip(sounds, prompt_sets["training captions"])
            for title in (f"real recording: {sound}", f"generated: “{prompt}”")
        ]
        save_mel_spectrograms_png(panels, titles, output_dir / "mel_comparison.png", columns=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
