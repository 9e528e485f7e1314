"""`impact-generate`: argument checks, outputs, levels, and the embedded default model."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from diffusers_impact import cli


def run(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exit:  # argparse's own refusals
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["a dog", "-o", "dog.mp3"], "--output must end in .wav"),
        (["a dog", "-o", "no/such/folder/dog.wav"], "does not exist"),
        (["a dog", "-o", "dog.wav", "--mel-png", "dog.jpg"], "--mel-png must end in .png"),
        (["a dog", "-o", "dog.wav", "--steps", "0"], "argument --steps: invalid positive integer value: '0'"),
        (["a dog", "-o", "dog.wav", "--steps", "2.5"], "argument --steps"),
        (["a dog", "-o", "dog.wav", "--diffusion-steps", "-3"], "argument --diffusion-steps"),
        (["a dog", "-o", "dog.wav", "--num-waveforms", "0"], "argument --num-waveforms"),
        (["a dog", "-o", "dog.wav", "--guidance", "0.5"], "argument --guidance"),
        (["a dog", "-o", "dog.wav", "--guidance", "nan"], "argument --guidance"),
        (["a dog", "-o", "dog.wav", "--length", "inf"], "argument --length"),
        (["a dog", "-o", "dog.wav", "--inpaint", "1-2"], "--inpaint act on an input recording: pass --audio FILE"),
        (["a dog", "-o", "dog.wav", "--strength", "0.5", "--bands", "3"], "--strength, --bands act on an input"),
        (["a dog", "-o", "dog.wav", "--audio", "in.wav", "--inpaint", "2-1"], "argument --inpaint: invalid region"),
        (["a dog", "-o", "dog.wav", "--audio", "in.wav", "--strength", "0"], "argument --strength: invalid strength"),
        (["a dog", "-o", "dog.wav", "--audio", "missing.wav", "--strength", "0.5"], "--audio 'missing.wav' cannot be"),
        (["--prompts-file", "p.txt", "--audio", "in.wav"], "--audio goes with a single PROMPT"),
        (["   ", "--model", "tiny-random", "-o", "dog.wav"], "PROMPT contains an empty string"),
        (["a dog", "--model", "/does/not/exist", "-o", "dog.wav"], "--model '/does/not/exist': no such folder"),
        (["a dog", "-o", "dog.wav", "--head", "one-step"], "argument --head: invalid choice: 'one-step'"),
        (
            ["a dog", "--model", "tiny-random", "--head", "energy", "-o", "dog.wav", "--diffusion-steps", "5"],
            "--diffusion-steps applies to a diffusion head, but this pipeline has a one-step energy head",
        ),
    ],
)
def test_bad_arguments_exit_with_a_one_line_error_naming_the_flag(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(argv, capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len([line for line in err.splitlines() if "error" in line]) == 1
    assert not list(tmp_path.glob("*.wav"))


def test_help_and_argument_errors_do_not_import_torch_or_the_model():
    """They answer at once: only the standard library is imported before the arguments are checked."""
    script = (
        "import sys\n"
        "from diffusers_impact import cli\n"
        "for argv in (['--help'], ['x', '--steps', '0']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'numpy') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "heavy: []" in result.stdout
    assert "out_0.wav" in result.stdout  # --help says how several waveforms are named


def test_mel_png_works_after_the_readmes_first_command():
    """That command installs the package without extras: matplotlib (for --mel-png) must be a runtime requirement."""
    setup = ast.parse((Path(__file__).resolve().parents[1] / "setup.py").read_text())
    (requirements,) = [
        node.value
        for node in ast.walk(setup)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "RUNTIME_REQUIREMENTS"
    ]
    assert "matplotlib" in [re.split(r"[<>=!\[ ]", ast.literal_eval(element))[0] for element in requirements.elts]


def test_output_path_that_is_a_folder_is_refused(tmp_path, capsys):
    (tmp_path / "taken.wav").mkdir()
    code, _, err = run(["a dog", "--model", "tiny-random", "-o", str(tmp_path / "taken.wav")], capsys)
    assert code == 2 and "Cannot write" in err


def test_writes_numbered_wavs_and_a_mel_png(tmp_path, capsys):
    argv = [
        "a dog",
        "--model",
        "tiny-random",
        "-o",
        str(tmp_path / "dog.wav"),
        "--num-waveforms",
        "2",
        "--steps",
        "2",
        "--diffusion-steps",
        "3",
        "--length",
        "0.5",
        "--mel-png",
        str(tmp_path / "dog.png"),
    ]
    code, out, _ = run(argv, capsys)
    assert code == 0
    first, second = (soundfile.read(tmp_path / f"dog_{index}.wav") for index in range(2))
    assert first[1] == second[1] == 1600  # the tiny pipeline's vocoder rate
    assert len(first[0]) == len(second[0]) == 800  # --length 0.5 s
    assert not np.array_equal(first[0], second[0])
    assert (tmp_path / "dog.png").stat().st_size > 0
    assert "wrote" in out


def test_loud_clips_are_scaled_below_full_scale_not_clipped():
    waveform = np.array([0.0, 5.9, -2.0, 0.3], dtype=np.float32)
    scaled, scale = cli.below_full_scale(waveform)
    np.testing.assert_allclose(scaled, waveform * (cli.PEAK_CEILING / 5.9), rtol=1e-6)
    assert np.abs(scaled).max() == pytest.approx(cli.PEAK_CEILING)
    quiet = np.array([0.0, 0.99, -0.5], dtype=np.float32)
    assert cli.below_full_scale(quiet)[0] is quiet and cli.below_full_scale(quiet)[1] is None


def test_default_model_generates_sound(tmp_path, capsys):
    """The README's first command, on the embedded model: 5.12 s of 16 kHz audio that is not silent."""
    path = tmp_path / "dog.wav"
    code, _, err = run(["a dog barking", "-o", str(path), "--steps", "8", "--diffusion-steps", "25"], capsys)
    assert code == 0 and "note:" not in err
    audio, sampling_rate = soundfile.read(path)
    assert sampling_rate == 16000 and len(audio) == 81920
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.01


@pytest.mark.parametrize(
    "prompt", ["rain on a tin roof", "a rooster crowing at dawn", "a sheep bleating", "a cat meowing"]
)
def test_default_model_never_writes_clipped_audio(prompt, tmp_path, capsys):
    """Over many seeds (a batch of 8 per prompt): no 16-bit sample at full scale, and the loud ones say so."""
    code, _, err = run([prompt, "-o", str(tmp_path / "clip.wav"), "--num-waveforms", "8", "--seed", "3"], capsys)
    assert code == 0
    for index in range(8):
        samples, _ = soundfile.read(tmp_path / f"clip_{index}.wav", dtype="int16")
        assert np.abs(samples.astype(np.int32)).max() < 32767, (prompt, index)
    if prompt == "rain on a tin roof":  # out of domain: loud noise (17 % of its samples clipped before)
        assert "scaled by" in err and "-1 dBFS" in err
        assert "note: 'rain on a tin roof' is far from everything the default model was trained on" in err
        assert "cat, cow, dog, duck, frog, horse, owl, pig, rooster, sheep" in err


# ------------------------------------------------------------------------------------------- --prompts-file batches
TINY = ["--model", "tiny-random", "--steps", "2", "--diffusion-steps", "3"]


def test_a_prompts_file_is_generated_in_batches_named_by_line_and_prompt_and_resumed(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog barking\n\nRain, on a tin roof!\na cat meowing\n", encoding="utf-8")
    out = tmp_path / "clips"
    code, _, err = run(["--prompts-file", str(prompts), "-o", str(out), "--batch-size", "2", *TINY], capsys)
    assert code == 0 and "3 prompts" in err and "0 done already, 3 to generate" in err
    names = ["0001_a-dog-barking.wav", "0003_rain-on-a-tin-roof.wav", "0004_a-cat-meowing.wav"]
    assert sorted(path.name for path in out.iterdir()) == names  # no partial files left
    first = {name: soundfile.read(out / name, dtype="int16")[0] for name in names}
    assert not np.array_equal(first[names[0]], first[names[2]])

    # Resume: only the missing clip is generated, alone in its batch now, and it is the same clip.
    (out / names[1]).unlink()
    kept = (out / names[0]).stat().st_mtime_ns
    code, _, err = run(["--prompts-file", str(prompts), "-o", str(out), "--batch-size", "2", *TINY], capsys)
    assert code == 0 and "2 done already, 1 to generate" in err
    assert (out / names[0]).stat().st_mtime_ns == kept
    again = soundfile.read(out / names[1], dtype="int16")[0]
    assert np.abs(again.astype(np.int32) - first[names[1]]).max() <= 1  # other batch shape: float rounding only

    code, _, err = run(["--prompts-file", str(prompts), "-o", str(out), *TINY], capsys)
    assert code == 0 and "3 done already, 0 to generate" in err


def test_several_waveforms_per_line_get_numbered_files(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog\n", encoding="utf-8")
    code, _, _ = run(
        ["--prompts-file", str(prompts), "-o", str(tmp_path / "out"), "--num-waveforms", "2", *TINY], capsys
    )
    assert code == 0
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["0001_a-dog_0.wav", "0001_a-dog_1.wav"]


@pytest.mark.parametrize(
    "content, extra, message",
    [
        (b"a dog\n\xff\xfe rain\n", [], "is not UTF-8 text (line 2)"),
        (b"\n  \n", [], "has no prompts"),
        (b"a dog\n", ["a cat"], "give a PROMPT or --prompts-file"),
        (b"a dog\n", ["--mel-png", "x.png"], "--mel-png goes with a single PROMPT"),
        (b"a dog\n", ["--batch-size", "0"], "argument --batch-size"),
    ],
)
def test_bad_prompts_files_are_refused(content, extra, message, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(content)
    code, _, err = run(["--prompts-file", str(prompts), "-o", str(tmp_path / "out"), *TINY, *extra], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "out").exists()


def test_annealed_diffusion_steps_from_the_command_line(tmp_path, capsys, monkeypatch):
    from diffusers_impact import ImpactPipeline

    seen = []
    call = ImpactPipeline.__call__
    monkeypatch.setattr(
        ImpactPipeline,
        "__call__",
        lambda self, *a, **k: (
            seen.append((k["num_diffusion_steps"], k["diffusion_step_annealing"])) or call(self, *a, **k)
        ),
    )
    argv = ["a dog", "-o", str(tmp_path / "dog.wav"), "--model", "tiny-random", "--steps", "2"]
    assert run([*argv, "--diffusion-steps", "7:2"], capsys)[0] == 0
    assert run([*argv, "--diffusion-steps", "4"], capsys)[0] == 0
    assert run([*argv, "--diffusion-steps", "8:2", "--annealing", "geometric"], capsys)[0] == 0
    assert seen == [((7, 2), "linear"), (4, "linear"), ((8, 2), "geometric")]
    code, _, err = run([*argv, "--diffusion-steps", "8:2", "--annealing", "cosine"], capsys)
    assert code == 2 and "--annealing must be one of ('linear', 'geometric'), got 'cosine'" in err
    for bad in ("7:5:2", "7:0", "a:b", "7:"):
        code, _, err = run([*argv, "--diffusion-steps", bad], capsys)
        assert code == 2 and f"argument --diffusion-steps: invalid step count (N, or FIRST:LAST) value: '{bad}'" in err


def test_head_selects_the_kind_of_head_and_a_model_with_another_head_is_refused(tmp_path, capsys):
    from diffusers_impact.testing_utils import tiny_impact_pipeline

    code, out, err = run(
        ["a dog", "--model", "tiny-random", "--head", "energy", "--steps", "2", "-o", str(tmp_path / "e.wav")], capsys
    )
    assert code == 0 and "wrote" in out, err
    tiny_impact_pipeline().save_pretrained(tmp_path / "diffusion-model")
    code, _, err = run(
        ["a dog", "--model", str(tmp_path / "diffusion-model"), "--head", "energy", "-o", str(tmp_path / "d.wav")],
        capsys,
    )
    assert code == 2 and "--head energy, but --model" in err and "has a diffusion head" in err
    assert not (tmp_path / "d.wav").exists()


@pytest.fixture
def quiet_recording(tmp_path):
    """The dog recording as 16-bit PCM at a low level (peak 0.05): written back exactly, and generated audio, brought
    to the input's level, stays below full scale (the CLI would otherwise scale the whole file)."""
    from diffusers_impact.audio import load_audio

    waveform = load_audio(Path(cli.__file__).parents[2] / "assets" / "animal_sounds" / "dog.mp3")[:48000]
    path = tmp_path / "dog.wav"
    soundfile.write(path, waveform / np.abs(waveform).max() * 0.05, 16000, subtype="PCM_16")
    return path


def test_inpainting_from_the_command_line_keeps_the_recording_outside_the_region(quiet_recording, tmp_path, capsys):
    out = tmp_path / "filled.wav"
    code, _, err = run(["a dog barking", "--audio", str(quiet_recording), "--inpaint", "1-2", "-o", str(out)], capsys)
    assert code == 0, err
    original, _ = soundfile.read(quiet_recording, dtype="int16")
    filled, rate = soundfile.read(out, dtype="int16")
    assert rate == 16000 and filled.shape == original.shape
    np.testing.assert_array_equal(filled[:16000], original[:16000])
    np.testing.assert_array_equal(filled[32000:], original[32000:])
    assert not np.array_equal(filled[17000:31000], original[17000:31000])


def test_continuing_a_recording_beyond_the_models_length(quiet_recording, tmp_path, capsys):
    out = tmp_path / "long.wav"
    code, _, err = run(["a dog barking", "--audio", str(quiet_recording), "--length", "12", "-o", str(out)], capsys)
    assert code == 0, err
    long, _ = soundfile.read(out, dtype="int16")
    original, _ = soundfile.read(quiet_recording, dtype="int16")
    assert long.shape == (12 * 16000,)
    np.testing.assert_array_equal(long[: 48000 - 800], original[: 48000 - 800])
    assert np.abs(long[60000:].astype(float)).max() > 0


def test_a_stereo_recording_needs_downmix(quiet_recording, tmp_path, capsys):
    mono, rate = soundfile.read(quiet_recording, dtype="float32")
    stereo = tmp_path / "stereo.wav"
    soundfile.write(stereo, np.stack([mono, mono], axis=1), rate)
    argv = ["a dog barking", "--audio", str(stereo), "--strength", "0.5", "-o", str(tmp_path / "out.wav")]
    code, _, err = run(argv, capsys)
    assert code == 2 and "has 2 channels" in err and "--downmix" in err
    code, _, err = run([*argv, "--downmix"], capsys)
    assert code == 0, err


def test_a_region_outside_the_recording_is_refused_with_the_flags_name(quiet_recording, tmp_path, capsys):
    argv = ["a cow", "--audio", str(quiet_recording), "--inpaint", "2-5", "-o", str(tmp_path / "out.wav")]
    code, _, err = run(argv, capsys)
    assert code == 2 and "not inside the audio (0–3.00 s)" in err


def test_a_lora_adapter_from_the_command_line(tmp_path, capsys):
    """--lora changes the tiny model's output, --lora-scale 0 gives the base model's, and an adapter of another base is
    refused naming the flag."""
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from diffusers_impact import ImpactPipeline
    from diffusers_impact.loaders.lora_pipeline_impact import DEFAULT_LORA_TARGET_MODULES, base_model_fingerprint
    from diffusers_impact.testing_utils import tiny_impact_pipeline

    for seed, folder in ((0, tmp_path / "adapter"), (1, tmp_path / "other-base")):
        pipe = tiny_impact_pipeline(seed=seed)
        torch.manual_seed(0)
        config = LoraConfig(r=4, lora_alpha=4, target_modules=DEFAULT_LORA_TARGET_MODULES, init_lora_weights=False)
        pipe.transformer.add_adapter(config)
        with torch.no_grad():
            for name, parameter in pipe.transformer.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(std=0.5)
        ImpactPipeline.save_lora_weights(
            folder,
            transformer_lora_layers=get_peft_model_state_dict(pipe.transformer),
            transformer_lora_adapter_metadata=config.to_dict(),
            base_model_fingerprint=base_model_fingerprint(pipe.transformer),
        )
    common = ["a dog barking", "--model", "tiny-random", "--steps", "2", "--diffusion-steps", "3"]
    outputs = {}
    for name, extra in {
        "base": [],
        "adapted": ["--lora", str(tmp_path / "adapter")],
        "scale 0": ["--lora", str(tmp_path / "adapter"), "--lora-scale", "0"],
    }.items():
        code, _, err = run([*common, *extra, "-o", str(tmp_path / "out.wav")], capsys)
        assert code == 0, err
        outputs[name] = soundfile.read(tmp_path / "out.wav", dtype="int16")[0]
    assert not np.array_equal(outputs["adapted"], outputs["base"])
    np.testing.assert_array_equal(outputs["scale 0"], outputs["base"])
    code, _, err = run([*common, "--lora", str(tmp_path / "other-base"), "-o", str(tmp_path / "x.wav")], capsys)
    assert code == 2 and "--lora" in err and "trained on another base model" in err
    code, _, err = run([*common, "--lora-scale", "0.5", "-o", str(tmp_path / "x.wav")], capsys)
    assert code == 2 and "pass --lora FOLDER_OR_HUB_ID too" in err
