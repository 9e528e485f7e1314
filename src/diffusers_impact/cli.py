"""`impact-generate`: text → WAV from the command line.

Example (the embedded default model, trained on ten animal sounds; `--model` takes any ImpactPipeline folder or Hub
id):

    impact-generate "a dog barking" -o dog.wav --seed 0 --mel-png dog.png
"""

import argparse
import importlib.util
import os
import sys
from pathlib import Path

DEFAULT_MODEL = "default"
TINY_RANDOM = "tiny-random"


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="impact-generate", description="Generate audio from text with IMPACT.")
    parser.add_argument("prompt", help="What the audio should contain, e.g. 'a dog barking'.")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"Pipeline folder or Hub id. '{DEFAULT_MODEL}' (the default) is the embedded model, trained on ten animal "
        f"sounds (cat, cow, dog, duck, frog, horse, owl, pig, rooster, sheep); '{TINY_RANDOM}' builds a tiny "
        "untrained pipeline that only checks the installation (it makes noise).",
    )
    parser.add_argument("-o", "--output", default="impact.wav", help="Output WAV path (default: impact.wav).")
    parser.add_argument("--steps", type=int, default=None,
                        help="Decoding iterations (default: 8 for the embedded model, else the pipeline's 32).")
    parser.add_argument("--diffusion-steps", type=int, default=None,
                        help="Diffusion-head steps (default: 25 for the embedded model, else the pipeline's 100).")
    parser.add_argument("--guidance", type=float, default=5.0, help="Maximum guidance scale, ≥ 1 (default: 5.0).")
    parser.add_argument("--negative-prompt", default=None, help="Text to steer away from (optional).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default: 0).")
    parser.add_argument("--length", type=float, default=None, help="Seconds of audio (default: the model's length).")
    parser.add_argument("--num-waveforms", type=int, default=1, help="Waveforms to generate (default: 1).")
    parser.add_argument("--mel-png", default=None, help="Also save the mel spectrogram(s) as this PNG (optional).")
    return parser.parse_args(argv)


def output_paths(output: str, count: int) -> list[Path]:
    """`out.wav` for one waveform, `out_0.wav`, `out_1.wav`, ... for several."""
    path = Path(output)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{index}{path.suffix}") for index in range(count)]


def check_writable(paths: list[Path], suffix: str, option: str) -> None:
    for path in paths:
        if path.suffix.lower() != suffix:
            raise ValueError(f"{option} must end in {suffix}, got {str(path)!r}.")
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise ValueError(f"The output folder {str(folder)!r} does not exist.")
        if path.is_dir() or not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise ValueError(f"Cannot write {str(path)!r}.")


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    paths = output_paths(arguments.output, max(arguments.num_waveforms, 1))
    try:
        check_writable(paths, ".wav", "--output")
        if arguments.mel_png:
            check_writable([Path(arguments.mel_png)], ".png", "--mel-png")
            if importlib.util.find_spec("matplotlib") is None:
                raise ValueError("--mel-png needs matplotlib: `pip install matplotlib`.")
    except ValueError as error:
        print(f"impact-generate: error: {error}", file=sys.stderr)
        return 2

    import soundfile
    import torch

    from diffusers_impact import ImpactPipeline
    from diffusers_impact.audio import mel_spectrogram
    from diffusers_impact.pretrained import DEFAULT_MODEL_CALL_KWARGS, load_default_pipeline
    from diffusers_impact.testing_utils import tiny_impact_pipeline
    from diffusers_impact.visualization import save_mel_spectrograms_png

    call_kwargs = {}
    if arguments.model == DEFAULT_MODEL:
        pipe = load_default_pipeline()
        call_kwargs.update(DEFAULT_MODEL_CALL_KWARGS)
    elif arguments.model == TINY_RANDOM:
        print("impact-generate: using a tiny untrained pipeline (installation check): expect noise.", file=sys.stderr)
        pipe = tiny_impact_pipeline()
    else:
        pipe = ImpactPipeline.from_pretrained(arguments.model)
    if arguments.steps is not None:
        call_kwargs["num_inference_steps"] = arguments.steps
    if arguments.diffusion_steps is not None:
        call_kwargs["num_diffusion_steps"] = arguments.diffusion_steps
    try:
        output = pipe(
            arguments.prompt,
            audio_length_in_s=arguments.length,
            **call_kwargs,
            guidance_scale=arguments.guidance,
            negative_prompt=arguments.negative_prompt,
            num_waveforms_per_prompt=arguments.num_waveforms,
            generator=torch.Generator().manual_seed(arguments.seed),
            output_type="pt",
        )
    except ValueError as error:
        print(f"impact-generate: error: {error}", file=sys.stderr)
        return 2
    sampling_rate = pipe.vocoder.config.sampling_rate
    for path, waveform in zip(paths, output.audios.float().cpu().numpy()):
        soundfile.write(path, waveform, sampling_rate, subtype="PCM_16")
        print(f"wrote {path} ({len(waveform) / sampling_rate:.2f} s)")
    if arguments.mel_png:
        mels = mel_spectrogram(output.audios.float().cpu(), num_frames=None)[:, 0].numpy()
        titles = [arguments.prompt if len(paths) == 1 else f"{arguments.prompt} ({path.name})" for path in paths]
        save_mel_spectrograms_png(mels, titles, arguments.mel_png, columns=1)
        print(f"wrote {arguments.mel_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
