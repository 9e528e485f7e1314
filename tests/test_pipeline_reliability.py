"""The pipeline never returns a silently wrong result: NumPy numbers, callbacks, non-finite outputs, concurrent calls."""

import json
import shutil
import threading

import numpy as np
import pytest
import torch
from test_pipeline import assert_same_model_output
from test_pipeline import inputs as audio_inputs

from diffusers_impact import ImpactPipeline
from diffusers_impact.testing_utils import tiny_impact_pipeline


def inputs(seed=0, **overrides):
    """test_pipeline's call arguments, returning latents unless asked otherwise (the quickest output)."""
    return audio_inputs(seed, **{"output_type": "latent", **overrides})


def test_numpy_numbers_are_accepted_as_the_numbers_they_are(pipe):
    reference = pipe(**inputs(audio_length_in_s=0.5, output_type="np")).audios
    numpy_numbers = pipe(
        **inputs(
            num_inference_steps=np.int64(3),
            num_diffusion_steps=np.int32(5),
            num_waveforms_per_prompt=np.int64(1),
            guidance_scale=np.float32(3.0),
            temperature=np.float64(1.0),
            audio_length_in_s=np.float32(0.5),
            output_type="np",
        )
    ).audios
    np.testing.assert_array_equal(numpy_numbers, reference)


@pytest.mark.parametrize(
    "returned, message",
    [
        (None, "must return a dict"),
        ([1], "must return a dict"),
        ({"latents": torch.full((1, 8, 16, 4), float("nan"))}, "returned by `callback_on_step_end`"),
        ({"latents": np.zeros((1, 8, 16, 4), dtype=np.float32)}, "returned by `callback_on_step_end`"),
        ({"latents": torch.zeros(1, 8, 16, 5)}, "returned by `callback_on_step_end`"),
    ],
)
def test_a_callback_returning_something_unusable_gets_a_clear_error(pipe, returned, message):
    with pytest.raises((TypeError, ValueError), match=message):
        pipe(**inputs(callback_on_step_end=lambda pipeline, step, timestep, kwargs: returned))


def test_a_callback_setting_a_non_finite_guidance_scale_is_refused(pipe):
    def break_guidance(pipeline, step, timestep, callback_kwargs):
        pipeline._guidance_scale = float("nan")
        return callback_kwargs

    with pytest.raises(ValueError, match="guidance scale to nan"):
        pipe(**inputs(callback_on_step_end=break_guidance))


@pytest.mark.parametrize("stage", ["vae", "vocoder"])
def test_non_finite_audio_is_never_returned(pipe, stage):
    """A component that overflows (e.g. in float16) makes the call fail, naming the stage, instead of returning NaN."""
    module = pipe.vae.decoder if stage == "vae" else pipe.vocoder
    with torch.no_grad():
        next(p for p in module.parameters() if p.dim() > 1).fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="mel spectrogram" if stage == "vae" else "waveform"):
        pipe(**inputs(output_type="np"))


def test_concurrent_calls_equal_their_sequential_counterparts_bit_for_bit(pipe):
    """One pipeline object in several threads, each with its own guidance scale, step counts and callback."""
    settings = [
        {"guidance_scale": 1.0, "num_inference_steps": 2, "num_diffusion_steps": 3},
        {"guidance_scale": 4.0, "num_inference_steps": 4, "num_diffusion_steps": 7},
        {"guidance_scale": 2.0, "num_inference_steps": 3, "num_diffusion_steps": 5, "guidance_schedule": "linear"},
        {"guidance_scale": 6.0, "num_inference_steps": 5, "num_diffusion_steps": 2, "prompt": "rain"},
    ]

    def run(index, setting):
        seen = []

        def record(pipeline, step, timestep, callback_kwargs):  # per-call state, read from the calling thread
            seen.append((pipeline.guidance_scale, pipeline.num_timesteps))
            return {}

        audio = pipe(**inputs(seed=index, callback_on_step_end=record, **setting)).audios
        return audio, seen

    sequential = [run(index, setting) for index, setting in enumerate(settings)]
    results = [None] * len(settings)
    start = threading.Barrier(len(settings))

    def worker(index):
        start.wait()
        for _ in range(3):  # several rounds, so that the calls interleave
            results[index] = run(index, settings[index])

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(len(settings))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for (expected_audio, expected_seen), (audio, seen), setting in zip(sequential, results, settings):
        assert torch.equal(audio, expected_audio), setting
        assert (
            seen
            == expected_seen
            == [(setting["guidance_scale"], setting["num_inference_steps"])] * setting["num_inference_steps"]
        )


# ------------------------------------------------------------------------------------------------ loading messages
@pytest.fixture
def saved_folder(pipe, tmp_path):
    folder = tmp_path / "pipeline"
    pipe.save_pretrained(folder)
    return folder


def test_a_missing_component_folder_is_named(saved_folder):
    shutil.rmtree(saved_folder / "diff_head")
    with pytest.raises(FileNotFoundError, match=f"{saved_folder / 'diff_head'} is missing.*ImpactDiffHead"):
        ImpactPipeline.from_pretrained(saved_folder)
    (saved_folder / "vae" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=f"{saved_folder / 'vae' / 'config.json'} is missing"):
        ImpactPipeline.from_pretrained(saved_folder, diff_head=tiny_impact_pipeline().diff_head)


@pytest.mark.parametrize(
    "component, key, value, expected",
    [
        ("transformer", "num_encoder_layers", "2", "int"),
        ("transformer", "hidden_size", 32.5, "int"),
        ("diff_head", "learn_sigma", "yes", "bool"),
        ("head_scheduler", "clip_sample", 1, "bool"),
        ("vae", "scaling_factor", "0.5", "float"),
    ],
)
def test_a_config_value_of_the_wrong_type_names_the_file_and_key(saved_folder, component, key, value, expected):
    config_path = next((saved_folder / component).glob("*config.json"))
    config = json.loads(config_path.read_text())
    assert key in config
    config[key] = value
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=f"{config_path}: `{key}` must be {expected}"):
        ImpactPipeline.from_pretrained(saved_folder)


def test_a_valid_folder_and_the_default_model_load(saved_folder):
    from diffusers_impact.pretrained import DEFAULT_MODEL_PATH

    assert isinstance(ImpactPipeline.from_pretrained(saved_folder), ImpactPipeline)
    assert isinstance(ImpactPipeline.from_pretrained(DEFAULT_MODEL_PATH), ImpactPipeline)


# ------------------------------------------------------------------------------------------- text-only pipelines
TEXT_ONLY = dict.fromkeys(("transformer", "diff_head", "scheduler", "head_scheduler", "vae", "vocoder"))


def test_a_pipeline_of_text_components_alone_encodes_prompts_as_the_full_one_does(pipe, tmp_path):
    components = {**pipe.components, **TEXT_ONLY}
    text_only = ImpactPipeline(**components)
    full = pipe.encode_prompt(["a dog barking", "rain"], torch.device("cpu"), negative_prompt="noise")
    alone = text_only.encode_prompt(["a dog barking", "rain"], torch.device("cpu"), negative_prompt="noise")
    for expected, got in zip(full, alone):
        assert (expected is None) == (got is None)
        if expected is not None:
            assert torch.equal(got, expected)
    with pytest.raises(
        ValueError, match="built without `transformer`, `scheduler`, `vae`, `vocoder`, a head.*encode_prompt"
    ):
        text_only("a dog barking")

    # The diffusers way: load the text components alone, generate with a pipeline that has no text encoders.
    pipe.save_pretrained(tmp_path / "pipeline")
    encoder = ImpactPipeline.from_pretrained(tmp_path / "pipeline", **TEXT_ONLY)
    assert encoder.transformer is None and encoder.text_encoder is not None
    generator = ImpactPipeline.from_pretrained(
        tmp_path / "pipeline", text_encoder=None, tokenizer=None, clap_text_encoder=None, clap_tokenizer=None
    )
    embeds, mask, pooled, *_ = encoder.encode_prompt(
        "a dog barking", torch.device("cpu"), do_classifier_free_guidance=False
    )
    from_embeddings = generator(
        **inputs(
            prompt=None,
            prompt_embeds=embeds,
            prompt_attention_mask=mask,
            pooled_prompt_embeds=pooled,
            output_type="np",
        )
    ).audios
    assert_same_model_output(from_embeddings, pipe(**inputs(output_type="np")).audios)
