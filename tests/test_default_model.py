"""The embedded default model: it loads offline, its folder leaves the text encoder out, and text controls its output."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_example

from diffusers_impact import ImpactPipeline
from diffusers_impact.pretrained import DEFAULT_ENERGY_MODEL_PATH, DEFAULT_MODEL_PATH, load_default_pipeline


def test_folder_is_small_and_has_no_text_encoder():
    files = [path for path in DEFAULT_MODEL_PATH.rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) < 12 * 2**20  # float16 weights, about 11 MB
    model_index = json.loads((DEFAULT_MODEL_PATH / "model_index.json").read_text())
    assert model_index["text_encoder"] == [None, None] and model_index["tokenizer"] == [None, None]
    assert model_index["vocoder"] == ["diffusers_impact", "GriffinLimVocoder"]  # non-learned (see its card)
    assert model_index["pooled_text_embedding"] == "text_encoder_mean"  # MiniLM's sentence embedding, no CLAP
    assert not (DEFAULT_MODEL_PATH / "text_encoder").exists()
    card = (DEFAULT_MODEL_PATH / "README.md").read_text()  # its filled-in card, from the package template
    assert "ten recorded animal" in card and "## Evaluation" in card and "pipeline_tag: text-to-audio" in card


def test_loading_without_the_text_encoder_explains_how_to_add_it():
    pipe = ImpactPipeline.from_pretrained(DEFAULT_MODEL_PATH)
    with pytest.raises(ValueError, match="load_default_pipeline"):
        pipe("a dog barking", num_inference_steps=2)


def test_same_seed_same_audio_and_prompts_differ():
    pipe = load_default_pipeline()
    pipe.set_progress_bar_config(disable=True)

    def generate(prompt, seed):
        generator = torch.Generator().manual_seed(seed)
        return pipe(prompt, num_inference_steps=4, num_diffusion_steps=10, generator=generator).audios[0]

    dog = generate("a dog barking", 0)
    # Its folder says how to generate: a plain call uses 8 iterations and 25 head steps.
    assert pipe.call_defaults["num_inference_steps"] == 8 and pipe.call_defaults["num_diffusion_steps"] == 25
    plain = pipe("a dog barking", generator=torch.Generator().manual_seed(0)).audios[0]
    explicit = pipe(
        "a dog barking", num_inference_steps=8, num_diffusion_steps=25, generator=torch.Generator().manual_seed(0)
    )
    np.testing.assert_array_equal(plain, explicit.audios[0])
    assert dog.shape == (81920,) and np.isfinite(dog).all()
    np.testing.assert_array_equal(dog, generate("a dog barking", 0))
    assert np.abs(dog - generate("a cow mooing", 0)).max() > 0.01


@pytest.mark.slow
def test_text_controls_the_output(tmp_path):
    """examples/default_model/evaluate_demo.py at the model's quick recommended setting (8 iterations, 25 head steps, seeds 0–39):
    valid outputs (finite, not silent, all different) and the issue's text-control targets, ≥ 9/10 on training
    captions and ≥ 80 % (24/30) on paraphrases never seen in training (the committed model: 9/10 and 25/30)."""
    evaluate_demo = load_example("evaluate_demo")
    code = evaluate_demo.main(["--output_dir", str(tmp_path)])
    assert code == 0  # every output finite, not silent, and different from the others
    results = json.loads((tmp_path / "results.json").read_text())
    assert (results["settings"]["num_inference_steps"], results["settings"]["num_diffusion_steps"]) == (8, 25)
    for name, total in (("training captions", 10), ("unseen paraphrases", 30)):
        assert results[name]["total"] == total and len(results[name]["predictions"]) == total
        assert len(results[name]["missed"]) == total - results[name]["correct"]
    assert results["training captions"]["correct"] >= 9, results["training captions"]["missed"]
    assert results["unseen paraphrases"]["correct"] >= 24, results["unseen paraphrases"]["missed"]
    assert np.isfinite(results["frechet_distance"]) and results["frechet_distance"] > 0
    assert len(list(tmp_path.glob("*.wav"))) == 40
    assert (tmp_path / "mel_comparison.png").stat().st_size > 0


def test_acoustic_features_ignore_silence_and_position():
    """A call shifted in time, or padded with more silence, keeps its features; another sound does not."""
    features = load_example("evaluate_demo").acoustic_features
    time = np.arange(16000) / 16000
    call = np.sin(2 * np.pi * 440 * time) * np.hanning(16000)
    early, late = np.zeros((2, 48000))
    early[1000:17000], late[30000:46000] = call, call
    other = np.zeros(48000)
    other[1000:17000] = np.sin(2 * np.pi * 2000 * time) * np.hanning(16000)
    early_features, late_features, other_features = features(np.stack([early, late, other]))
    assert np.abs(early_features - late_features).max() < 0.05
    assert np.abs(early_features - other_features).max() > 1.0


def test_prompts_far_from_the_training_captions_are_flagged_and_the_paraphrases_are_not():
    """The threshold of the out-of-domain note: every unseen paraphrase (which the model gets right) passes."""
    from diffusers_impact.pretrained import known_sounds, unfamiliar_prompts

    assets = Path(__file__).resolve().parent.parent / "assets" / "animal_sounds"
    assert known_sounds() == json.loads((assets / "captions.json").read_text())  # the folder's copy is current
    paraphrases = [p for prompts in json.loads((assets / "paraphrases.json").read_text()).values() for p in prompts]
    foreign = ["rain on a tin roof", "a car engine revving", "a piano melody", "a man speaking", "applause", "thunder"]
    pipe = load_default_pipeline()
    assert unfamiliar_prompts(pipe, paraphrases + ["a dog barking", "a cat meowing"]) == []
    assert unfamiliar_prompts(pipe, foreign) == foreign


def test_spectral_contrast_rewards_harmonics_and_ignores_silence():
    """The fidelity measure: a harmonic stack scores above the same energy smeared into noise, and silence around a
    call (frames below 10 % of the peak RMS) does not change its score."""
    spectral_contrast = load_example("fidelity_report").spectral_contrast
    time = np.arange(16000) / 16000
    harmonics = sum(np.sin(2 * np.pi * 300 * k * time) / k for k in range(1, 12)) * np.hanning(16000)
    noise = np.random.default_rng(0).standard_normal(16000) * np.hanning(16000) * harmonics.std()
    padded = np.concatenate([np.zeros(8000), harmonics, np.zeros(24000)])
    assert spectral_contrast(harmonics) > 1.5 * spectral_contrast(noise)
    assert spectral_contrast(padded) == pytest.approx(spectral_contrast(harmonics), rel=0.05)


def test_fidelity_report_on_the_default_model(tmp_path):
    """examples/default_model/fidelity_report.py: one row per stage of the decoding chain, ratios to the real recordings,
    the round trip's log-mel L1, and the figure."""
    fidelity_report = load_example("fidelity_report")
    code = fidelity_report.main(["--seeds", "0", "--output_dir", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "fidelity.json").read_text())
    vocoder, round_trip, generated = report["rows"]
    for row in report["rows"]:
        assert len(row["ratio_per_sound"]) == 10
        assert row["mean_ratio"] == pytest.approx(np.mean(list(row["ratio_per_sound"].values())))
        assert row["worst_ratio"] == min(row["ratio_per_sound"].values())
    # Issue 19: the committed model's VAE keeps the recordings' detail (round trip 1.07 of real, the vocoder alone
    # 1.04; the VAE before it: 0.67), and so do its generated clips (1.09 over seeds 0 and 1). Its vocoder refines the
    # magnitudes (`refine_magnitudes=True`): pig 0.94, where plain Griffin-Lim stops at 0.81.
    assert vocoder["mean_ratio"] > 0.9 and vocoder["worst_ratio"] > 0.9
    assert round_trip["mean_ratio"] > 0.9 and round_trip["mean_ratio"] > vocoder["mean_ratio"] - 0.05
    assert generated["mean_ratio"] > 0.85
    assert 0 < report["round_trip_log_mel_l1"] < 2
    assert (tmp_path / "mel_fidelity.png").stat().st_size > 0
    # The table that train_default_model.py puts into the model card.
    table = (tmp_path / "fidelity.md").read_text()
    assert table == fidelity_report.markdown_table(report) + "\n"
    assert (
        f"| {round_trip['mean_ratio']:.2f} | {round_trip['worst_ratio']:.2f} ({round_trip['worst_sound']}) |" in table
    )


def test_continuing_the_real_recordings_keeps_their_sound_and_their_samples():
    """Audio input on the default model (issue 16): each recording's first second, continued by 4 s with its own
    caption, keeps its samples and is heard as the same animal (measured 8/10 at these seeds, 26/30 over three seed
    sets: README); a sound-agnostic model would score about 1/10."""
    evaluate_audio_input = load_example("evaluate_audio_input")
    from diffusers_impact.audio import load_audio, prepare_segment

    assets = Path(evaluate_audio_input.ASSETS)
    captions = json.loads((assets / "captions.json").read_text())
    sounds = sorted(captions)
    real = np.stack([prepare_segment(load_audio(assets / f"{sound}.mp3"), num_samples=81920) for sound in sounds])
    pipe = load_default_pipeline()
    pipe.set_progress_bar_config(disable=True)
    continuations = []
    for index, sound in enumerate(sounds):
        out = pipe(
            captions[sound][0],
            audio=real[index, :16000],
            audio_length_in_s=5.0,
            generator=torch.Generator().manual_seed(index),
        ).audios[0]
        np.testing.assert_array_equal(out[: 16000 - 800], real[index, : 16000 - 800])
        continuations.append(out[16000:])
    heard = evaluate_audio_input.classify(continuations, evaluate_audio_input.acoustic_features(real), sounds)
    assert sum(a == b for a, b in zip(heard, sounds)) >= 7, list(zip(sounds, heard))


# ------------------------------------------------------------------------- the embedded one-step (energy-head) model
def test_energy_model_folder_is_small_and_shares_the_teachers_decoding_chain():
    files = [path for path in DEFAULT_ENERGY_MODEL_PATH.rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) < 16 * 2**20  # float16 weights
    model_index = json.loads((DEFAULT_ENERGY_MODEL_PATH / "model_index.json").read_text())
    assert model_index["energy_head"] == ["diffusers_impact", "ImpactEnergyHead"]
    assert model_index["diff_head"] == [None, None] and model_index["head_scheduler"] == [None, None]
    assert model_index["text_encoder"] == [None, None] and model_index["recommended_call_settings"] == {
        "num_inference_steps": 8,
        "guidance_scale": 2.0,  # guidance on the hidden vectors needs less than the teacher's 5 (recipe)
    }
    for component in ("vae", "vocoder"):  # the teacher's weights byte for byte, and its settings
        teacher, student = (
            path / component / "diffusion_pytorch_model.safetensors"
            for path in (DEFAULT_MODEL_PATH, DEFAULT_ENERGY_MODEL_PATH)
        )
        assert teacher.read_bytes() == student.read_bytes(), component
        teacher_config, student_config = (
            {
                key: value
                for key, value in json.loads((path / component / "config.json").read_text()).items()
                if key != "_name_or_path"
            }
            for path in (DEFAULT_MODEL_PATH, DEFAULT_ENERGY_MODEL_PATH)
        )
        assert teacher_config == student_config, component
    card = (DEFAULT_ENERGY_MODEL_PATH / "README.md").read_text()
    assert "one-step energy-scoring head" in card and "## Evaluation" in card and "teacher" in card


def test_load_default_pipeline_selects_the_head():
    pipe = load_default_pipeline(head="energy")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.head_type == "energy" and pipe.call_defaults == {"num_inference_steps": 8, "guidance_scale": 2.0}
    dog = pipe("a dog barking", generator=torch.Generator().manual_seed(0)).audios[0]
    assert dog.shape == (81920,) and np.isfinite(dog).all()
    np.testing.assert_array_equal(dog, pipe("a dog barking", generator=torch.Generator().manual_seed(0)).audios[0])
    assert np.abs(dog - pipe("a cow mooing", generator=torch.Generator().manual_seed(0)).audios[0]).max() > 0.01
    with pytest.raises(ValueError, match="`head` must be one of \\['diffusion', 'energy'\\], got 'one-step'"):
        load_default_pipeline(head="one-step")
