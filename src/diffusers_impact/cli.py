"""`impact-generate`: text → WAV from the command line.

Example (the embedded default model, trained on ten animal sounds; `--model` takes any ImpactPipeline folder or Hub
id):

    impact-generate "a dog barking" -o dog.wav --seed 0 --mel-png dog.png
    impact-generate --prompts-file prompts.txt -o clips/ --batch-size 8      # many prompts, resumable
    impact-generate "a cow mooing" --audio dog.wav --inpaint 1.0-3.0 -o filled.wav   # audio in, audio out
    impact-generate "a dog barking" --audio dog.wav --length 60 -o long.wav          # continue it to 60 s

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
    "diffusion_step_annealing": "--annealing",
    "guidance_scale": "--guidance",
    "audio_length_in_s": "--length",
    "num_waveforms_per_prompt": "--num-waveforms",
    "negative_prompt": "--negative-prompt",
    "prompt": "PROMPT",
    "audio": "--audio",
    "mask_start_s": "--inpaint",
    "mask_end_s": "--inpaint",
    "mask_bands": "--bands",
    "strength": "--strength",
    "window_overlap_s": "--overlap",
}
AUDIO_FLAGS = ("inpaint", "strength", "bands", "downmix")


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


def region(text: str) -> tuple[float, float]:
    """`START-END` in seconds, e.g. `1.5-3`."""
    start, end = (float(part) for part in text.split("-"))
    if not (math.isfinite(start) and math.isfinite(end)) or not 0 <= start < end:
        raise ValueError
    return start, end


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise ValueError
    return value


def band_list(text: str) -> list[int]:
    """`3` or `2,3`: token bands, 0 the lowest."""
    bands = [int(part) for part in text.split(",")]
    if any(band < 0 for band in bands):
        raise ValueError
    return bands


def diffusion_steps(text: str) -> int | tuple[int, int]:
    """`25`, or `50:5` for annealing from 50 to 5 steps."""
    values = tuple(positive_integer(part) for part in text.split(":"))
    if len(values) > 2:
        raise ValueError
    return values[0] if len(values) == 1 else values


# argparse names the flag and the value in its message ("argument --steps: invalid positive integer value: '0'").
positive_integer.__name__ = "positive integer"
guidance_scale.__name__ = "guidance scale (a number ≥ 1)"
positive_seconds.__name__ = "length in seconds (a number > 0)"
diffusion_steps.__name__ = "step count (N, or FIRST:LAST)"
region.__name__ = "region START-END in seconds (0 ≤ START < END)"
fraction.__name__ = "strength (a number in (0, 1])"
band_list.__name__ = "band list (e.g. 3 or 2,3)"


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="impact-generate",
        description="Generate audio from text with IMPACT.",
        epilog="With --num-waveforms N > 1 the files are numbered: -o out.wav writes out_0.wav ... out_{N-1}.wav "
        "(waveform k is the k-th of the batch generated from --seed). With --prompts-file, -o is a folder and line L "
        "of the file (prompt P) becomes LLLL_P.wav (P in lower case, words joined by '-', at most 60 characters), "
        "or LLLL_P_k.wav for several waveforms; its seeds derive from --seed, L and k only, so a clip is the same "
        "whatever the batch. Files that exist are skipped (resume an interrupted run by running it again); each "
        "file is written whole or not at all. A clip that would clip in 16-bit PCM is scaled to peak at -1 dBFS, "
        "and the command says so.",
    )
    parser.add_argument("prompt", nargs="?", help="What the audio should contain, e.g. 'a dog barking'.")
    parser.add_argument(
        "--prompts-file",
        default=None,
        help="Generate every line of this UTF-8 text file (blank lines are skipped) instead of PROMPT.",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_integer,
        default=8,
        help="Prompts generated together with --prompts-file (default: 8).",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"Pipeline folder or Hub id. '{DEFAULT_MODEL}' (the default) is the embedded model, trained on ten animal "
        f"sounds (cat, cow, dog, duck, frog, horse, owl, pig, rooster, sheep); '{TINY_RANDOM}' builds a tiny "
        "untrained pipeline that only checks the installation (it makes noise).",
    )
    parser.add_argument(
        "--head",
        choices=["diffusion", "energy"],
        default=None,
        help="The embedded model's head: diffusion (IMPACT, the default) or energy (its one-step AudioDEAR student, "
        "one head call per decoding iteration). With another --model, the head that model must have.",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="Output WAV path (default: impact.wav), or with --prompts-file the output folder (default: "
        "impact-outputs).",
    )
    parser.add_argument(
        "--steps",
        type=positive_integer,
        default=None,
        help="Decoding iterations (default: the model's recommended setting, 8 for the embedded model; else 32).",
    )
    parser.add_argument(
        "--diffusion-steps",
        type=diffusion_steps,
        metavar="STEPS",
        default=None,
        help="Diffusion-head steps per decoding iteration (default: the model's recommended setting, 25 "
        "for the embedded model; else 100), or FIRST:LAST to anneal them from the first iteration to "
        "the last (DiSA, e.g. 50:5).",
    )
    parser.add_argument(
        "--annealing",
        metavar="SHAPE",
        default="linear",
        help="How FIRST:LAST anneals the head steps: linear (DiSA's schedule, the default) or geometric (fewer steps in "
        "the middle iterations: faster, slightly less accurate; see the README's Speed section).",
    )
    parser.add_argument(
        "--guidance",
        type=guidance_scale,
        default=None,
        help="Maximum guidance scale, ≥ 1 (default: the model's recommended setting, else 5.0).",
    )
    parser.add_argument("--negative-prompt", default=None, help="Text to steer away from (optional).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default: 0).")
    parser.add_argument(
        "--length",
        type=positive_seconds,
        default=None,
        help="Seconds of audio (default: the model's length, or --audio's); above the model's length it is generated "
        "in overlapping windows, each continuing the one before.",
    )
    parser.add_argument(
        "--num-waveforms",
        type=positive_integer,
        default=1,
        help="Waveforms to generate (default: 1); see below for their file names.",
    )
    parser.add_argument("--mel-png", default=None, help="Also save the mel spectrogram(s) as this PNG (optional).")
    parser.add_argument(
        "--lora",
        default=None,
        metavar="FOLDER_OR_HUB_ID",
        help="A LoRA adapter for the model (pytorch_lora_weights.safetensors, e.g. made by train_impact.py "
        '--lora_rank); needs peft (pip install -e ".[lora]").',
    )
    parser.add_argument(
        "--lora-scale", type=float, default=None, help="Weight of the --lora adapter (default 1.0; 0 disables it)."
    )
    audio = parser.add_argument_group(
        "audio input",
        "Start from a recording: its tokens are kept except where you ask for new ones, and the output equals it "
        "outside those regions (50 ms crossfades inside them). --length above the model's length generates in "
        "overlapping windows (also without --audio).",
    )
    audio.add_argument("--audio", default=None, help="Input audio file (any format soundfile reads; resampled).")
    audio.add_argument(
        "--downmix", action="store_true", help="Average the channels of a multi-channel --audio (refused otherwise)."
    )
    audio.add_argument(
        "--inpaint",
        type=region,
        action="append",
        metavar="START-END",
        help="Generate this region of --audio anew (seconds, e.g. 1.5-3); repeat for several regions.",
    )
    audio.add_argument(
        "--strength", type=fraction, default=None, help="Variations: fraction of --audio's tokens generated anew."
    )
    audio.add_argument(
        "--bands",
        type=band_list,
        default=None,
        help="Frequency bands to generate (0 the lowest; e.g. the top band of a low-passed clip), the others kept.",
    )
    audio.add_argument(
        "--overlap",
        type=positive_seconds,
        default=None,
        help="Long --length: seconds each window shares with the one before (default: half the model's length).",
    )
    arguments = parser.parse_args(argv)
    if (arguments.prompt is None) == (arguments.prompts_file is None):
        parser.error("give a PROMPT or --prompts-file FILE (one of them).")
    if arguments.prompts_file is not None and arguments.mel_png:
        parser.error("--mel-png goes with a single PROMPT, not with --prompts-file.")
    if arguments.prompts_file is not None and arguments.audio:
        parser.error("--audio goes with a single PROMPT, not with --prompts-file.")
    if arguments.lora_scale is not None and (arguments.lora is None or not math.isfinite(arguments.lora_scale)):
        parser.error("--lora-scale is a finite weight for the --lora adapter: pass --lora FOLDER_OR_HUB_ID too.")
    passed = [f"--{name}" for name in AUDIO_FLAGS if getattr(arguments, name) not in (None, False)]
    if passed and arguments.audio is None:
        parser.error(f"{', '.join(passed)} act on an input recording: pass --audio FILE too.")
    return arguments


def output_paths(output: str, count: int) -> list[Path]:
    """`out.wav` for one waveform, `out_0.wav`, `out_1.wav`, ... for several."""
    path = Path(output)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{index}{path.suffix}") for index in range(count)]


def slug(prompt: str, length: int = 60) -> str:
    """The prompt as a file-name part: lower-case words of letters and digits joined by '-'."""
    return "-".join(re.findall(r"[^\W_]+", prompt.lower()))[:length].strip("-") or "prompt"


def read_prompts(prompts_file: str) -> list[tuple[int, str]]:
    """(line number from 1, prompt) for every non-blank line."""
    try:
        lines = Path(prompts_file).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ValueError(f"--prompts-file {prompts_file!r} cannot be read ({error.strerror}).") from None
    except UnicodeDecodeError as error:
        line = Path(prompts_file).read_bytes()[: error.start].count(b"\n") + 1
        raise ValueError(f"--prompts-file {prompts_file!r} is not UTF-8 text (line {line}).") from None
    prompts = [(number, line.strip()) for number, line in enumerate(lines, start=1) if line.strip()]
    if not prompts:
        raise ValueError(f"--prompts-file {prompts_file!r} has no prompts (no non-blank lines).")
    return prompts


def clip_seed(seed: int, line: int, waveform: int) -> int:
    """The seed of waveform `waveform` of line `line`: independent of the batch the line falls in."""
    import numpy as np

    return int(np.random.SeedSequence([seed, line, waveform]).generate_state(1, dtype=np.uint64)[0] >> 1)


def write_wav(path: Path, waveform, sampling_rate: int) -> None:
    """16-bit WAV, scaled below full scale if it would clip, written to a temporary name and renamed into place (an
    interrupted run never leaves a partial file that a resumed run would skip)."""
    import soundfile

    waveform, scale = below_full_scale(waveform)
    if scale is not None:
        print(
            f"impact-generate: {path} peaked at {PEAK_CEILING / scale:.2f} (over full scale): scaled by "
            f"{scale:.3f} to peak at -1 dBFS.",
            file=sys.stderr,
        )
    temporary = path.with_name(f".{path.name}.partial.wav")
    soundfile.write(temporary, waveform, sampling_rate, subtype="PCM_16")
    os.replace(temporary, path)


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


def read_input_audio(path: str, downmix: bool):
    """--audio: the samples (float32, mono) and their sampling rate; several channels only with --downmix."""
    import numpy as np
    import soundfile

    try:
        samples, sampling_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, OSError) as error:
        raise ValueError(f"--audio {path!r} cannot be read as audio: {error}") from None
    if samples.size == 0:
        raise ValueError(f"--audio {path!r} holds no samples.")
    if samples.shape[1] > 1 and not downmix:
        raise ValueError(
            f"--audio {path!r} has {samples.shape[1]} channels; the model takes mono. Pass --downmix to average them."
        )
    return np.ascontiguousarray(samples.mean(axis=1)), sampling_rate


def load_pipeline(model: str, head: str | None = None):
    """The pipeline named by --model (it carries its own recommended call settings), with the --head asked for."""
    from diffusers_impact import ImpactPipeline
    from diffusers_impact.pretrained import load_default_pipeline
    from diffusers_impact.testing_utils import tiny_impact_pipeline

    if model == DEFAULT_MODEL:
        return load_default_pipeline(head=head or "diffusion")
    if model == TINY_RANDOM:
        print("impact-generate: using a tiny untrained pipeline (installation check): expect noise.", file=sys.stderr)
        return tiny_impact_pipeline(head=head or "diffusion")
    if not os.path.isdir(model) and not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", model):
        raise ValueError(f"--model {model!r}: no such folder. Pass an ImpactPipeline folder or a Hub id (owner/name).")
    try:
        pipe = ImpactPipeline.from_pretrained(model)
    except (OSError, ValueError, TypeError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--model {model!r} could not be loaded as an ImpactPipeline: {first_line}") from error
    if head is not None and pipe.head_type != head:
        raise ValueError(
            f"--head {head}, but --model {model!r} has a {pipe.head_type} head. Leave --head out to use the model's."
        )
    return pipe


def load_lora(pipe, lora: str, scale: float) -> None:
    """--lora and --lora-scale: the adapter, active at that weight."""
    try:
        pipe.load_lora_weights(lora, adapter_name="lora")
    except (OSError, ValueError, ImportError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--lora {lora!r} could not be loaded: {first_line}") from error
    pipe.set_adapters(["lora"], [scale])


def note_unfamiliar_prompts(pipe, prompts: list[str]) -> None:
    """The default model knows ten sounds: say so for prompts far from all of them."""
    from diffusers_impact.pretrained import known_sounds, unfamiliar_prompts

    for prompt in unfamiliar_prompts(pipe, prompts):
        print(
            f"impact-generate: note: {prompt!r} is far from everything the default model was trained on; it knows "
            f"only these sounds: {', '.join(sorted(known_sounds()))}. Expect noise or one of them.",
            file=sys.stderr,
        )


def generate_prompts_file(arguments, pipe, call_kwargs) -> None:
    """--prompts-file: batches of prompts, one progress bar over clips, existing files skipped."""
    import torch
    from tqdm.auto import tqdm

    folder = Path(arguments.output or "impact-outputs")
    prompts = read_prompts(arguments.prompts_file)
    count = arguments.num_waveforms
    jobs = []  # (prompt, paths, seeds) of the lines still to generate
    for line, prompt in prompts:
        stem = f"{line:04d}_{slug(prompt)}"
        paths = [folder / f"{stem}.wav"] if count == 1 else [folder / f"{stem}_{k}.wav" for k in range(count)]
        if not all(path.exists() for path in paths):
            jobs.append((prompt, paths, [clip_seed(arguments.seed, line, k) for k in range(count)]))
    skipped = len(prompts) - len(jobs)
    print(
        f"{len(prompts)} prompts in {arguments.prompts_file}: {skipped} done already, {len(jobs)} to generate "
        f"into {folder}/.",
        file=sys.stderr,
    )
    if not jobs:
        return
    folder.mkdir(parents=True, exist_ok=True)
    check_writable([path for _, paths, _ in jobs for path in paths], ".wav", "--output")
    if arguments.model == DEFAULT_MODEL:
        note_unfamiliar_prompts(pipe, sorted({prompt for prompt, _, _ in jobs}))
    pipe.set_progress_bar_config(disable=True)  # one bar over clips instead
    sampling_rate = pipe.vocoder.config.sampling_rate
    with tqdm(total=len(jobs) * count, unit="clip", desc="impact-generate") as progress:
        for start in range(0, len(jobs), arguments.batch_size):
            batch = jobs[start : start + arguments.batch_size]
            waveforms = pipe(
                [prompt for prompt, _, _ in batch],
                audio_length_in_s=arguments.length,
                window_overlap_s=arguments.overlap,
                **call_kwargs,
                generator=[torch.Generator().manual_seed(seed) for _, _, seeds in batch for seed in seeds],
                output_type="np",
            ).audios
            for path, waveform in zip([path for _, paths, _ in batch for path in paths], waveforms):
                write_wav(path, waveform, sampling_rate)
            progress.update(len(batch) * count)


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    try:
        if arguments.prompts_file is None:
            paths = output_paths(arguments.output or "impact.wav", arguments.num_waveforms)
            check_writable(paths, ".wav", "--output")
            if arguments.mel_png:
                check_writable([Path(arguments.mel_png)], ".png", "--mel-png")
        elif arguments.output and Path(arguments.output).exists() and not Path(arguments.output).is_dir():
            raise ValueError(f"With --prompts-file, --output is a folder; {arguments.output!r} is a file.")
        import torch

        pipe = load_pipeline(arguments.model, arguments.head)
        if arguments.lora is not None:
            load_lora(pipe, arguments.lora, 1.0 if arguments.lora_scale is None else arguments.lora_scale)
        # A setting not given (None) is the model's recommended one (`ImpactPipeline.call_defaults`).
        call_kwargs = {
            "num_inference_steps": arguments.steps,
            "num_diffusion_steps": arguments.diffusion_steps,
            "diffusion_step_annealing": arguments.annealing,  # refused by an energy head unless "linear" (the default)
            "guidance_scale": arguments.guidance,
            "negative_prompt": arguments.negative_prompt,
            "num_waveforms_per_prompt": arguments.num_waveforms,
        }
        if arguments.prompts_file is not None:
            generate_prompts_file(arguments, pipe, call_kwargs)
            return 0
        if arguments.model == DEFAULT_MODEL:
            note_unfamiliar_prompts(pipe, [arguments.prompt])
        if arguments.audio is not None:
            samples, audio_sampling_rate = read_input_audio(arguments.audio, arguments.downmix)
            regions = arguments.inpaint or []
            call_kwargs.update(
                audio=samples,
                audio_sampling_rate=audio_sampling_rate,
                mask_start_s=[start for start, _ in regions] or None,
                mask_end_s=[end for _, end in regions] or None,
                mask_bands=arguments.bands,
                strength=arguments.strength,
            )
        output = pipe(
            arguments.prompt,
            audio_length_in_s=arguments.length,
            window_overlap_s=arguments.overlap,
            **call_kwargs,
            generator=torch.Generator().manual_seed(arguments.seed),
            output_type="pt",
        )
    except (ValueError, FloatingPointError) as error:
        print(f"impact-generate: error: {with_flag_names(str(error))}", file=sys.stderr)
        return 2
    sampling_rate = pipe.vocoder.config.sampling_rate
    for path, waveform in zip(paths, output.audios.float().cpu().numpy()):
        write_wav(path, waveform, sampling_rate)
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
