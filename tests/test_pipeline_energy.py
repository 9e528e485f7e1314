"""ImpactPipeline with AudioDEAR's one-step energy head: one head call per iteration, guidance on the hidden vectors,
refusals of the diffusion head's arguments, saving and loading (the generic loader's tests: test_loading.py)."""

import json

import numpy as np
import pytest
import torch

from diffusers_impact import ImpactEnergyHead, ImpactPipeline
from diffusers_impact.diffusers_registration import LOADER_CODE, LOADER_FILE
from diffusers_impact.testing_utils import tiny_impact_components, tiny_impact_pipeline


CALL = {"num_inference_steps": 4, "guidance_scale": 3.0}


@pytest.fixture
def energy_pipe():
    pipeline = tiny_impact_pipeline(head="energy")
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def generate(pipeline, seed=0, **overrides):
    return pipeline("a dog barking", generator=torch.Generator().manual_seed(seed), **{**CALL, **overrides}).audios


def record_head_calls(pipeline):
    """Wrap the energy head's forward: every call's (condition, noise, temperature) is appended to the returned list."""
    calls, forward = [], pipeline.energy_head.forward

    def recording_forward(condition, noise, temperature=1.0, return_dict=True):
        calls.append((condition.clone(), noise.clone(), temperature))
        return forward(condition, noise, temperature=temperature, return_dict=return_dict)

    pipeline.energy_head.forward = recording_forward
    return calls


def test_energy_pipeline_generates_reproducible_finite_audio(energy_pipe):
    audio = generate(energy_pipe)
    assert audio.shape == (1, 1024) and np.isfinite(audio).all() and np.abs(audio).max() > 0
    np.testing.assert_array_equal(audio, generate(energy_pipe))
    assert not np.allclose(audio, generate(energy_pipe, seed=1))
    assert energy_pipe.head_type == "energy" and energy_pipe.head_scheduler is None and energy_pipe.diff_head is None


def test_one_head_call_per_decoding_iteration_on_the_iterations_tokens_only(energy_pipe):
    calls = record_head_calls(energy_pipe)
    generate(energy_pipe, num_waveforms_per_prompt=2)
    assert len(calls) == 4  # T = 4 iterations, one call each, both waveforms together
    # Guidance is merged before the head: each token is generated once, in one of the calls.
    assert sum(condition.shape[0] for condition, _, _ in calls) == 2 * energy_pipe.transformer.num_tokens
    assert all(noise.shape == (condition.shape[0], 8) for condition, noise, _ in calls)


def test_guidance_acts_on_the_hidden_vectors_and_one_is_the_conditional_branch(energy_pipe):
    torch.manual_seed(0)
    batch, tokens, width = 2, 3, energy_pipe.transformer.config.hidden_size
    hidden = torch.randn(2 * batch, tokens, width)
    noise = torch.randn(batch, tokens, energy_pipe.energy_head.config.noise_channels)
    conditional_only = energy_pipe.sample_tokens_one_step(hidden[:batch], noise, 1.0)
    # β = 1 with both branches computed (the first iterations of the cosine schedule) is exactly the conditional one.
    torch.testing.assert_close(
        energy_pipe.sample_tokens_one_step(hidden, noise, 1.0), conditional_only, rtol=0, atol=0
    )
    guided_hidden = hidden[batch:] + 2.5 * (hidden[:batch] - hidden[batch:])
    torch.testing.assert_close(
        energy_pipe.sample_tokens_one_step(hidden, noise, 2.5),
        energy_pipe.sample_tokens_one_step(guided_hidden, noise, 1.0),
        rtol=1e-5,
        atol=1e-5,
    )
    assert not torch.allclose(energy_pipe.sample_tokens_one_step(hidden, noise, 2.5), conditional_only)


def test_guidance_scale_one_runs_only_the_conditional_branch(energy_pipe):
    calls = record_head_calls(energy_pipe)
    generate(energy_pipe, guidance_scale=1.0)
    assert [condition.shape[0] for condition, _, _ in calls] == [
        noise.shape[0] for _, noise, _ in calls
    ]  # one hidden vector per generated token: no unconditional rows
    assert not np.allclose(generate(energy_pipe, guidance_scale=1.0), generate(energy_pipe, guidance_scale=4.0))


def test_temperature_scales_the_heads_noise_and_zero_removes_it(energy_pipe):
    calls = record_head_calls(energy_pipe)
    generate(energy_pipe, temperature=0.5)
    assert {temperature for _, _, temperature in calls} == {0.5}
    hidden = torch.randn(1, 3, energy_pipe.transformer.config.hidden_size)
    noises = torch.randn(2, 1, 3, energy_pipe.energy_head.config.noise_channels)
    cold = [energy_pipe.sample_tokens_one_step(hidden, noise, 1.0, temperature=0.0) for noise in noises]
    torch.testing.assert_close(cold[0], cold[1], rtol=0, atol=0)
    warm = [energy_pipe.sample_tokens_one_step(hidden, noise, 1.0) for noise in noises]
    assert not torch.allclose(warm[0], warm[1])


def test_batch_item_equals_single_call_with_its_generator(energy_pipe):
    generators = [torch.Generator().manual_seed(seed) for seed in (3, 4)]
    batch = energy_pipe(["a dog barking", "a cat"], generator=generators, **CALL).audios
    for index, (prompt, seed) in enumerate((("a dog barking", 3), ("a cat", 4))):
        single = energy_pipe(prompt, generator=torch.Generator().manual_seed(seed), **CALL).audios[0]
        np.testing.assert_allclose(batch[index], single, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "overrides, argument",
    [
        ({"num_diffusion_steps": 10}, "num_diffusion_steps"),
        ({"num_diffusion_steps": (50, 5)}, "num_diffusion_steps"),
        ({"num_diffusion_steps": (50, 5), "diffusion_step_annealing": "geometric"}, "num_diffusion_steps"),
        ({"diffusion_step_annealing": "geometric"}, "diffusion_step_annealing"),
        ({"latents": torch.zeros(1, 8, 16, 4)}, "latents"),
    ],
)
def test_arguments_of_the_diffusion_head_are_refused(energy_pipe, overrides, argument):
    with pytest.raises(ValueError, match=f"`{argument}` applies to a diffusion head.*one-step energy head"):
        generate(energy_pipe, **overrides)


def test_a_pipeline_takes_one_kind_of_head():
    components = tiny_impact_components()
    components["energy_head"] = tiny_impact_components(head="energy")["energy_head"]
    with pytest.raises(ValueError, match="one kind of token head"):
        ImpactPipeline(**components)


def test_recommended_settings_of_an_energy_pipeline_cannot_set_head_steps():
    components = tiny_impact_components(head="energy")
    with pytest.raises(ValueError, match=r"may set \['guidance_scale', 'num_inference_steps'\].*num_diffusion_steps"):
        ImpactPipeline(**components, recommended_call_settings={"num_diffusion_steps": 25})
    pipeline = ImpactPipeline(**components, recommended_call_settings={"num_inference_steps": 6})
    assert pipeline.call_defaults == {"num_inference_steps": 6, "guidance_scale": 5.0}


def test_a_pipeline_without_a_head_names_what_is_missing():
    components = tiny_impact_components(head="energy")
    components["energy_head"] = None
    pipeline = ImpactPipeline(**components)
    with pytest.raises(ValueError, match=r"without a head \(`diff_head` with `head_scheduler`, or `energy_head`\)"):
        pipeline("a dog barking")


def test_save_load_round_trip_and_the_card_names_the_head(energy_pipe, tmp_path):
    energy_pipe.save_pretrained(tmp_path / "energy")
    index = json.loads((tmp_path / "energy" / "model_index.json").read_text())
    assert index["energy_head"] == ["diffusers_impact", "ImpactEnergyHead"]
    assert index["diff_head"] == [None, None] and index["head_scheduler"] == [None, None]
    assert (tmp_path / "energy" / "energy_head" / LOADER_FILE).read_text() == LOADER_CODE
    assert "one-step energy-scoring head" in (tmp_path / "energy" / "README.md").read_text()
    loaded = ImpactPipeline.from_pretrained(tmp_path / "energy")
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.energy_head, ImpactEnergyHead) and loaded.head_type == "energy"
    np.testing.assert_array_equal(generate(loaded), generate(energy_pipe))
    diffusion_card = tiny_impact_pipeline().create_model_card().text
    assert "a diffusion head" in diffusion_card and "energy" not in diffusion_card
