"""ImpactPipeline behaviour, following diffusers' PipelineTesterMixin conventions, on tiny offline components."""

import inspect
import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler
from transformers import BertConfig, BertModel, BertTokenizer, SpeechT5HifiGan, SpeechT5HifiGanConfig

from diffusers_impact import ImpactDiffHead, ImpactPipeline, ImpactTransformer
from diffusers_impact.configs import AUDIOLDM_VAE_CONFIG, AUDIOLDM_VOCODER_CONFIG
from diffusers_impact.testing_utils import tiny_impact_components, tiny_impact_pipeline


NUM_SAMPLES = 1024  # tiny pipeline: 16 latent frames × 4 mel frames × 16 samples = 0.64 s at 1600 Hz


def inputs(seed=0, **overrides):
    arguments = {
        "prompt": "a dog barking",
        "num_inference_steps": 3,
        "num_diffusion_steps": 5,
        "guidance_scale": 3.0,
        "generator": torch.Generator().manual_seed(seed),
    }
    arguments.update(overrides)
    return arguments


def assert_same_model_output(loaded_output, output):
    """A reloaded pipeline has the same weights, but at other memory addresses, where CPU kernels may round
    differently (seen: ≤ 1.1e-6): same output up to float rounding, not bit for bit."""
    np.testing.assert_allclose(loaded_output, output, rtol=1e-4, atol=1e-5)


def max_difference(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


# --------------------------------------------------------------------------------------------------- basic output
def test_generates_finite_audio_of_the_model_length(pipe):
    audio = pipe(**inputs()).audios
    assert isinstance(audio, np.ndarray) and audio.dtype == np.float32
    assert audio.shape == (1, NUM_SAMPLES)
    assert pipe.max_audio_length_in_s == pytest.approx(0.64)
    assert np.isfinite(audio).all() and np.abs(audio).max() > 1e-3


@pytest.mark.parametrize("seconds, samples", [(0.64, 1024), (0.3, 480), (0.01, 16), (0.123, 197)])
def test_shorter_audio_is_cropped_to_the_exact_sample_count(pipe, seconds, samples):
    full = pipe(**inputs()).audios
    cropped = pipe(**inputs(audio_length_in_s=seconds)).audios
    assert cropped.shape == (1, samples)
    np.testing.assert_array_equal(cropped, full[:, :samples])


def test_same_seed_same_audio_and_other_seed_other_audio(pipe):
    first, second, other = (pipe(**inputs(seed)).audios for seed in (0, 0, 1))
    np.testing.assert_array_equal(first, second)
    assert max_difference(first, other) > 1e-3


def test_batch_item_equals_single_call_with_its_generator(pipe):
    """Item k of a batched call with a list of generators equals a single call with generator k."""
    prompts = ["a dog barking", "rain and wind on a very long car engine " * 2]
    batched = pipe(**inputs(prompt=prompts, generator=[torch.Generator().manual_seed(s) for s in (3, 4)]))
    for k, seed in enumerate((3, 4)):
        single = pipe(**inputs(prompt=prompts[k], generator=torch.Generator().manual_seed(seed)))
        assert max_difference(batched.audios[k], single.audios[0]) < 1e-5


def test_text_controls_the_output(pipe):
    dog, rain = (pipe(**inputs(prompt=p, output_type="latent")).audios for p in ("a dog barking", "rain"))
    assert (dog - rain).abs().max() > 1e-3


def test_num_waveforms_per_prompt_shapes(pipe):
    assert pipe(**inputs(num_waveforms_per_prompt=2)).audios.shape == (2, NUM_SAMPLES)
    audio = pipe(**inputs(prompt=["a dog", "a cat"], num_waveforms_per_prompt=2)).audios
    assert audio.shape == (4, NUM_SAMPLES)
    assert max_difference(audio[0], audio[1]) > 1e-3  # waveforms of one prompt differ


def test_dict_and_tuple_outputs_are_equivalent(pipe):
    as_dict = pipe(**inputs()).audios
    as_tuple = pipe(**inputs(), return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1
    np.testing.assert_array_equal(as_dict, as_tuple[0])


def test_pt_and_latent_outputs(pipe):
    audio_np = pipe(**inputs()).audios
    audio_pt = pipe(**inputs(output_type="pt")).audios
    latents = pipe(**inputs(output_type="latent")).audios
    assert isinstance(audio_pt, torch.Tensor) and audio_pt.dtype == torch.float32
    np.testing.assert_array_equal(audio_pt.numpy(), audio_np)
    assert latents.shape == (1, 8, 16, 4)
    with torch.no_grad():
        decoded = pipe.mel_spectrogram_to_waveform(pipe.decode_latents(latents))
    np.testing.assert_allclose(decoded.numpy(), audio_np, rtol=0, atol=1e-6)


def test_batch_decoding_matches_the_vae_and_vocoder_on_the_whole_batch(pipe):
    """On the CPU the pipeline decodes one clip at a time in channels_last: the same audio as one batched call."""
    latents = torch.randn(3, 8, 16, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mel_spectrograms = pipe.decode_latents(latents)
        batched_mel = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
        waveforms = pipe.mel_spectrogram_to_waveform(mel_spectrograms)
        batched_waveforms = pipe.vocoder(mel_spectrograms.squeeze(1))
        clip_by_clip = [pipe.mel_spectrogram_to_waveform(pipe.decode_latents(latent[None])) for latent in latents]
    assert mel_spectrograms.shape == batched_mel.shape and mel_spectrograms.is_contiguous()
    torch.testing.assert_close(mel_spectrograms, batched_mel, rtol=0, atol=1e-5)
    torch.testing.assert_close(waveforms, batched_waveforms, rtol=0, atol=1e-5)
    torch.testing.assert_close(waveforms, torch.cat(clip_by_clip), rtol=0, atol=0)  # the same kernels per clip


def test_more_decoding_iterations_than_tokens(pipe):
    """T > N works: empty iterations are skipped (every one of the 16 tokens is generated once)."""
    latents = pipe(**inputs(num_inference_steps=40, output_type="latent")).audios
    assert pipe.num_timesteps == pipe.transformer.num_tokens == 16
    assert (pipe.transformer.patchify(latents).abs().sum(-1) > 0).all()


# ------------------------------------------------------------------------------------------------------- guidance
def _count_rows(module):
    rows = []
    handle = module.register_forward_hook(lambda _module, args, _output: rows.append(args[0].shape[0]))
    return rows, handle


def test_guidance_batches_cond_and_uncond_and_guidance_one_halves_the_work(pipe):
    for guidance, copies in ((3.0, 2), (1.0, 1)):
        transformer_rows, transformer_hook = _count_rows(pipe.transformer)
        head_rows, head_hook = _count_rows(pipe.diff_head)
        pipe(
            **inputs(prompt=["a dog", "a cat"], guidance_scale=guidance, num_inference_steps=4, num_diffusion_steps=5)
        )
        transformer_hook.remove()
        head_hook.remove()
        # One transformer forward per iteration with cond and uncond rows together.
        assert transformer_rows == [2 * copies] * 4
        # The head runs only on the tokens generated in each iteration: N tokens × batch × copies × steps in all.
        assert sum(head_rows) == 16 * 2 * copies * 5
        assert len(head_rows) == 4 * 5


def test_guidance_scale_changes_the_output_and_negative_prompt_replaces_null_condition(pipe):
    unguided = pipe(**inputs(guidance_scale=1.0, output_type="latent")).audios
    guided = pipe(**inputs(guidance_scale=4.0, output_type="latent")).audios
    negative = pipe(**inputs(guidance_scale=4.0, negative_prompt="rain", output_type="latent")).audios
    assert (unguided - guided).abs().max() > 1e-3
    assert (negative - guided).abs().max() > 1e-3
    for schedule in ("linear", "constant"):
        other = pipe(**inputs(guidance_scale=4.0, guidance_schedule=schedule, output_type="latent")).audios
        assert (other - guided).abs().max() > 1e-4


def test_prompt_embeds_give_the_same_audio_as_prompts(pipe):
    reference = pipe(**inputs(prompt=["a dog barking", "rain"], negative_prompt=["wind", "a car engine"])).audios
    embeds = pipe.encode_prompt(["a dog barking", "rain"], torch.device("cpu"), 1, True, ["wind", "a car engine"])
    names = [
        "prompt_embeds",
        "prompt_attention_mask",
        "pooled_prompt_embeds",
        "negative_prompt_embeds",
        "negative_prompt_attention_mask",
        "negative_pooled_prompt_embeds",
    ]
    from_embeds = pipe(**inputs(prompt=None, **dict(zip(names, embeds)))).audios
    assert max_difference(reference, from_embeds) < 1e-6


# ------------------------------------------------------------------------------------------------------ callbacks
def test_callback_receives_latents_and_zeroing_them_zeroes_the_output(pipe):
    seen = []

    def zero_at_last_step(pipeline, step, timestep, callback_kwargs):
        seen.append((step, callback_kwargs["latents"].shape))
        if step == pipeline.num_timesteps - 1:
            return {"latents": torch.zeros_like(callback_kwargs["latents"])}
        return {}

    latents = pipe(**inputs(output_type="latent", callback_on_step_end=zero_at_last_step)).audios
    assert [step for step, _ in seen] == [0, 1, 2]
    assert all(shape == (1, 8, 16, 4) for _, shape in seen)
    assert torch.equal(latents, torch.zeros_like(latents))


def test_callback_can_change_guidance_scale_each_step(pipe):
    def increase_guidance(pipeline, step, timestep, callback_kwargs):
        pipeline._guidance_scale += 1.0
        return callback_kwargs

    constant = pipe(**inputs(guidance_scale=2.0, output_type="latent")).audios
    increased = pipe(**inputs(guidance_scale=2.0, callback_on_step_end=increase_guidance, output_type="latent")).audios
    assert pipe.guidance_scale == 2.0 + pipe.num_timesteps
    assert (increased - constant).abs().max() > 1e-3  # the changes reach the sampling

    # β_max 2, 3, 3 over the three iterations differs from both 2, 2, 2 and 2, 3, 4: every step reads the new value.
    def set_three(pipeline, step, timestep, callback_kwargs):
        pipeline._guidance_scale = 3.0
        return callback_kwargs

    once = pipe(**inputs(guidance_scale=2.0, callback_on_step_end=set_three, output_type="latent")).audios
    assert (once - constant).abs().max() > 1e-3 and (once - increased).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------- saving and loading
def test_save_load_round_trip_gives_the_same_audio(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    model_index = json.loads((tmp_path / "model_index.json").read_text())
    assert model_index["transformer"] == ["diffusers_impact", "ImpactTransformer"]
    assert model_index["scheduler"] == ["diffusers_impact", "ImpactMaskScheduler"]
    assert "pipeline_tag: text-to-audio" in (tmp_path / "README.md").read_text()
    loaded = ImpactPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert set(loaded.components) == set(pipe.components)
    assert_same_model_output(loaded(**inputs()).audios, pipe(**inputs()).audios)


def test_optional_clap_components_save_as_null_and_reload_as_none(tmp_path):
    pipe = tiny_impact_pipeline(with_clap=False)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.clap_text_encoder is None and pipe.clap_tokenizer is None
    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["clap_text_encoder"] == [None, None]
    loaded = ImpactPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.clap_text_encoder is None and loaded.clap_tokenizer is None
    assert_same_model_output(loaded(**inputs()).audios, pipe(**inputs()).audios)


def test_a_transformer_with_pooled_condition_needs_the_clap_encoder(pipe):
    embeds = pipe.encode_prompt("a dog", torch.device("cpu"), do_classifier_free_guidance=False)
    pipe.clap_text_encoder = None
    with pytest.raises(ValueError, match="clap_text_encoder"):
        pipe(**inputs())
    with pytest.raises(ValueError, match="clap_text_encoder"):
        pipe(**inputs(prompt=None, prompt_embeds=embeds[0], pooled_prompt_embeds=embeds[2], negative_prompt="rain"))
    assert pipe(**inputs(prompt=None, prompt_embeds=embeds[0], pooled_prompt_embeds=embeds[2])).audios.shape == (
        1,
        NUM_SAMPLES,
    )


# -------------------------------------------------------------------------------------------- dtypes, offload, misc
def test_dtype_round_trip_saves_and_loads_in_the_requested_dtype(pipe, tmp_path):
    """diffusers' float16 save/load test, in bfloat16 (CPU): saved in a dtype, loaded with `dtype`, every model
    is in it and the audio matches the pipeline that was saved."""
    pipe.to(torch.bfloat16)
    pipe.save_pretrained(tmp_path)
    loaded = ImpactPipeline.from_pretrained(tmp_path, dtype=torch.bfloat16)
    loaded.set_progress_bar_config(disable=True)
    models = {
        name: component for name, component in loaded.components.items() if isinstance(component, torch.nn.Module)
    }
    assert {name: model.dtype for name, model in models.items()} == dict.fromkeys(models, torch.bfloat16)
    np.testing.assert_allclose(loaded(**inputs()).audios, pipe(**inputs()).audios, rtol=1e-2, atol=1e-2)


def test_models_from_pretrained_are_in_eval_mode_so_dropout_is_off(tmp_path):
    """The tiny transformer has dropout 0.1: in training mode two calls with one seed differ, after `from_pretrained`
    (eval mode) they are identical."""
    pipe = tiny_impact_pipeline()
    pipe.set_progress_bar_config(disable=True)
    assert pipe.transformer.config.dropout > 0
    pipe.save_pretrained(tmp_path)
    loaded = ImpactPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert not any(c.training for c in loaded.components.values() if isinstance(c, torch.nn.Module))
    np.testing.assert_array_equal(loaded(**inputs()).audios, loaded(**inputs()).audios)
    loaded.transformer.train()
    assert max_difference(loaded(**inputs()).audios, loaded(**inputs()).audios) > 1e-4  # the dropout is real


@pytest.mark.parametrize("requested", [[], ["latents"]])
def test_callback_receives_exactly_the_requested_tensor_inputs(pipe, requested):
    received = []

    def record(pipeline, step, timestep, callback_kwargs):
        received.append(sorted(callback_kwargs))
        return callback_kwargs

    pipe(**inputs(callback_on_step_end=record, callback_on_step_end_tensor_inputs=requested))
    assert received == [requested] * pipe.num_timesteps
    assert set(requested) <= set(pipe._callback_tensor_inputs)


def test_to_dtype_moves_every_component(pipe):
    modules = {name: c for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}
    assert all(module.dtype == torch.float32 for module in modules.values())
    pipe.to(dtype=torch.float16)
    assert all(module.dtype == torch.float16 for module in modules.values())


def test_bfloat16_generation_is_finite_and_close_to_float32(pipe):
    reference = pipe(**inputs(output_type="latent")).audios
    pipe.to(dtype=torch.bfloat16)
    latents = pipe(**inputs(output_type="latent")).audios
    assert latents.dtype == torch.float32 and torch.isfinite(latents).all()
    assert (latents - reference).abs().max() < 0.1 * reference.abs().max()


@pytest.mark.parametrize("vocoder", ["hifigan", "griffin-lim"])
def test_model_cpu_offload_runs_keeps_the_decoding_models_on_the_device_and_gives_the_same_audio(pipe, vocoder):
    """On the CPU as the offload device (diffusers allows it): real accelerate hooks, real calls."""
    if vocoder == "griffin-lim":  # no parameters: accelerate's hook used to fail with StopIteration
        from diffusers_impact import GriffinLimVocoder

        pipe.register_modules(
            vocoder=GriffinLimVocoder(sampling_rate=1600, n_fft=64, hop_length=16, win_length=64, num_mel_bins=16)
        )
    reference = pipe(**inputs()).audios
    pipe.enable_model_cpu_offload(device="cpu")
    np.testing.assert_array_equal(pipe(**inputs()).audios, reference)
    # Who moves whom off the device: a hook offloads its `prev_module_hook`'s model when its own model runs. (On a
    # CPU nothing actually moves, so the hooks themselves are checked.)
    offloaded_by = {
        type(hook.model).__name__: type(hook.hook.prev_module_hook.model).__name__
        for hook in pipe._all_hooks
        if hook.hook.prev_module_hook is not None
    }
    assert offloaded_by["AutoencoderKL"] == "ImpactTransformer"  # the transformer leaves after the decoding loop
    assert "ImpactDiffHead" not in offloaded_by and "ImpactDiffHead" not in offloaded_by.values()
    hooked = {type(hook.model).__name__ for hook in pipe._all_hooks}
    assert {"ImpactTransformer", "ImpactDiffHead", "AutoencoderKL"} <= hooked
    assert "GriffinLimVocoder" not in hooked  # moved to the device once, nothing to offload


def test_call_signature_follows_diffusers_conventions():
    parameters = inspect.signature(ImpactPipeline.__call__).parameters
    for name in (
        "prompt",
        "negative_prompt",
        "audio_length_in_s",
        "num_inference_steps",
        "guidance_scale",
        "num_waveforms_per_prompt",
        "generator",
        "latents",
        "prompt_embeds",
        "negative_prompt_embeds",
        "output_type",
        "return_dict",
        "callback_on_step_end",
        "callback_on_step_end_tensor_inputs",
    ):
        assert name in parameters
    # Not passed: the model's recommended settings (below), else the paper-like defaults.
    assert parameters["num_inference_steps"].default is None and parameters["guidance_scale"].default is None
    assert tiny_impact_pipeline().call_defaults == {
        "num_inference_steps": 32,
        "num_diffusion_steps": 100,
        "guidance_scale": 5.0,
    }


def test_a_models_recommended_call_settings_are_used_unless_a_call_overrides_them(pipe, tmp_path):
    pipe.register_to_config(recommended_call_settings={"num_inference_steps": 2, "num_diffusion_steps": [4, 2]})
    calls, recommended = head_calls_per_iteration(pipe, num_inference_steps=None, num_diffusion_steps=None)
    assert calls == [4, 2]
    explicit = pipe(**inputs(output_type="latent", num_inference_steps=2, num_diffusion_steps=(4, 2))).audios
    assert torch.equal(recommended, explicit)
    assert head_calls_per_iteration(pipe, num_inference_steps=3, num_diffusion_steps=None)[0] == [4, 3, 2]
    # Kept in model_index.json: a reloaded pipeline generates the same way.
    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["recommended_call_settings"][
        "num_diffusion_steps"
    ] == [4, 2]
    loaded = ImpactPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert head_calls_per_iteration(loaded, num_inference_steps=None, num_diffusion_steps=None)[0] == [4, 2]
    with pytest.raises(ValueError, match="`recommended_call_settings` may set"):
        ImpactPipeline(**pipe.components, recommended_call_settings={"temperature": 0.5})


def test_progress_bar_counts_decoding_iterations(capsys):
    pipe = tiny_impact_pipeline()
    pipe(**inputs(num_inference_steps=3))
    assert "3/3" in capsys.readouterr().err


def test_given_latents_are_the_head_starting_noise(pipe):
    generator = torch.Generator().manual_seed(5)
    latents = torch.randn(1, 8, 16, 4, generator=generator)
    first = pipe(**inputs(latents=latents, output_type="latent")).audios
    second = pipe(**inputs(latents=latents, output_type="latent")).audios
    other = pipe(**inputs(latents=latents * -1, output_type="latent")).audios
    assert torch.equal(first, second)
    assert (first - other).abs().max() > 1e-3


def test_head_scheduler_can_be_swapped_for_a_diffusers_scheduler(pipe):
    reference = pipe(**inputs(output_type="latent")).audios
    pipe.head_scheduler = DDIMScheduler.from_config(pipe.head_scheduler.config)
    assert (
        pipe.head_scheduler.config.beta_schedule == "squaredcos_cap_v2" and not pipe.head_scheduler.config.clip_sample
    )
    ddim = pipe(**inputs(output_type="latent")).audios
    assert torch.isfinite(ddim).all() and (ddim - reference).abs().max() > 1e-4
    # DDIM with eta = 0 is deterministic: the same decoding orders and head noise give the same tokens.
    torch.testing.assert_close(pipe(**inputs(output_type="latent")).audios, ddim, rtol=0, atol=0)
    with pytest.raises(ValueError, match="temperature"):
        pipe(**inputs(temperature=0.5))


def test_temperature_zero_removes_the_injected_noise(pipe):
    first = pipe(**inputs(temperature=0.0, output_type="latent")).audios
    second = pipe(**inputs(temperature=0.0, output_type="latent", generator=torch.Generator().manual_seed(0)))
    assert torch.equal(first, second.audios)
    assert (first - pipe(**inputs(output_type="latent")).audios).abs().max() > 1e-4


def bert_components(pooled_text_embed_dim=None) -> dict:
    """Tiny components with a BERT-style text encoder (as all-MiniLM-L6-v2) of width 16 instead of T5, no CLAP."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "dog", "barking", "rain", "loud"]
    components = tiny_impact_components(with_clap=False)
    components["tokenizer"] = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    components["text_encoder"] = BertModel(
        BertConfig(
            vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    ).eval()
    config = dict(components["transformer"].config)
    components["transformer"] = ImpactTransformer.from_config(
        config, pooled_text_embed_dim=pooled_text_embed_dim
    ).eval()
    return components


def test_any_transformers_encoder_with_last_hidden_state_works():
    """A BERT-style encoder (e.g. MiniLM) instead of T5."""
    pipe = ImpactPipeline(**bert_components())
    pipe.set_progress_bar_config(disable=True)
    dog, rain = (pipe(**inputs(prompt=p, output_type="latent")).audios for p in ("a dog barking", "rain"))
    assert torch.isfinite(dog).all() and (dog - rain).abs().max() > 1e-3


def test_pooled_condition_from_the_text_encoder_is_its_unit_norm_mean_over_real_tokens(tmp_path):
    """`pooled_text_embedding="text_encoder_mean"`: sentence-transformers pooling, no CLAP needed, kept on save."""
    pipe = ImpactPipeline(**bert_components(pooled_text_embed_dim=16), pooled_text_embedding="text_encoder_mean")
    pipe.set_progress_bar_config(disable=True)
    prompts = ["rain", "a loud dog barking"]  # "rain" is padded with three [PAD] tokens in the batch
    _, mask, pooled, *_ = pipe.encode_prompt(prompts, torch.device("cpu"), do_classifier_free_guidance=False)
    assert mask.sum(1).tolist() == [3, 6]
    for prompt, row in zip(prompts, pooled):
        ids = pipe.tokenizer(prompt, return_tensors="pt").input_ids  # alone: no padding at all
        states = pipe.text_encoder(ids).last_hidden_state[0].double()
        expected = states.mean(0) / states.mean(0).norm()
        torch.testing.assert_close(row.double(), expected, rtol=1e-5, atol=1e-6)
    # The pooled embedding reaches the transformer: changing it changes the output.
    embeds, mask, pooled, *_ = pipe.encode_prompt(
        "a dog barking", torch.device("cpu"), do_classifier_free_guidance=False
    )
    outputs = [
        pipe(
            **inputs(
                prompt=None,
                prompt_embeds=embeds,
                prompt_attention_mask=mask,
                pooled_prompt_embeds=p,
                output_type="latent",
            )
        ).audios
        for p in (pooled, -pooled)
    ]
    assert (outputs[0] - outputs[1]).abs().max() > 1e-3
    np.testing.assert_array_equal(pipe(**inputs(output_type="latent")).audios, outputs[0])

    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["pooled_text_embedding"] == "text_encoder_mean"
    loaded = ImpactPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.pooled_text_embedding == "text_encoder_mean" and loaded.clap_text_encoder is None
    assert_same_model_output(loaded(**inputs()).audios, pipe(**inputs()).audios)


@pytest.mark.parametrize(
    "pooled_text_embed_dim, source, match",
    [(16, "mean", "must be one of"), (8, "text_encoder_mean", "pooled_text_embed_dim")],
)
def test_a_bad_pooled_text_embedding_setting_is_refused(pooled_text_embed_dim, source, match):
    with pytest.raises(ValueError, match=match):
        ImpactPipeline(**bert_components(pooled_text_embed_dim=pooled_text_embed_dim), pooled_text_embedding=source)


# ------------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "overrides, argument",
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": ["a dog", "  "]}, "prompt"),
        ({"prompt": 3}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"prompt": None}, "prompt_embeds"),
        ({"prompt_embeds": torch.zeros(1, 4, 16)}, "prompt_embeds"),
        ({"prompt": ["a dog", "a cat"], "negative_prompt": ["rain"]}, "negative_prompt"),
        ({"negative_prompt": 5}, "negative_prompt"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"num_inference_steps": 2.5}, "num_inference_steps"),
        ({"num_diffusion_steps": -1}, "num_diffusion_steps"),
        ({"num_waveforms_per_prompt": 0}, "num_waveforms_per_prompt"),
        ({"guidance_scale": 0.5}, "guidance_scale"),
        ({"guidance_schedule": "exponential"}, "guidance_schedule"),
        ({"temperature": -1.0}, "temperature"),
        ({"audio_length_in_s": 0.0}, "audio_length_in_s"),
        ({"audio_length_in_s": -1.0}, "audio_length_in_s"),
        ({"generator": [torch.Generator(), torch.Generator()]}, "generator"),
        ({"latents": torch.zeros(1, 8, 12, 4)}, "latents"),
        ({"output_type": "pil"}, "output_type"),
        ({"callback_on_step_end_tensor_inputs": ["mask"]}, "callback_on_step_end_tensor_inputs"),
        # Silently wrong or crashing before (issue 12): non-finite numbers, booleans, strings, tensors, NumPy arrays.
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"guidance_scale": float("inf")}, "guidance_scale"),
        ({"guidance_scale": torch.tensor(3.0)}, "guidance_scale"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"num_inference_steps": True}, "num_inference_steps"),
        ({"num_diffusion_steps": np.float64(5.0)}, "num_diffusion_steps"),
        ({"audio_length_in_s": "0.3"}, "audio_length_in_s"),
        ({"audio_length_in_s": float("nan")}, "audio_length_in_s"),
        ({"generator": 42}, "generator"),
        ({"generator": [42]}, "generator"),
        ({"latents": np.zeros((1, 8, 16, 4), dtype=np.float32)}, "latents"),
        ({"latents": torch.full((1, 8, 16, 4), float("nan"))}, "latents"),
        ({"latents": torch.zeros(1, 8, 16, 4, dtype=torch.long)}, "latents"),
    ],
)
def test_bad_input_raises_a_value_error_naming_the_argument(pipe, overrides, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        pipe(**inputs(**overrides))


@pytest.mark.parametrize(
    "overrides, argument",
    [
        ({"prompt_embeds": torch.zeros(2, 4, 15), "pooled_prompt_embeds": torch.zeros(2, 8)}, "prompt_embeds"),
        ({"prompt_embeds": torch.zeros(2, 30, 16), "pooled_prompt_embeds": torch.zeros(2, 8)}, "prompt_embeds"),
        ({"prompt_embeds": torch.zeros(2, 4, 16), "pooled_prompt_embeds": torch.zeros(2, 7)}, "pooled_prompt_embeds"),
        ({"prompt_embeds": torch.zeros(2, 4, 16)}, "pooled_prompt_embeds"),
        (
            {
                "prompt_embeds": torch.zeros(2, 4, 16),
                "pooled_prompt_embeds": torch.zeros(2, 8),
                "prompt_attention_mask": torch.ones(2, 5),
            },
            "prompt_attention_mask",
        ),
        (
            {
                "prompt_embeds": torch.zeros(2, 4, 16),
                "pooled_prompt_embeds": torch.zeros(2, 8),
                "negative_prompt_embeds": torch.zeros(3, 4, 16),
                "negative_pooled_prompt_embeds": torch.zeros(3, 8),
            },
            "negative_prompt_embeds",
        ),
        (
            {
                "prompt_embeds": torch.zeros(2, 4, 16),
                "pooled_prompt_embeds": torch.zeros(2, 8),
                "negative_prompt_embeds": torch.zeros(2, 4, 16),
            },
            "negative_pooled_prompt_embeds",
        ),
        (
            {
                "prompt_embeds": torch.zeros(2, 4, 16),
                "pooled_prompt_embeds": torch.zeros(2, 8),
                "negative_prompt": "x",
                "negative_prompt_embeds": torch.zeros(2, 4, 16),
                "negative_pooled_prompt_embeds": torch.zeros(2, 8),
            },
            "negative_prompt",
        ),
        (
            {"prompt_embeds": torch.full((2, 4, 16), float("nan")), "pooled_prompt_embeds": torch.zeros(2, 8)},
            "prompt_embeds",
        ),
        (
            {"prompt_embeds": torch.zeros(2, 4, 16), "pooled_prompt_embeds": torch.full((2, 8), float("inf"))},
            "pooled_prompt_embeds",
        ),
        ({"prompt_embeds": np.zeros((2, 4, 16)), "pooled_prompt_embeds": torch.zeros(2, 8)}, "prompt_embeds"),
        (
            {
                "prompt_embeds": torch.zeros(2, 4, 16),
                "pooled_prompt_embeds": torch.zeros(2, 8),
                "negative_prompt_embeds": torch.full((2, 4, 16), float("nan")),
                "negative_pooled_prompt_embeds": torch.zeros(2, 8),
            },
            "negative_prompt_embeds",
        ),
    ],
)
def test_mismatched_embeddings_raise_a_value_error_naming_the_argument(pipe, overrides, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        pipe(**inputs(prompt=None, **overrides))


# ------------------------------------------------------------------------------------------ real-size compatibility
def test_real_size_audioldm_vae_and_vocoder_give_163840_samples_for_10_24_s():
    """cvssp/audioldm-s-full-v2 VAE and vocoder architectures (random weights): 10.24 s → exactly 163,840 samples."""
    torch.manual_seed(0)
    components = tiny_impact_components(latent_length=256)
    components["vae"] = AutoencoderKL(**AUDIOLDM_VAE_CONFIG).eval()
    components["vocoder"] = SpeechT5HifiGan(SpeechT5HifiGanConfig(**AUDIOLDM_VOCODER_CONFIG)).eval()
    # A narrow transformer over the real token grid: (8, 256, 16) latents, patch 4 → 256 tokens of 128 values.
    components["transformer"] = ImpactTransformer(
        hidden_size=32,
        num_encoder_layers=1,
        num_decoder_layers=1,
        num_attention_heads=2,
        text_embed_dim=16,
        max_text_length=24,
        pooled_text_embed_dim=8,
    ).eval()
    components["diff_head"] = ImpactDiffHead(
        in_channels=128, model_channels=32, condition_channels=32, num_res_blocks=1
    )
    pipe = ImpactPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.transformer.num_tokens == 256
    assert pipe.max_audio_length_in_s == pytest.approx(10.24)
    audio = pipe("a dog barking", num_inference_steps=2, num_diffusion_steps=2, guidance_scale=1.0).audios
    assert audio.shape == (1, 163840)
    assert np.isfinite(audio).all()


# ---------------------------------------------------------------------------------- diffusion step annealing (DiSA)
def head_calls_per_iteration(pipe, **overrides) -> tuple[list[int], torch.Tensor]:
    """How many times the head ran in each decoding iteration (one transformer forward starts each), and the latents."""
    calls = []
    hooks = [
        pipe.transformer.register_forward_pre_hook(lambda module, args: calls.append(0)),
        pipe.diff_head.register_forward_pre_hook(lambda module, args: calls.__setitem__(-1, calls[-1] + 1)),
    ]
    latents = pipe(**inputs(output_type="latent", **overrides)).audios
    for hook in hooks:
        hook.remove()
    return calls, latents


def test_annealed_diffusion_steps_go_linearly_from_first_to_last():
    from diffusers_impact.pipelines.pipeline_impact import annealed_diffusion_steps

    assert annealed_diffusion_steps(100, 4) == [100] * 4
    assert annealed_diffusion_steps((50, 5), 16) == [50, 47, 44, 41, 38, 35, 32, 29, 26, 23, 20, 17, 14, 11, 8, 5]
    assert annealed_diffusion_steps((7, 2), 3) == [7, 5, 2]  # 4.5 rounds half up
    assert annealed_diffusion_steps((5, 50), 2) == [5, 50]
    assert annealed_diffusion_steps((50, 5), 1) == [50]
    assert annealed_diffusion_steps((50, 5), 16, "linear") == annealed_diffusion_steps((50, 5), 16)


def test_geometric_annealing_keeps_a_constant_ratio_between_iterations():
    from diffusers_impact.pipelines.pipeline_impact import annealed_diffusion_steps

    steps = annealed_diffusion_steps((50, 5), 16, "geometric")
    assert steps == [50, 43, 37, 32, 27, 23, 20, 17, 15, 13, 11, 9, 8, 7, 6, 5] and sum(steps) == 323
    exact = 50 * (5 / 50) ** (np.arange(16) / 15)  # 50 · 0.1^(i / 15): ratio 0.858 from one iteration to the next
    assert np.abs(np.array(steps) - exact).max() <= 0.5
    assert annealed_diffusion_steps((8, 2), 3, "geometric") == [8, 4, 2]
    assert annealed_diffusion_steps(100, 3, "geometric") == [100] * 3
    with pytest.raises(ValueError, match="`annealing` must be one of"):
        annealed_diffusion_steps((50, 5), 16, "cosine")


def test_the_head_runs_the_annealed_step_count_at_each_iteration(pipe):
    calls, annealed = head_calls_per_iteration(pipe, num_diffusion_steps=(7, 2))
    assert calls == [7, 5, 2]
    assert torch.isfinite(annealed).all()
    calls, constant = head_calls_per_iteration(pipe, num_diffusion_steps=5)
    assert calls == [5, 5, 5]
    # A pair with equal ends is the int path, bit for bit.
    assert torch.equal(pipe(**inputs(output_type="latent", num_diffusion_steps=(5, 5))).audios, constant)
    assert (annealed - constant).abs().max() > 1e-4


def test_the_head_runs_the_geometric_step_count_at_each_iteration(pipe):
    calls, geometric = head_calls_per_iteration(pipe, num_diffusion_steps=(8, 2), diffusion_step_annealing="geometric")
    assert calls == [8, 4, 2]
    _, linear = head_calls_per_iteration(pipe, num_diffusion_steps=(8, 2))
    assert torch.isfinite(geometric).all() and (geometric - linear).abs().max() > 1e-4


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"num_diffusion_steps": (8, 2), "diffusion_step_annealing": "cosine"}, "must be one of"),
        ({"num_diffusion_steps": (8, 2), "diffusion_step_annealing": None}, "must be one of"),
        ({"num_diffusion_steps": 8, "diffusion_step_annealing": "geometric"}, r"pass `num_diffusion_steps` as a pair"),
    ],
)
def test_a_bad_annealing_shape_is_refused(pipe, overrides, match):
    with pytest.raises(ValueError, match=f"`diffusion_step_annealing.*{match}"):
        pipe(**inputs(**overrides))


def test_annealing_works_with_a_swapped_diffusers_scheduler(pipe):
    pipe.head_scheduler = DDIMScheduler.from_config(pipe.head_scheduler.config)
    calls, latents = head_calls_per_iteration(pipe, num_diffusion_steps=(6, 3))
    assert calls == [6, 5, 3]
    assert torch.isfinite(latents).all()


@pytest.mark.parametrize("steps", [(0, 5), (5,), (5, 5, 5), (5, 2.5), (True, 5), "5"])
def test_a_bad_annealing_pair_is_refused(pipe, steps):
    with pytest.raises(ValueError, match="`num_diffusion_steps`"):
        pipe(**inputs(num_diffusion_steps=steps))
