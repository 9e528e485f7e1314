"""`impact-generate`: argument checks, outputs, and the embedded default model."""

import numpy as np
import pytest
import soundfile

from diffusers_impact import cli


def run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["a dog", "-o", "dog.mp3"], "--output must end in .wav"),
        (["a dog", "-o", "no/such/folder/dog.wav"], "does not exist"),
        (["a dog", "-o", "dog.wav", "--mel-png", "dog.jpg"], "--mel-png must end in .png"),
        (["a dog", "--model", "tiny-random", "-o", "dog.wav", "--steps", "0"], "`num_inference_steps` must be a positive"),
        (["a dog", "--model", "tiny-random", "-o", "dog.wav", "--guidance", "0.5"], "`guidance_scale` must be ≥ 1.0"),
        (["   ", "--model", "tiny-random", "-o", "dog.wav"], "empty string"),
    ],
)
def test_bad_arguments_exit_with_a_clear_error(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(argv, capsys)
    assert code == 2
    assert message in err
    assert not list(tmp_path.glob("*.wav"))


def test_output_path_that_is_a_folder_is_refused(tmp_path, capsys):
    (tmp_path / "taken.wav").mkdir()
    code, _, err = run(["a dog", "--model", "tiny-random", "-o", str(tmp_path / "taken.wav")], capsys)
    assert code == 2 and "Cannot write" in err


def test_writes_numbered_wavs_and_a_mel_png(tmp_path, capsys):
    argv = ["a dog", "--model", "tiny-random", "-o", str(tmp_path / "dog.wav"), "--num-waveforms", "2", "--steps", "2",
            "--diffusion-steps", "3", "--length", "0.5", "--mel-png", str(tmp_path / "dog.png")]
    code, out, _ = run(argv, capsys)
    assert code == 0
    first, second = (soundfile.read(tmp_path / f"dog_{index}.wav") for index in range(2))
    assert first[1] == second[1] == 1600  # the tiny pipeline's vocoder rate
    assert len(first[0]) == len(second[0]) == 800  # --length 0.5 s
    assert not np.array_equal(first[0], second[0])
    assert (tmp_path / "dog.png").stat().st_size > 0
    assert "wrote" in out


def test_default_model_generates_sound(tmp_path, capsys):
    """The README's first command, on the embedded model: 5.12 s of 16 kHz audio that is not silent."""
    path = tmp_path / "dog.wav"
    code, _, _ = run(["a dog barking", "-o", str(path), "--steps", "8", "--diffusion-steps", "25"], capsys)
    assert code == 0
    audio, sampling_rate = soundfile.read(path)
    assert sampling_rate == 16000 and len(audio) == 81920
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.01
