"""Audio in, audio out (issue 16): inpainting, continuation, variations, frequency inpainting and long-form generation
with `ImpactPipeline`, on a tiny pipeline in AudioLDM's format (16 kHz, 64 mel bins) whose clips are 1.28 s: 8 token
columns of 0.16 s × 4 frequency bands. The default model's measured behaviour: examples/default_model/
evaluate_audio_input.py and README."""

import numpy as np
import pytest
import scipy.signal
import torch

from diffusers_impact.audio import mel_filterbank
from diffusers_impact.pipelines.audio_input import (
    band_keep_weights,
    input_weights,
    region_columns,
    splice_bands,
    splice_input,
    stitch_mel_windows,
    window_starts,
)
from diffusers_impact.schedulers import ImpactMaskScheduler
from diffusers_impact.testing_utils import tiny_impact_pipeline


RATE = 16000
CALL = {"num_inference_steps": 4, "num_diffusion_steps": 3}
COLUMN = 2560  # samples per token column (0.16 s)


@pytest.fixture(scope="module")
def audio_pipe():
    pipeline = tiny_impact_pipeline(audioldm_format=True, latent_length=32)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def recording():
    """1 s of a harmonic tone with an onset, at a level unlike the training data's (peak 0.3, offset 0.01)."""
    time = np.arange(RATE) / RATE
    tone = sum(np.sin(2 * np.pi * 220 * k * time) / k for k in range(1, 6))
    return (0.3 * tone / np.abs(tone).max() * np.minimum(1, time * 20) + 0.01).astype(np.float32)


def generate(pipeline, seed=0, prompt="a dog barking", **kwargs):
    return pipeline(prompt, generator=torch.Generator().manual_seed(seed), **{**CALL, **kwargs}).audios


def record_generated_tokens(pipeline):
    """Wrap `sample_tokens` (the diffusion head's hook): the number of tokens generated at each call is appended."""
    counts, sample_tokens = [], pipeline.sample_tokens

    def recording(hidden_states, noise, *args, **kwargs):
        counts.append(noise.shape[1])
        return sample_tokens(hidden_states, noise, *args, **kwargs)

    pipeline.sample_tokens = recording
    return counts


# ----------------------------------------------------------------------------------------------------- inpainting
def test_inpainting_keeps_every_sample_outside_the_region_and_generates_only_the_overlapping_tokens(
    audio_pipe, recording
):
    counts = record_generated_tokens(audio_pipe)
    try:
        out = generate(audio_pipe, audio=recording, mask_start_s=0.25, mask_end_s=0.6)[0]
    finally:
        del audio_pipe.sample_tokens
    assert out.shape == recording.shape  # defaults to the input's length
    start, end = round(0.25 * RATE), round(0.6 * RATE)
    np.testing.assert_array_equal(out[:start], recording[:start])  # exact samples
    np.testing.assert_array_equal(out[end:], recording[end:])
    assert not np.allclose(out[start + 800 : end - 800], recording[start + 800 : end - 800], atol=1e-3)
    # 0.25–0.6 s overlaps columns 1, 2 and 3 (0.16–0.64 s): 3 columns × 4 bands; and the window's columns 6 and 7,
    # which the 1 s input does not cover entirely (cropped from the output).
    assert sum(counts) == 3 * 4 + 2 * 4


def test_crossfades_lie_inside_the_region_and_are_equal_power(audio_pipe, recording):
    """The 50 ms fades: input gain sin(π/2·w), generated gain cos(π/2·w), w falling inside the region's start."""
    out = generate(audio_pipe, audio=recording, mask_start_s=0.5, mask_end_s=0.9)[0]
    start, fade = 8000, 800
    np.testing.assert_array_equal(out[:start], recording[:start])
    weights = input_weights(RATE, RATE, [(8000, 14400)], fade)
    assert weights[start] > 0.99 and weights[start + fade - 1] < 0.01 and weights[start + fade] == 0
    assert weights[14400 - fade - 1] == 0 and weights[14399] > 0.99 and weights[14400] == 1
    gains_squared = (
        np.sin(np.pi / 2 * weights[start : start + fade]) ** 2 + np.cos(np.pi / 2 * weights[start : start + fade]) ** 2
    )
    np.testing.assert_allclose(gains_squared, 1.0)


def test_several_regions_and_a_region_between_grid_lines(audio_pipe, recording):
    counts = record_generated_tokens(audio_pipe)
    try:
        out = generate(audio_pipe, audio=recording, mask_start_s=[0.05, 0.7], mask_end_s=[0.1, 0.75])[0]
    finally:
        del audio_pipe.sample_tokens
    assert sum(counts) == 2 * 4 + 2 * 4  # columns 0 and 4, and 6 and 7 after the input
    keep = input_weights(RATE, RATE, [(800, 1600), (11200, 12000)], 800) == 1
    np.testing.assert_array_equal(out[keep], recording[keep])
    assert keep[:800].all() and keep[1600:11200].all() and not keep[800:1600].any()


def test_given_tokens_stay_and_the_text_changes_only_the_region(audio_pipe, recording):
    """The latents outside the region are the input's whatever the prompt and seed; inside they follow them."""
    first = generate(
        audio_pipe, 0, "a dog barking", audio=recording, mask_start_s=0.32, mask_end_s=0.64, output_type="latent"
    )
    second = generate(
        audio_pipe, 1, "rain on a roof", audio=recording, mask_start_s=0.32, mask_end_s=0.64, output_type="latent"
    )
    inside = slice(2 * 4, 4 * 4)  # latent frames 8–15: columns 2 and 3; the input covers columns 0–5 (frames 0–23)
    torch.testing.assert_close(first[:, :, : inside.start], second[:, :, : inside.start], rtol=0, atol=0)
    torch.testing.assert_close(first[:, :, inside.stop : 24], second[:, :, inside.stop : 24], rtol=0, atol=0)
    assert not torch.allclose(first[:, :, inside], second[:, :, inside])


# --------------------------------------------------------------------------------------------------- continuation
def test_continuation_keeps_the_input_and_generates_after_it(audio_pipe, recording):
    counts = record_generated_tokens(audio_pipe)
    try:
        out = generate(audio_pipe, audio=recording[:9000], audio_length_in_s=1.2)[0]
    finally:
        del audio_pipe.sample_tokens
    assert out.shape == (round(1.2 * RATE),)
    fade = 800  # the input's last 50 ms fade into the generated audio
    np.testing.assert_array_equal(out[: 9000 - fade], recording[: 9000 - fade])
    assert np.abs(out[9000:]).max() > 0
    # 9000 samples cover 3 whole columns; the other 5 of the window are generated.
    assert sum(counts) == 5 * 4


def test_a_level_unlike_the_training_data_is_encoded_at_the_training_level(audio_pipe, recording):
    """Encoding sees the input centred and peak-normalised to 0.5: a louder copy with another offset gives the same
    given latents (the input covers frames 0–23). Generated audio follows the input's level:
    `test_strength_one_is_text_to_audio`."""
    quiet = generate(audio_pipe, audio=recording, audio_length_in_s=1.28, output_type="latent")
    loud = generate(audio_pipe, audio=(recording - 0.01) * 3, audio_length_in_s=1.28, output_type="latent")
    torch.testing.assert_close(quiet[:, :, :24], loud[:, :, :24], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------------- variations
def test_strength_generates_that_fraction_of_the_tokens(audio_pipe, recording):
    counts = record_generated_tokens(audio_pipe)
    try:
        generate(audio_pipe, audio=np.tile(recording, 2)[:20480], strength=0.5)  # 1.28 s: all 32 tokens
    finally:
        del audio_pipe.sample_tokens
    assert sum(counts) == round(0.5 * 32)


def test_strength_one_is_text_to_audio(audio_pipe, recording):
    """All tokens generated, nothing drawn for the selection: the latents of text to audio exactly, and its waveform
    brought to the input's level (peak 0.3 → gain 0.5 / 0.3, offset 0.01)."""
    clip = np.tile(recording, 2)[:20480]
    text_latents = generate(audio_pipe, output_type="latent")
    latents = generate(audio_pipe, audio=clip, strength=1.0, output_type="latent")
    torch.testing.assert_close(latents, text_latents, rtol=0, atol=0)
    text_audio = generate(audio_pipe)[0]
    audio = generate(audio_pipe, audio=clip, strength=1.0)[0]
    centred = clip.astype(np.float64) - clip.mean(dtype=np.float64)
    gain = 0.5 / np.abs(centred).max()
    np.testing.assert_allclose(audio, text_audio / gain + clip.mean(dtype=np.float64), rtol=1e-5, atol=1e-6)


def test_variations_differ_by_seed_and_keep_part_of_the_input(audio_pipe, recording):
    clip = np.tile(recording, 2)[:20480]
    first = generate(audio_pipe, 0, audio=clip, strength=0.25, output_type="latent")
    second = generate(audio_pipe, 1, audio=clip, strength=0.25, output_type="latent")
    tokens = [audio_pipe.transformer.patchify(latents) for latents in (first, second)]
    same = (tokens[0] == tokens[1]).all(dim=-1)[0]
    assert 0 < int(same.sum()) < 32  # the tokens both kept are the input's; the seeds chose different ones


# ------------------------------------------------------------------------------------------- frequency inpainting
def test_mask_bands_generates_only_those_bands_and_keeps_the_others_spectrum(audio_pipe, recording):
    counts = record_generated_tokens(audio_pipe)
    low_passed = scipy.signal.sosfilt(scipy.signal.butter(8, 3000, fs=RATE, output="sos"), recording).astype(
        np.float32
    )
    try:
        out = generate(audio_pipe, audio=low_passed, mask_bands=[3])[0]
    finally:
        del audio_pipe.sample_tokens
    assert sum(counts) == 6 + 2 * 4  # band 3 of the 6 columns the input covers; all of the 2 after it
    # Below 1 kHz (well inside bands 0–2) the output's spectrum is the input's; above, it is generated.
    frequencies, _, input_stft = scipy.signal.stft(low_passed, fs=RATE, nperseg=1024)
    _, _, output_stft = scipy.signal.stft(out, fs=RATE, nperseg=1024)
    low = frequencies < 1000
    np.testing.assert_allclose(np.abs(output_stft[low, 2:-2]), np.abs(input_stft[low, 2:-2]), atol=1e-4)


def test_band_splice_with_every_band_kept_returns_the_input():
    generator = np.random.default_rng(0)
    signal, other = generator.standard_normal((2, 2, 9000))
    keep = band_keep_weights(np.ones(64, dtype=bool), mel_filterbank(), RATE)
    np.testing.assert_allclose(splice_bands(signal, other, keep), signal, atol=1e-10)
    keep = band_keep_weights(np.zeros(64, dtype=bool), mel_filterbank(), RATE)
    np.testing.assert_allclose(splice_bands(signal, other, keep), other, atol=1e-10)


# ------------------------------------------------------------------------------------------------------ long-form
def test_long_form_generates_every_token_once_in_overlapping_windows(audio_pipe):
    counts = record_generated_tokens(audio_pipe)
    try:
        out = generate(audio_pipe, audio_length_in_s=3.5)
    finally:
        del audio_pipe.sample_tokens
    assert out.shape == (1, 3.5 * RATE) and np.isfinite(out).all()
    # 3.5 s → 22 columns; windows of 8 at columns 0, 4, 8, 12 and 14 (the last one aligned to the end).
    assert window_starts(22, 8, 4) == [0, 4, 8, 12, 14]
    assert sum(counts) == 22 * 4  # each token generated exactly once: the overlaps are given context


def test_long_form_is_reproducible_and_each_waveform_depends_on_its_generator_only(audio_pipe):
    batch = audio_pipe(
        ["a dog barking", "rain"],
        audio_length_in_s=2.0,
        generator=[torch.Generator().manual_seed(seed) for seed in (0, 1)],
        **CALL,
    ).audios
    alone = audio_pipe("rain", audio_length_in_s=2.0, generator=[torch.Generator().manual_seed(1)], **CALL).audios
    np.testing.assert_allclose(batch[1:], alone, rtol=1e-5, atol=1e-6)


def test_long_form_continues_an_input_with_a_window_overlap(audio_pipe, recording):
    counts = record_generated_tokens(audio_pipe)
    try:
        out = generate(audio_pipe, audio=recording, audio_length_in_s=2.4, window_overlap_s=0.96)[0]
    finally:
        del audio_pipe.sample_tokens
    np.testing.assert_array_equal(out[: RATE - 800], recording[: RATE - 800])
    assert out.shape == (round(2.4 * RATE),)
    assert sum(counts) == (15 - 6) * 4  # 15 columns, the first 6 from the input


def test_long_form_encodes_the_input_only_for_the_windows_that_hold_some_of_it(audio_pipe, recording, monkeypatch):
    encoded = []
    encode = audio_pipe.encode_mel_spectrogram
    monkeypatch.setattr(audio_pipe, "encode_mel_spectrogram", lambda mel: encoded.append(mel.shape) or encode(mel))
    generate(audio_pipe, audio=recording, audio_length_in_s=3.5)
    # 22 columns, windows at columns 0, 4, 8, 12 and 14; the input's 6 columns lie in the first two only.
    assert len(encoded) == 2


def test_long_form_shows_a_progress_bar_over_windows(audio_pipe, capsys):
    audio_pipe.set_progress_bar_config(disable=False)
    try:
        generate(audio_pipe, audio_length_in_s=2.0)
    finally:
        audio_pipe.set_progress_bar_config(disable=True)
    assert "3/3" in capsys.readouterr().err  # 13 columns: windows at columns 0, 4 and 5


def test_mel_windows_are_crossfaded_over_their_overlap():
    first, second = torch.zeros(1, 1, 8, 2), torch.ones(1, 1, 8, 2)
    stitched = stitch_mel_windows([(0, first), (4, second)], 12)
    assert stitched[0, 0, :4].eq(0).all() and stitched[0, 0, 8:].eq(1).all()
    overlap = stitched[0, 0, 4:8, 0]
    assert (overlap.diff() > 0).all() and 0 < overlap[0] < 0.2 and 0.8 < overlap[-1] < 1


def test_energy_head_pipelines_take_audio_input_too(recording):
    pipeline = tiny_impact_pipeline(head="energy", audioldm_format=True, latent_length=32)
    pipeline.set_progress_bar_config(disable=True)
    out = pipeline(
        "a dog barking",
        audio=recording,
        mask_start_s=0.3,
        mask_end_s=0.5,
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(0),
    ).audios[0]
    np.testing.assert_array_equal(out[:4800], recording[:4800])
    np.testing.assert_array_equal(out[8000:], recording[8000:])


def test_audio_sampling_rate_resamples_the_input(audio_pipe, recording):
    at_8k = scipy.signal.resample_poly(recording, 1, 2)
    from diffusers_impact.audio import resample

    expected = generate(audio_pipe, audio=resample(at_8k.astype(np.float64), 8000, RATE), audio_length_in_s=1.2)
    got = generate(audio_pipe, audio=at_8k, audio_sampling_rate=8000, audio_length_in_s=1.2)
    np.testing.assert_array_equal(got, expected)


def test_one_input_for_several_prompts_or_one_per_prompt(audio_pipe, recording):
    kwargs = {"mask_start_s": 0.3, "mask_end_s": 0.5, **CALL}
    shared = audio_pipe(
        ["a dog", "a cat"], audio=recording, generator=torch.Generator().manual_seed(0), **kwargs
    ).audios
    listed = audio_pipe(
        ["a dog", "a cat"], audio=[recording, recording * 0.5], generator=torch.Generator().manual_seed(0), **kwargs
    ).audios
    np.testing.assert_array_equal(shared[:, :4800], np.stack([recording[:4800]] * 2))
    np.testing.assert_array_equal(listed[1, :4800], (recording * 0.5)[:4800])


# --------------------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mask_start_s": 0.5, "mask_end_s": 1.5}, "not inside the audio"),
        ({"mask_start_s": 0.5, "mask_end_s": 0.5}, "start < end"),
        ({"mask_start_s": -0.1, "mask_end_s": 0.5}, "not inside the audio"),
        ({"mask_start_s": [0.1, 0.2], "mask_end_s": 0.5}, "same number of entries"),
        ({"mask_start_s": 0.1}, "both `mask_start_s` and `mask_end_s`"),
        ({"mask_start_s": float("nan"), "mask_end_s": 0.5}, "finite numbers"),
        ({"strength": 0.0}, "`strength` must be in \\(0, 1\\]"),
        ({"strength": 1.5}, "`strength` must be in \\(0, 1\\]"),
        ({"strength": float("nan")}, "`strength` must be in \\(0, 1\\]"),
        ({"audio_length_in_s": 0.5}, "longer than audio_length_in_s"),
        ({"mask_bands": [4]}, "`mask_bands` must be band indices in \\[0, 4\\)"),
        ({"mask_bands": [1, 1]}, "lists a band twice"),
        ({}, "nothing to generate"),
        ({"audio_sampling_rate": 0, "strength": 0.5}, "`audio_sampling_rate` must be a positive integer"),
        ({"audio_length_in_s": 3.0, "window_overlap_s": 1.28}, "`window_overlap_s` must be between"),
        ({"audio_length_in_s": 3.0, "output_type": "latent"}, "`output_type='latent'` returns one"),
        ({"audio_length_in_s": 3.0, "latents": torch.zeros(1, 8, 32, 16)}, "Leave `latents` out"),
    ],
)
def test_bad_audio_input_is_refused_naming_the_argument(audio_pipe, recording, overrides, message):
    with pytest.raises(ValueError, match=message):
        generate(audio_pipe, audio=recording, **overrides)


@pytest.mark.parametrize(
    "audio, message",
    [
        (np.zeros((2, 16000), dtype=np.float32), "must be mono"),
        (np.full(16000, np.nan, dtype=np.float32), "NaN or infinite"),
        (np.zeros(16000, dtype=np.int16), "floating-point"),
        (np.zeros(0, dtype=np.float32), "holds no samples"),
        ([np.zeros(16000, dtype=np.float32), np.zeros(8000, dtype=np.float32)], "list of 2 waveforms but there are 1"),
        ("dog.wav", "floating-point"),
    ],
)
def test_bad_waveforms_are_refused(audio_pipe, audio, message):
    with pytest.raises(ValueError, match=message):
        generate(audio_pipe, audio=audio, strength=0.5)


def test_waveforms_of_different_lengths_are_refused(audio_pipe):
    with pytest.raises(ValueError, match="different lengths"):
        audio_pipe(["a", "b"], audio=[np.zeros(16000, np.float32), np.zeros(8000, np.float32)], strength=0.5, **CALL)


def test_audio_arguments_without_audio_are_refused(audio_pipe):
    with pytest.raises(ValueError, match="`mask_start_s`, `mask_end_s`, `strength` apply to audio input"):
        generate(audio_pipe, mask_start_s=0.1, mask_end_s=0.2, strength=0.5)


def test_a_pipeline_without_the_audioldm_front_end_refuses_audio(pipe):
    with pytest.raises(ValueError, match="AudioLDM's mel front-end"):
        pipe("a dog", audio=np.zeros(1000, np.float32), strength=0.5, num_inference_steps=2)


# ------------------------------------------------------------------------------------------ the grid and the parts
def test_region_columns_cover_every_column_a_region_overlaps():
    assert region_columns([0.25], [0.6], 0.16, 8).nonzero()[0].tolist() == [1, 2, 3]
    assert region_columns([0.32], [0.64], 0.16, 8).nonzero()[0].tolist() == [2, 3]  # on grid lines: exact
    assert region_columns([0.0, 1.2], [0.01, 1.28], 0.16, 8).nonzero()[0].tolist() == [0, 7]


def test_splice_input_is_exact_where_kept_and_generated_where_not():
    generator = np.random.default_rng(0)
    kept, generated = generator.standard_normal((2, 1000))
    weights = input_weights(1200, 1000, [(300, 600)], 50)
    out = splice_input(kept, np.concatenate([generated, generated[:200]]), weights)
    np.testing.assert_array_equal(out[:300], kept[:300])
    np.testing.assert_array_equal(out[600:950], kept[600:950])  # the continuation fade takes the last 50
    np.testing.assert_array_equal(out[350:550], generated[350:550])
    np.testing.assert_array_equal(out[1000:], generated[:200])


def test_the_mask_scheduler_generates_only_the_tokens_not_given():
    scheduler = ImpactMaskScheduler()
    scheduler.set_timesteps(4, num_tokens=16, num_tokens_to_generate=6)
    assert sum(scheduler.num_tokens_to_predict) == 6 and scheduler.num_masked_before[0] == 6
    given = torch.zeros(2, 16, dtype=torch.bool)
    given[:, :10] = True
    orders = scheduler.sample_orders(2, generator=torch.Generator().manual_seed(0), given=given)
    assert (orders[:, :6] >= 10).all()  # the masked part of each order is exactly the tokens to generate
    assert scheduler.mask_before(0, orders)[:, 10:].all() and not scheduler.mask_before(0, orders)[:, :10].any()
    with pytest.raises(ValueError, match="given tokens per row"):
        scheduler.sample_orders(2, given=torch.zeros(2, 16, dtype=torch.bool))
