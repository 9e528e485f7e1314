"""The web demo's generation functions (`diffusers_impact.demo.ImpactDemo`) on a tiny pipeline, without a server.

The page itself, in a real browser, and the server under concurrent load: tests/test_demo_browser.py.
"""

import os
import runpy
import threading
import time
from pathlib import Path

import gradio
import numpy as np
import pytest
import soundfile
import torch

from diffusers_impact.cli import below_full_scale
from diffusers_impact.demo import KEEP_OUTPUTS_S, MAX_CANDIDATES, ImpactDemo, main, parse_arguments
from diffusers_impact.testing_utils import tiny_impact_pipeline


# text_to_audio's arguments after the prompt: negative prompt, head, iterations, head steps, guidance, seed, length,
# candidates.
SETTINGS = {
    "negative_prompt": "",
    "head": "diffusion",
    "iterations": 3,
    "head_steps": 4,
    "guidance": 3.0,
    "seed": 7,
    "length_s": 0.64,
    "candidates": 2,
}


@pytest.fixture
def demo(tmp_path):
    pipe = tiny_impact_pipeline(audioldm_format=True)  # 16 kHz and AudioLDM's mel front-end: audio input works
    pipe.set_progress_bar_config(disable=True)
    return ImpactDemo({"diffusion": pipe}, output_dir=tmp_path / "outputs", max_length_s=3.0)


def read_wav(path):
    samples, sampling_rate = soundfile.read(path, dtype="float32")
    return samples, sampling_rate


def direct_call(demo, prompt, seeds, **kwargs):
    """The pipeline called directly, as the demo should call it, written as the demo writes WAVs (16-bit)."""
    pipe = demo.pipelines["diffusion"]
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    audios = pipe(prompt, generator=generators, num_waveforms_per_prompt=len(seeds), **kwargs).audios
    return [below_full_scale(audio)[0] for audio in audios]


def test_text_to_audio_gives_each_candidate_as_a_wav_and_a_mel_png_with_the_pipelines_samples(demo):
    wavs, mels, downloads = demo.text_to_audio("a dog barking", **SETTINGS)
    assert len(wavs) == len(mels) == 2 and downloads == wavs
    expected = direct_call(
        demo,
        "a dog barking",
        [7, 8],
        num_inference_steps=3,
        num_diffusion_steps=4,
        guidance_scale=3.0,
        audio_length_in_s=0.64,
    )
    for wav, mel, reference in zip(wavs, mels, expected):
        samples, sampling_rate = read_wav(wav)
        assert sampling_rate == 16000 and samples.shape == reference.shape
        np.testing.assert_allclose(samples, reference, atol=1.5 / 32768)  # 16-bit rounding
        with open(mel, "rb") as png:
            assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    # Seeds are seed, seed + 1, ...: the candidates differ.
    assert not np.allclose(read_wav(wavs[0])[0], read_wav(wavs[1])[0])


def test_concurrent_requests_get_the_same_audio_as_one_at_a_time(demo):
    """Each request decodes on its own copy of the schedulers: threads never mix each other's timesteps."""
    prompts = ["a dog barking", "a cat meowing", "a cow mooing", "a duck quacking"]
    settings = [dict(SETTINGS, candidates=1, seed=seed, iterations=2 + seed) for seed in range(len(prompts))]
    sequential = [read_wav(demo.text_to_audio(p, **s)[0][0])[0] for p, s in zip(prompts, settings)]
    results, errors = [None] * len(prompts), []

    def request(index):
        try:
            results[index] = read_wav(demo.text_to_audio(prompts[index], **settings[index])[0][0])[0]
        except Exception as error:  # reported below; a thread's exception would otherwise be lost
            errors.append(error)

    threads = [threading.Thread(target=request, args=(index,)) for index in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors
    for alone, together in zip(sequential, results):
        np.testing.assert_allclose(together, alone, atol=1.5 / 32768)


def test_a_request_copy_shares_the_weights_but_not_the_schedulers(demo):
    pipe = demo.pipelines["diffusion"]
    copy = demo._pipeline_for_request("diffusion")
    assert copy.transformer is pipe.transformer and copy.vae is pipe.vae
    assert copy.scheduler is not pipe.scheduler and copy.head_scheduler is not pipe.head_scheduler
    assert copy.config == pipe.config and copy.call_defaults == pipe.call_defaults


@pytest.mark.parametrize(
    "prompt, change, message",
    [
        ("   ", {}, "Type a prompt"),
        ("a dog", {"length_s": 3.5}, "at most 3 s"),
        ("a dog", {"length_s": 0}, "Length must be above 0"),
        ("a dog", {"candidates": MAX_CANDIDATES + 1}, "Candidates must be"),
        ("a dog", {"iterations": 1.5}, "Decoding iterations must be a whole number"),
        ("a dog", {"head_steps": 0}, "Head steps must be"),
        ("a dog", {"guidance": 0.5}, "Guidance must be between 1 and 50"),
        ("a dog", {"seed": -1}, "Seed must be"),
        ("a dog", {"head": "energy"}, "Head 'energy' is not available"),
    ],
)
def test_bad_text_input_is_a_message_for_the_page(demo, prompt, change, message):
    with pytest.raises(gradio.Error, match=message):
        demo.text_to_audio(prompt, **dict(SETTINGS, **change))


def write_clip(path, seconds=1.2, sampling_rate=16000, channels=1):
    time = np.arange(int(seconds * sampling_rate)) / sampling_rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * time)
    soundfile.write(path, np.stack([tone] * channels, axis=1), sampling_rate)
    return str(path)


def write_text(path, text):
    path.write_text(text)
    return str(path)


AUDIO_SETTINGS = {
    "start_s": 0.32,
    "end_s": 0.64,
    "length_s": 2.0,
    "strength": 0.5,
    "negative_prompt": "",
    "head": "diffusion",
    "iterations": 3,
    "head_steps": 4,
    "guidance": 3.0,
    "seed": 3,
}


def test_inpainting_keeps_the_clip_outside_the_region_and_shows_both_mel_spectrograms(demo, tmp_path):
    clip = write_clip(tmp_path / "tone.wav", channels=2)  # stereo is averaged, as the page says
    output, input_mel, output_mel = demo.audio_to_audio(clip, "a dog barking", "Inpaint a region", **AUDIO_SETTINGS)
    samples, sampling_rate = read_wav(output)
    given = soundfile.read(clip, dtype="float32")[0].mean(axis=1)
    assert sampling_rate == 16000 and samples.shape == given.shape
    outside = np.ones(len(given), dtype=bool)
    outside[int(0.32 * 16000) - 800 : int(0.64 * 16000) + 800] = False  # the region and its 50 ms crossfades
    np.testing.assert_allclose(samples[outside], given[outside], atol=1.5 / 32768)
    assert not np.allclose(samples[~outside], given[~outside], atol=1e-3)
    assert input_mel != output_mel and all(open(path, "rb").read(4) == b"\x89PNG" for path in (input_mel, output_mel))


def test_continuation_and_variation_from_another_sampling_rate(demo, tmp_path):
    clip = write_clip(tmp_path / "tone.flac", seconds=0.8, sampling_rate=22050)
    output, _, _ = demo.audio_to_audio(clip, "a dog barking", "Continue", **AUDIO_SETTINGS)
    assert read_wav(output)[0].shape == (32000,)  # 2.0 s at 16 kHz
    output, _, _ = demo.audio_to_audio(clip, "a dog barking", "Variation", **AUDIO_SETTINGS)
    assert read_wav(output)[0].shape == (12800,)  # the clip's 0.8 s


@pytest.mark.parametrize(
    "make, mode, change, message",
    [
        (lambda path: write_text(path, "not audio"), "Variation", {}, "cannot be read as audio"),
        (lambda path: None, "Variation", {}, "Upload or record a clip first"),
        (lambda path: write_clip(path, seconds=3.5), "Variation", {}, "up to 3 s"),
        (lambda path: write_clip(path), "Inpaint a region", {"start_s": 0.9, "end_s": 0.5}, "0 ≤ start < end"),
        (lambda path: write_clip(path), "Inpaint a region", {"end_s": 1.5}, "0 ≤ start < end ≤ 1.20 s"),
        (lambda path: write_clip(path), "Continue", {"length_s": 1.0}, "output length must be above that"),
        (lambda path: write_clip(path), "Variation", {"strength": 0}, "Strength must be in"),
        (lambda path: write_clip(path), "Shuffle", {}, "Mode must be one of"),
    ],
)
def test_bad_audio_input_is_a_message_for_the_page(demo, tmp_path, make, mode, change, message):
    clip = make(tmp_path / "clip.wav")
    with pytest.raises(gradio.Error, match=message):
        demo.audio_to_audio(clip, "a dog barking", mode, **dict(AUDIO_SETTINGS, **change))


def test_non_finite_samples_are_refused(demo, tmp_path):
    samples = np.zeros(16000, dtype=np.float32)
    samples[100] = np.nan
    soundfile.write(tmp_path / "nan.wav", samples, 16000, subtype="FLOAT")
    with pytest.raises(gradio.Error, match="NaN or infinite"):
        demo.audio_to_audio(str(tmp_path / "nan.wav"), "a dog", "Variation", **AUDIO_SETTINGS)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--port", "0"], "--port must be ≥ 1"),
        (["--concurrency", "0"], "--concurrency must be ≥ 1"),
        (["--max-length", "-1"], "--max-length must be above 0"),
    ],
)
def test_impact_demo_refuses_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_arguments(argv)
    assert message in capsys.readouterr().err


def test_impact_demo_binds_to_localhost_by_default():
    arguments = parse_arguments([])
    assert (arguments.host, arguments.port, arguments.model, arguments.concurrency) == (
        "127.0.0.1",
        7860,
        "default",
        1,
    )


def test_impact_demo_names_a_model_it_cannot_load(capsys):
    assert main(["--model", "/no/such/folder"]) == 2
    assert "--model '/no/such/folder'" in capsys.readouterr().err


def test_the_energy_head_takes_no_head_steps(tmp_path):
    pipes = {head: tiny_impact_pipeline(head=head, audioldm_format=True) for head in ("diffusion", "energy")}
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    demo = ImpactDemo(pipes, output_dir=tmp_path)
    (wav,), _, _ = demo.text_to_audio("a dog barking", **dict(SETTINGS, head="energy", candidates=1))
    expected = pipes["energy"](
        "a dog barking",
        num_inference_steps=3,
        guidance_scale=3.0,
        audio_length_in_s=0.64,
        generator=torch.Generator().manual_seed(7),
    ).audios[0]
    np.testing.assert_allclose(read_wav(wav)[0], below_full_scale(expected)[0], atol=1.5 / 32768)


def test_app_py_serves_both_heads_of_the_default_model():
    """The Space entry point builds the page without launching it (launching is `python app.py`)."""
    namespace = runpy.run_path(str(Path(__file__).resolve().parent.parent / "app.py"), run_name="app")
    demo = namespace["demo"]
    assert isinstance(demo, ImpactDemo) and list(demo.pipelines) == ["diffusion", "energy"]
    assert type(demo.blocks()).__name__ == "Blocks"


def test_the_demo_deletes_only_its_own_outputs_once_they_are_an_hour_old(demo):
    folder = demo.output_dir
    old = time.time() - 2 * KEEP_OUTPUTS_S
    users_file, old_output, recent_output = (
        folder / "notes.wav",
        folder / "impact-demo-1-audio.wav",
        folder / "impact-demo-2-audio.wav",
    )
    for path in (users_file, old_output, recent_output):
        path.write_bytes(b"RIFF")
    for path in (users_file, old_output):
        os.utime(path, (old, old))
    demo.text_to_audio("a dog barking", **dict(SETTINGS, candidates=1))
    assert users_file.exists() and recent_output.exists() and not old_output.exists()


def test_both_tabs_report_the_pipelines_progress_to_the_page(demo, tmp_path):
    """Served for real, each tab's generation sends the pipeline's progress bar (its decoding iterations) to the page
    as it goes, which Gradio draws as a progress bar over the outputs."""
    import socket

    from gradio_client import Client, handle_file

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    page = demo.blocks()
    page.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    clip = tmp_path / "clip.wav"
    write_clip(clip)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        slow = ("diffusion", 64, 250, 3.0, 0)  # head, iterations, head steps, guidance, seed: a few seconds each
        requests = {
            "/text_to_audio": ("a dog barking", "", *slow, 0.64, 1),
            "/audio_to_audio": (handle_file(str(clip)), "a dog barking", "Variation", 0, 0, 3.0, 0.5, "", *slow),
        }
        for api_name, values in requests.items():
            job = client.submit(*values, api_name=api_name)
            reported = []
            while not job.done():
                progress = job.status().progress_data
                if progress and progress[0].length:
                    reported.append((progress[0].index, progress[0].length))
                time.sleep(0.01)
            job.result()  # no error
            assert reported, f"{api_name}: no progress reached the page"
            assert all(0 <= index <= length for index, length in reported) and reported[-1][0] >= reported[0][0]
    finally:
        page.close()
