"""`impact-generate`: text → WAV from the command line.

Example (the embedded default model, trained on ten animal sounds; `--model` takes any ImpactPipeline folder or Hub
id):

    impact-generate "a dog barking" -o dog.wav --seed 0 --mel-png dog.png

Only the standard library is imported before the arguments are checked, so `--help` and argument errors are instant;
torch, diffusers and the model load afterwards.
"""

import argparse
import math
import os
import re
import sys
from pathlib import Path

DEFAULT_MODEL = "default"
TINY_RANDOM = "tiny-random"
# Clips that would clip in 16-bit PCM are scaled to peak here: -1 dBFS, headroom for resampling and lossy encoding.
PEAK_CEILING = 10 ** (-1 / 20)
# The pipeline's argument names in its error messages, and the flags the user typed.
FLAGS = {
    "num_inference_steps": "--steps",
    "num_diffusion_steps": "--diffusion-steps",
    "guidance_scale": "--guidance",
    "audio_length_in_s": "--length",
    "num_waveforms_per_prompt": "--num-waveforms",
    "negative_prompt": "--negative-prompt",
    "prompt": "PROMPT",
}


def positive_integer(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError
    return value


def guidance_scale(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 1.0:
        raise ValueError
    return value


def positive_seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError
    return value


# argparse names the flag and the value in its message ("argument --steps: invalid positive integer value: '0'").
positive_integer.__name__ = "positive integer"
guidance_scale.__name__ = "guidance scale (a number ≥ 1)"
positive_seconds.__name__ = "length in seconds (a number > 0)"


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="impact-generate",
        description="Generate audio from text with IMPACT.",
        epilog="With --num-waveforms N > 1 the files are numbered: -o out.wav writes out_0.wav ... out_{N-1}.wav "
        "(waveform k is the k-th of the batch generated from --seed). A clip that would clip in 16-bit PCM is scaled "
        "to peak at -1 dBFS, and the command says so.",
    )
    parser.add_argument("prompt", help="What the audio should contain, e.g. 'a dog barking'.")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"Pipeline folder or Hub id. '{DEFAULT_MODEL}' (the default) is the embedded model, trained on ten animal "
        f"sounds (cat, cow, dog, duck, frog, horse, owl, pig, rooster, sheep); '{TINY_RANDOM}' builds a tiny "
        "untrained pipeline that only checks the installation (it makes noise).",
    )
    parser.add_argument("-o", "--output", default="impact.wav", help="Output WAV path (default: impact.wav).")
    parser.add_argument("--steps", type=positive_integer, default=None,
                        help="Decoding iterations (default: 8 for the embedded model, else the pipeline's 32).")
    parser.add_argument("--diffusion-steps", type=positive_integer, default=None,
                        help="Diffusion-head steps (default: 25 for the embedded model, else the pipeline's 100).")
    parser.add_argument("--guidance", type=guidance_scale, default=5.0, help="Maximum guidance scale, ≥ 1 (default: 5.0).")
    parser.add_argument("--negative-prompt", default=None, help="Text to steer away from (optional).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default: 0).")
    parser.add_argument("--length", type=positive_seconds, default=None, help="Seconds of audio (default: the model's length).")
    parser.add_argument("--num-waveforms", type=positive_integer, default=1,
                        help="Waveforms to generate (default: 1); see below for their file names.")
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


def with_flag_names(message: str) -> str:
    """A pipeline error in the words of the command line: `num_inference_steps` → --steps."""
    for argument, flag in FLAGS.items():
        message = message.replace(f"`{argument}`", flag)
    return message


def below_full_scale(waveform):
    """The waveform, scaled to peak at `PEAK_CEILING` if 16-bit PCM would clip it, and the factor applied (or None)."""
    import numpy as np

    peak = float(np.abs(waveform).max(initial=0.0))
    if peak < 1.0:
        return waveform, None
    scale = PEAK_CEILING / peak
    return waveform * scale, scale


def load_pipeline(model: str):
    """The pipeline named by --model, with the call settings that suit it."""
    from diffusers_impact import ImpactPipeline
    from diffusers_impact.pretrained import DEFAULT_MODEL_CALL_KWARGS, load_default_pipeline
    from diffusers_impact.testing_utils import tiny_impact_pipeline

    if model == DEFAULT_MODEL:
        return load_default_pipeline(), dict(DEFAULT_MODEL_CALL_KWARGS)
    if model == TINY_RANDOM:
        print("impact-generate: using a tiny untrained pipeline (installation check): expect noise.", file=sys.stderr)
        return tiny_impact_pipeline(), {}
    if not os.path.isdir(model) and not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", model):
        raise ValueError(f"--model {model!r}: no such folder. Pass an ImpactPipeline folder or a Hub id (owner/name).")
    try:
        return ImpactPipeline.from_pretrained(model), {}
    except (OSError, ValueError, TypeError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--model {model!r} could not be loaded as an ImpactPipeline: {first_line}") from error


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    paths = output_paths(arguments.output, arguments.num_waveforms)
    try:
        check_writable(paths, ".wav", "--output")
        if arguments.mel_png:
            check_writable([Path(arguments.mel_png)], ".png", "--mel-png")
        import soundfile
        import torch

        pipe, call_kwargs = load_pipeline(arguments.model)
        if arguments.model == DEFAULT_MODEL:
            from diffusers_impact.pretrained import known_sounds, unfamiliar_prompts

            if unfamiliar_prompts(pipe, [arguments.prompt]):
                print(
                    f"impact-generate: note: {arguments.prompt!r} is far from everything the default model was trained "
                    f"on; it knows only these sounds: {', '.join(sorted(known_sounds()))}. Expect noise or one of them.",
                    file=sys.stderr,
                )
        if arguments.steps is not None:
            call_kwargs["num_inference_steps"] = arguments.steps
        if arguments.diffusion_steps is not None:
            call_kwargs["num_diffusion_steps"] = arguments.diffusion_steps
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
    except (ValueError, FloatingPointError) as error:
        print(f"impact-generate: error: {with_flag_names(str(error))}", file=sys.stderr)
        return 2
    sampling_rate = pipe.vocoder.config.sampling_rate
    waveforms = output.audios.float().cpu().numpy()
    for path, waveform in zip(paths, waveforms):
        waveform, scale = below_full_scale(waveform)
        if scale is not None:
            print(f"impact-generate: {path} peaked at {PEAK_CEILING / scale:.2f} (over full scale): scaled by "
                  f"{scale:.3f} to peak at -1 dBFS.", file=sys.stderr)
        soundfile.write(path, waveform, sampling_rate, subtype="PCM_16")
        print(f"wrote {path} ({len(waveform) / sampling_rate:.2f} s)")
    if arguments.mel_png:
        from diffusers_impact.audio import mel_spectrogram
        from diffusers_impact.visualization import save_mel_spectrograms_png

        mels = mel_spectrogram(output.audios.float().cpu(), num_frames=None)[:, 0].numpy()
        titles = [arguments.prompt if len(paths) == 1 else f"{arguments.prompt} ({path.name})" for path in paths]
        save_mel_spectrograms_png(mels, titles, arguments.mel_png, columns=1)
        print(f"wrote {arguments.mel_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
