# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""`impact-demo`: a local web app (Gradio) for an [`ImpactPipeline`], offline, on the embedded default model by default.

    pip install -e ".[demo]"
    impact-demo                       # http://127.0.0.1:7860, the embedded default model
    impact-demo --model ./my-impact --port 8000 --concurrency 2

Two tabs: text to audio (candidates as audio players with their mel spectrograms and WAV downloads), and audio to
audio (inpaint a region, continue a clip, make variations; input and output mel spectrograms side by side). Requests
wait in Gradio's queue; `--concurrency` of them run at once, each on its own shallow copy of the one pipeline
(`ImpactPipeline.from_pipe`: the weights are shared, the schedulers and per-call state are not), so that concurrent
calls never share a scheduler's timesteps. Bad input gets a message in the page; the server keeps serving.

Nothing leaves the machine: the server binds to 127.0.0.1 unless `--host` says otherwise, Gradio's analytics are off
and the page uses the system's fonts (Gradio's default theme would fetch Google Fonts).
"""

import argparse
import copy
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no usage reports

DEFAULT_MODEL = "default"
MAX_CANDIDATES = 4
DEFAULT_MAX_LENGTH_S = 30.0  # generated audio, and uploaded audio
OUTPUT_PREFIX = "impact-demo-"  # the names of the demo's files in `output_dir`, the only files it ever deletes
KEEP_OUTPUTS_S = (
    3600  # generated files older than this are deleted (ours in `output_dir`, Gradio's copies in its cache)
)
MODES = ("Inpaint a region", "Continue", "Variation")


class ImpactDemo:
    """
    The web demo's generation functions and page for one model (one pipeline per head), as `impact-demo` serves it.

    Every function raises `gradio.Error` (shown in the page) for bad input; `blocks()` builds the page. Outputs are
    WAV files (16-bit, peak-normalised below full scale as `impact-generate` writes them) and mel-spectrogram PNGs in
    `output_dir`.

    Args:
        pipelines (`dict[str, ImpactPipeline]`): The pipeline of each head offered, e.g. `{"diffusion": pipe}`; the
            first is the page's default.
        output_dir (`str`, *optional*): Where the WAV and PNG files go; a new temporary folder by default.
        max_length_s (`float`): The longest audio generated or accepted as input.
        model_name (`str`): Shown in the page's title.

    Example:

    ```py
    >>> from pathlib import Path
    >>> from diffusers_impact.demo import ImpactDemo
    >>> from diffusers_impact.testing_utils import tiny_impact_pipeline

    >>> demo = ImpactDemo({"diffusion": tiny_impact_pipeline()})
    >>> audios, mels, downloads = demo.text_to_audio("a dog barking", "", "diffusion", 2, 2, 3.0, 0, 1.0, 2)
    >>> [Path(path).suffix for path in audios + mels]
    ['.wav', '.wav', '.png', '.png']
    >>> type(demo.blocks()).__name__  # the page; demo.launch() serves it
    'Blocks'
    ```
    """

    def __init__(
        self,
        pipelines: dict,
        output_dir: str | None = None,
        max_length_s: float = DEFAULT_MAX_LENGTH_S,
        model_name: str = "IMPACT",
    ):
        if not pipelines:
            raise ValueError("`pipelines` must name at least one pipeline, e.g. {'diffusion': pipe}.")
        self.pipelines = pipelines
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="impact-demo-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.max_length_s = float(max_length_s)
        self.model_name = model_name
        for pipe in pipelines.values():
            pipe.set_progress_bar_config(disable=False)

    # --- generation ------------------------------------------------------------------------------------------------
    def _pipeline_for_request(self, head: str):
        """A shallow copy of the head's pipeline: the modules (weights) are shared, the schedulers and the per-call
        state (`_guidance_scale`, `_num_timesteps`, ...) are its own. (`from_pipe` would also do, but it casts the
        shared modules to float32.)"""
        if head not in self.pipelines:
            raise self._error(f"Head {head!r} is not available here; choose one of {sorted(self.pipelines)}.")
        pipe = self.pipelines[head]
        request_pipe = copy.copy(pipe)
        for name, module in pipe.components.items():
            if "scheduler" in name:
                setattr(request_pipe, name, copy.deepcopy(module))  # re-registered on the copy's config only
        return request_pipe

    @staticmethod
    def _error(message: str):
        import gradio

        return gradio.Error(message, print_exception=False)

    def _new_path(self, stem: str, suffix: str) -> Path:
        """A new, unique file name in `output_dir`: `impact-demo-…`."""
        return self.output_dir / f"{OUTPUT_PREFIX}{uuid.uuid4().hex[:12]}-{stem}{suffix}"

    def _delete_expired_outputs(self) -> None:
        """The demo's own files in `output_dir` older than `KEEP_OUTPUTS_S` go, so that a server running for days does
        not fill the disk (no other file in the folder is touched)."""
        expired = time.time() - KEEP_OUTPUTS_S
        for old in self.output_dir.glob(f"{OUTPUT_PREFIX}*"):
            if old.stat().st_mtime < expired:
                old.unlink(missing_ok=True)

    def _write_outputs(self, waveforms, sampling_rate: int, titles: list[str]) -> tuple[list[str], list[str]]:
        """Each waveform as a WAV file and its mel spectrogram as a PNG; their paths."""
        import numpy as np
        import soundfile
        import torch

        from diffusers_impact.audio import SAMPLING_RATE, mel_spectrogram, resample
        from diffusers_impact.cli import below_full_scale
        from diffusers_impact.visualization import save_mel_spectrograms_png

        self._delete_expired_outputs()  # once per request
        wavs, mels = [], []
        for waveform, title in zip(waveforms, titles):
            waveform = np.asarray(waveform, dtype=np.float32)
            wav = self._new_path("audio", ".wav")
            soundfile.write(wav, below_full_scale(waveform)[0], sampling_rate, subtype="PCM_16")
            png = self._new_path("mel", ".png")
            at_16k = resample(waveform, sampling_rate, SAMPLING_RATE).astype(np.float32)  # the mel front-end's rate
            mel = mel_spectrogram(torch.from_numpy(at_16k)[None], num_frames=None)[0, 0].numpy()
            save_mel_spectrograms_png(mel[None], [title], png, columns=1)
            wavs.append(str(wav))
            mels.append(str(png))
        return wavs, mels

    def _call(self, head: str, progress, **kwargs):
        """One pipeline call on a per-request copy; pipeline errors become messages in the page."""
        import torch

        pipe = self._pipeline_for_request(head)
        if head != "diffusion":
            kwargs.pop("num_diffusion_steps")  # a one-step head has no steps to choose
        progress(0, desc="Generating")
        try:
            with torch.inference_mode():
                return pipe(**kwargs, output_type="np").audios, pipe.vocoder.config.sampling_rate
        except (ValueError, FloatingPointError) as error:
            raise self._error(str(error)) from None

    def _check_common(self, prompt: str, negative_prompt, iterations, head_steps, guidance, seed) -> tuple[dict, int]:
        """The settings both tabs share, checked: the pipeline's keyword arguments for them, and the seed."""
        prompt = (prompt or "").strip()
        if not prompt:
            raise self._error("Type a prompt first, e.g. “a dog barking”.")
        for name, value, low in (("Decoding iterations", iterations, 1), ("Head steps", head_steps, 1)):
            if value is None or int(value) != value or value < low:
                raise self._error(f"{name} must be a whole number ≥ {low}, got {value}.")
        if guidance is None or not 1.0 <= float(guidance) <= 50.0:
            raise self._error(f"Guidance must be between 1 and 50 (1 turns it off), got {guidance}.")
        if seed is None or int(seed) != seed or not 0 <= seed < 2**63:
            raise self._error(f"Seed must be a whole number from 0 to 2⁶³ − 1, got {seed}.")
        call = {
            "prompt": prompt,
            "negative_prompt": (negative_prompt or "").strip() or None,
            "num_inference_steps": int(iterations),
            "num_diffusion_steps": int(head_steps),
            "guidance_scale": float(guidance),
        }
        return call, int(seed)

    def text_to_audio(
        self,
        prompt,
        negative_prompt,
        head,
        iterations,
        head_steps,
        guidance,
        seed,
        length_s,
        candidates,
        progress=None,
    ):
        """The text tab: `candidates` clips for `prompt`; returns (WAV paths, mel PNG paths, WAV paths to download)."""
        import torch

        progress = progress or _no_progress
        call, seed = self._check_common(prompt, negative_prompt, iterations, head_steps, guidance, seed)
        if length_s is None or not 0 < float(length_s) <= self.max_length_s:
            raise self._error(f"Length must be above 0 and at most {self.max_length_s:g} s, got {length_s}.")
        if candidates is None or int(candidates) != candidates or not 1 <= candidates <= MAX_CANDIDATES:
            raise self._error(f"Candidates must be a whole number from 1 to {MAX_CANDIDATES}, got {candidates}.")
        candidates = int(candidates)
        audios, sampling_rate = self._call(
            head,
            progress,
            **call,
            audio_length_in_s=float(length_s),
            num_waveforms_per_prompt=candidates,
            generator=[torch.Generator().manual_seed(seed + k) for k in range(candidates)],
        )
        titles = [f"{call['prompt']} (seed {seed + k})" for k in range(candidates)]
        wavs, mels = self._write_outputs(audios, sampling_rate, titles)
        return wavs, mels, wavs

    def read_audio(self, path: str | None):
        """An uploaded or recorded clip as mono float32 samples (channels averaged) and its sampling rate."""
        import numpy as np
        import soundfile

        if not path:
            raise self._error("Upload or record a clip first.")
        try:
            samples, sampling_rate = soundfile.read(path, dtype="float32", always_2d=True)
        except (soundfile.SoundFileError, RuntimeError, OSError):
            raise self._error(
                f"“{Path(path).name}” cannot be read as audio. Upload a WAV, FLAC, OGG or MP3 file."
            ) from None
        if samples.size == 0:
            raise self._error(f"“{Path(path).name}” holds no samples.")
        if not np.isfinite(samples).all():
            raise self._error(f"“{Path(path).name}” has NaN or infinite samples.")
        seconds = len(samples) / sampling_rate
        if seconds > self.max_length_s:
            raise self._error(
                f"“{Path(path).name}” is {seconds:.1f} s long; this demo takes clips up to {self.max_length_s:g} s."
            )
        return np.ascontiguousarray(samples.mean(axis=1)), sampling_rate

    def audio_to_audio(
        self,
        audio_path,
        prompt,
        mode,
        start_s,
        end_s,
        length_s,
        strength,
        negative_prompt,
        head,
        iterations,
        head_steps,
        guidance,
        seed,
        progress=None,
    ):
        """The audio tab: inpaint [start_s, end_s), continue to `length_s`, or a variation at `strength`; returns
        (output WAV, input mel PNG, output mel PNG)."""
        import torch

        progress = progress or _no_progress
        samples, sampling_rate = self.read_audio(audio_path)
        call, seed = self._check_common(prompt, negative_prompt, iterations, head_steps, guidance, seed)
        input_seconds = len(samples) / sampling_rate
        kwargs = {}
        if mode == "Inpaint a region":
            if start_s is None or end_s is None or not 0 <= start_s < end_s <= input_seconds:
                raise self._error(
                    f"The region must satisfy 0 ≤ start < end ≤ {input_seconds:.2f} s (the clip's length), "
                    f"got start {start_s} and end {end_s}."
                )
            kwargs.update(mask_start_s=float(start_s), mask_end_s=float(end_s))
        elif mode == "Continue":
            if length_s is None or not input_seconds < float(length_s) <= self.max_length_s:
                raise self._error(
                    f"To continue a {input_seconds:.2f} s clip, the output length must be above that and at most "
                    f"{self.max_length_s:g} s, got {length_s}."
                )
            kwargs.update(audio_length_in_s=float(length_s))
        elif mode == "Variation":
            if strength is None or not 0 < float(strength) <= 1:
                raise self._error(f"Strength must be in (0, 1], got {strength}.")
            kwargs.update(strength=float(strength))
        else:
            raise self._error(f"Mode must be one of {', '.join(MODES)}, got {mode!r}.")
        audios, output_rate = self._call(
            head,
            progress,
            **call,
            audio=samples,
            audio_sampling_rate=sampling_rate,
            generator=torch.Generator().manual_seed(seed),
            **kwargs,
        )
        from diffusers_impact.audio import resample

        given = resample(samples, sampling_rate, output_rate)
        (output_wav, _), (output_mel, input_mel) = self._write_outputs(
            [audios[0], given], output_rate, [f"{mode.lower()}: {call['prompt']}", "input"]
        )
        return output_wav, input_mel, output_mel

    # --- page ------------------------------------------------------------------------------------------------------
    def blocks(self):
        """The page: a `gradio.Blocks` with the text-to-audio and audio-to-audio tabs."""
        import gradio as gr

        first = next(iter(self.pipelines.values()))
        defaults = first.call_defaults
        model_length = first.max_audio_length_in_s

        def settings():
            """The generation settings shared by both tabs."""
            with gr.Accordion("Settings", open=True):
                with gr.Row():
                    head = gr.Radio(
                        list(self.pipelines),
                        value=next(iter(self.pipelines)),
                        label="Head",
                        info="diffusion: MAR's diffusion head; energy: AudioDEAR's one-step head",
                        visible=len(self.pipelines) > 1,
                    )
                    iterations = gr.Slider(
                        1, 64, value=defaults["num_inference_steps"], step=1, label="Decoding iterations"
                    )
                    head_steps = gr.Slider(
                        1,
                        250,
                        value=defaults.get("num_diffusion_steps", 100),
                        step=1,
                        label="Head steps (diffusion head)",
                    )
                    guidance = gr.Slider(1.0, 15.0, value=defaults["guidance_scale"], step=0.5, label="Guidance")
                    seed = gr.Number(0, precision=0, label="Seed")
            return head, iterations, head_steps, guidance, seed

        with gr.Blocks(
            title=f"{self.model_name} · diffusers_impact",
            analytics_enabled=False,
            delete_cache=(KEEP_OUTPUTS_S, KEEP_OUTPUTS_S),  # Gradio's copies of the outputs, checked every hour
        ) as page:
            gr.Markdown(
                f"# {self.model_name}\nText to audio with IMPACT (iterative mask-based parallel decoding), running "
                "on this machine."
            )
            with gr.Tab("Text to audio"):
                with gr.Row():
                    prompt = gr.Textbox(label="Prompt", placeholder="a dog barking", elem_id="prompt", scale=3)
                    negative = gr.Textbox(label="Negative prompt", scale=2)
                head, iterations, head_steps, guidance, seed = settings()
                with gr.Row():
                    length = gr.Slider(
                        0.5,
                        self.max_length_s,
                        value=model_length,
                        step=0.01,
                        label="Length (s)",
                        info=f"above {model_length:g} s: generated in overlapping windows",
                    )
                    candidates = gr.Slider(1, MAX_CANDIDATES, value=2, step=1, label="Candidates")
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
                players, images = [], []
                with gr.Row():
                    for k in range(MAX_CANDIDATES):
                        with gr.Column(min_width=240):
                            players.append(
                                gr.Audio(
                                    label=f"Candidate {k + 1}",
                                    type="filepath",
                                    interactive=False,
                                    buttons=["download"],
                                    elem_id=f"candidate-{k}",
                                    visible=False,
                                )
                            )
                            images.append(
                                gr.Image(
                                    label=f"Mel spectrogram {k + 1}",
                                    show_label=False,
                                    type="filepath",
                                    interactive=False,
                                    format="png",
                                    elem_id=f"mel-{k}",
                                    visible=False,
                                )
                            )
                downloads = gr.File(
                    label="WAV downloads", file_count="multiple", interactive=False, elem_id="downloads"
                )

                # Named parameters, not *values: Gradio finds the `gr.Progress` argument by its position among them.
                def on_generate(
                    prompt,
                    negative_prompt,
                    head,
                    iterations,
                    head_steps,
                    guidance,
                    seed,
                    length_s,
                    candidates,
                    progress=gr.Progress(track_tqdm=True),
                ):
                    wavs, mels, files = self.text_to_audio(
                        prompt,
                        negative_prompt,
                        head,
                        iterations,
                        head_steps,
                        guidance,
                        seed,
                        length_s,
                        candidates,
                        progress=progress,
                    )
                    return (
                        *[
                            gr.Audio(value=wavs[k] if k < len(wavs) else None, visible=k < len(wavs))
                            for k in range(MAX_CANDIDATES)
                        ],
                        *[
                            gr.Image(value=mels[k] if k < len(mels) else None, visible=k < len(mels))
                            for k in range(MAX_CANDIDATES)
                        ],
                        files,
                    )

                generate.click(
                    on_generate,
                    inputs=[prompt, negative, head, iterations, head_steps, guidance, seed, length, candidates],
                    outputs=[*players, *images, downloads],
                    api_name="text_to_audio",
                )

            with gr.Tab("Audio to audio"):
                with gr.Row():
                    source = gr.Audio(
                        label=f"Input clip (≤ {self.max_length_s:g} s; stereo is averaged to mono)",
                        sources=["upload", "microphone"],
                        type="filepath",
                        elem_id="input-audio",
                    )
                    with gr.Column():
                        audio_prompt = gr.Textbox(label="Prompt", placeholder="a cat meowing", elem_id="audio-prompt")
                        mode = gr.Radio(list(MODES), value=MODES[0], label="What to do")
                        with gr.Row():
                            start = gr.Number(1.0, label="Region start (s)")
                            end = gr.Number(2.0, label="Region end (s)")
                        output_length = gr.Slider(
                            1.0,
                            self.max_length_s,
                            value=min(2 * model_length, self.max_length_s),
                            step=0.01,
                            label="Output length (s), for Continue",
                        )
                        strength = gr.Slider(
                            0.05,
                            1.0,
                            value=0.5,
                            step=0.05,
                            label="Strength, for Variation",
                            info="the fraction of the clip's tokens generated anew",
                        )
                audio_negative = gr.Textbox(label="Negative prompt")
                a_head, a_iterations, a_head_steps, a_guidance, a_seed = settings()
                transform = gr.Button("Generate from audio", variant="primary", elem_id="transform")
                result = gr.Audio(
                    label="Output", type="filepath", interactive=False, buttons=["download"], elem_id="output-audio"
                )
                with gr.Row():
                    input_mel = gr.Image(
                        label="Input mel spectrogram",
                        type="filepath",
                        interactive=False,
                        format="png",
                        elem_id="input-mel",
                    )
                    output_mel = gr.Image(
                        label="Output mel spectrogram",
                        type="filepath",
                        interactive=False,
                        format="png",
                        elem_id="output-mel",
                    )

                def on_transform(
                    audio_path,
                    prompt,
                    mode,
                    start_s,
                    end_s,
                    length_s,
                    strength,
                    negative_prompt,
                    head,
                    iterations,
                    head_steps,
                    guidance,
                    seed,
                    progress=gr.Progress(track_tqdm=True),
                ):
                    return self.audio_to_audio(
                        audio_path,
                        prompt,
                        mode,
                        start_s,
                        end_s,
                        length_s,
                        strength,
                        negative_prompt,
                        head,
                        iterations,
                        head_steps,
                        guidance,
                        seed,
                        progress=progress,
                    )

                transform.click(
                    on_transform,
                    inputs=[
                        source,
                        audio_prompt,
                        mode,
                        start,
                        end,
                        output_length,
                        strength,
                        audio_negative,
                        a_head,
                        a_iterations,
                        a_head_steps,
                        a_guidance,
                        a_seed,
                    ],
                    outputs=[result, input_mel, output_mel],
                    api_name="audio_to_audio",
                )
        return page

    def launch(self, host: str = "127.0.0.1", port: int = 7860, concurrency: int = 1, queue_size: int = 64, **kwargs):
        """Serve the page: Gradio's queue, `concurrency` requests at once, at most `queue_size` waiting."""
        import gradio as gr

        page = self.blocks()
        page.queue(default_concurrency_limit=concurrency, max_size=queue_size)
        return page.launch(
            server_name=host,
            server_port=port,
            share=False,
            ssr_mode=False,  # no Node.js server: the page is served by Python alone
            show_error=True,  # gradio.Error messages in the page (never stack traces: other errors say only "Error")
            allowed_paths=[str(self.output_dir)],
            # System fonts: Gradio's default theme would have the browser fetch Google Fonts.
            theme=gr.themes.Default(
                font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
            ),
            **kwargs,
        )


def _no_progress(*args, **kwargs) -> None:
    """The progress callback when not called from the page."""


def load_demo_pipelines(model: str = DEFAULT_MODEL, head: str | None = None) -> dict:
    """The pipelines `impact-demo --model` serves: both heads of the embedded default model, else the model's own."""
    from diffusers_impact.cli import load_pipeline

    if model == DEFAULT_MODEL and head is None:
        return {name: load_pipeline(model, name) for name in ("diffusion", "energy")}
    pipe = load_pipeline(model, head)
    return {pipe.head_type: pipe}


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="impact-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="An ImpactPipeline folder or Hub id (cached), or 'default' (the embedded model, both heads).",
    )
    parser.add_argument("--head", choices=["diffusion", "energy"], help="Serve only this head of the default model.")
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind; 127.0.0.1 keeps it on this machine.")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--concurrency", type=int, default=1, help="Requests generated at once (the rest queue).")
    parser.add_argument("--queue-size", type=int, default=64, help="Requests that may wait; more are turned away.")
    parser.add_argument(
        "--max-length",
        type=float,
        default=DEFAULT_MAX_LENGTH_S,
        help="Longest audio, in seconds, generated or accepted as input.",
    )
    parser.add_argument("--output-dir", help="Where generated WAV and PNG files go (default: a temporary folder).")
    arguments = parser.parse_args(argv)
    for name in ("port", "concurrency", "queue_size"):
        if getattr(arguments, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(arguments, name)}.")
    if not arguments.max_length > 0:
        parser.error(f"--max-length must be above 0, got {arguments.max_length}.")
    return arguments


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        print('impact-demo: error: Gradio is not installed; run `pip install -e ".[demo]"`.', file=sys.stderr)
        return 2
    try:
        pipelines = load_demo_pipelines(arguments.model, arguments.head)
    except ValueError as error:
        print(f"impact-demo: error: {error}", file=sys.stderr)
        return 2
    name = "impact-animals (embedded default model)" if arguments.model == DEFAULT_MODEL else arguments.model
    demo = ImpactDemo(pipelines, arguments.output_dir, arguments.max_length, model_name=name)
    demo.launch(arguments.host, arguments.port, arguments.concurrency, arguments.queue_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
