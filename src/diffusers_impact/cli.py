"""`impact-generate`: text → WAV from the command line.

Example:

    impact-generate "a dog barking" --model path/or/hub-id -o dog.wav --steps 32 --seed 0
"""

import argparse
import os
import sys
from pathlib import Path

TINY_RANDOM = "tiny-random"


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="impact-generate", description="Generate audio from text with IMPACT.")
    parser.add_argument("prompt", help="What the audio should contain, e.g. 'a dog barking'.")
    parser.add_argument(
        "--model",
        default=TINY_RANDOM,
        help=f"Pipeline folder or Hub id. '{TINY_RANDOM}' (default for now) builds a tiny untrained pipeline that "
        "checks the installation; it makes noise, not sound.",
    )
    parser.add_argument("-o", "--output", default="impact.wav", help="Output WAV path (default: impact.wav).")
    parser.add_argument("--steps", type=int, default=32, help="Decoding iterations (default: 32).")
    parser.add_argument("--diffusion-steps", type=int, default=100, help="Diffusion-head steps (default: 100).")
    parser.add_argument("--guidance", type=float, default=5.0, help="Maximum guidance scale, ≥ 1 (default: 5.0).")
    parser.add_argument("--negative-prompt", default=None, help="Text to steer away from (optional).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default: 0).")
    parser.add_argument("--length", type=float, default=None, help="Seconds of audio (default: the model's length).")
    parser.add_argument("--num-waveforms", type=int, default=1, help="Waveforms to generate (default: 1).")
    return parser.parse_args(argv)


def output_paths(output: str, count: int) -> list[Path]:
    """`out.wav` for one waveform, `out_0.wav`, `out_1.wav`, ... for several."""
    path = Path(output)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{index}{path.suffix}") for index in range(count)]


def check_writable(paths: list[Path]) -> None:
    for path in paths:
        if path.suffix.lower() != ".wav":
            raise ValueError(f"--output must end in .wav, got {str(path)!r}.")
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise ValueError(f"The output folder {str(folder)!r} does not exist.")
        if path.is_dir() or not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise ValueError(f"Cannot write {str(path)!r}.")


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    paths = output_paths(arguments.output, max(arguments.num_waveforms, 1))
    try:
        check_writable(paths)
    except ValueError as error:
        print(f"impact-generate: error: {error}", file=sys.stderr)
        return 2

    import soundfile
    import torch

    from diffusers_impact import ImpactPipeline
    from diffusers_impact.testing_utils import tiny_impact_pipeline

    if arguments.model == TINY_RANDOM:
        print("impact-generate: using a tiny untrained pipeline (installation check): expect noise.", file=sys.stderr)
        pipe = tiny_impact_pipeline()
    else:
        pipe = ImpactPipeline.from_pretrained(arguments.model)
    try:
        audio = pipe(
            arguments.prompt,
            audio_length_in_s=arguments.length,
            num_inference_steps=arguments.steps,
            num_diffusion_steps=arguments.diffusion_steps,
            guidance_scale=arguments.guidance,
            negative_prompt=arguments.negative_prompt,
            num_waveforms_per_prompt=arguments.num_waveforms,
            generator=torch.Generator().manual_seed(arguments.seed),
        ).audios
    except ValueError as error:
        print(f"impact-generate: error: {error}", file=sys.stderr)
        return 2
    for path, waveform in zip(paths, audio):
        soundfile.write(path, waveform, pipe.vocoder.config.sampling_rate, subtype="PCM_16")
        print(f"wrote {path} ({len(waveform) / pipe.vocoder.config.sampling_rate:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
