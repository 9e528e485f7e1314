"""GriffinLimVocoder: inverts the package's log-mel front-end, is deterministic, saves and loads like a diffusers model."""

import json

import numpy as np
import pytest
import torch
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

from diffusers_impact import GriffinLimVocoder, ImpactPipeline
from diffusers_impact.audio import mel_spectrogram
from diffusers_impact.models import load_vocoder, vocoder_front_end
from diffusers_impact.testing_utils import tiny_impact_pipeline


FRAMES = 200  # 2 s at 16 kHz


def harmonic_test_signal() -> torch.Tensor:
    """A 2 s call-like test signal: a gliding harmonic tone (5 partials) that starts after 0.5 s of silence."""
    time = torch.arange(FRAMES * 160, dtype=torch.float64) / 16000
    f0 = 300 + 150 * time  # glides from 300 to 600 Hz
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / 16000
    tone = sum(torch.sin(k * phase) / k for k in range(1, 6))
    envelope = ((time > 0.5) & (time < 1.7)).double()
    return (0.4 * tone * envelope / tone.abs().max()).float()[None]


def active_frame_error(mel: torch.Tensor, waveform: torch.Tensor) -> float:
    """Mean |Δ log-mel| over the frames within 40 dB of the loudest, between `mel` and the mel of `waveform`."""
    rebuilt = mel_spectrogram(waveform, num_frames=mel.shape[1])[:, 0]
    loudness = mel.mean(-1)
    active = loudness >= loudness.max() - np.log(100)
    return (rebuilt - mel).abs()[active].mean().item()


@pytest.fixture(scope="module")
def test_mel() -> torch.Tensor:
    return mel_spectrogram(harmonic_test_signal(), num_frames=FRAMES)[:, 0]


def test_inverts_the_package_front_end(test_mel):
    waveform = GriffinLimVocoder()(test_mel)
    assert waveform.shape == (1, FRAMES * 160)
    # The rebuilt waveform's log-mel matches the input where there is sound: 0.26 (natural log) for this pure
    # harmonic glide, whose weak bins between partials dominate; 0.09 on the animal recordings.
    assert active_frame_error(test_mel, waveform) < 0.3
    # Silence stays silent: the first 0.4 s is at least 60 dB below the tone.
    assert waveform[0, :6400].abs().max() < 1e-3 * waveform.abs().max()


def test_more_iterations_and_momentum_converge_further(test_mel):
    errors = {
        (iterations, momentum): active_frame_error(
            test_mel, GriffinLimVocoder(num_iterations=iterations, momentum=momentum)(test_mel)
        )
        for iterations, momentum in [(0, 0.99), (2, 0.99), (32, 0.0), (32, 0.99)]
    }
    assert errors[(32, 0.99)] < errors[(32, 0.0)] < errors[(2, 0.99)] < errors[(0, 0.99)] / 5  # zero phase alone: 3.3


def test_refined_magnitudes_match_the_input_mel_more_closely(test_mel):
    """`refine_magnitudes` replaces the smooth NNLS magnitudes by the waveform's own, refitted to the mel bands."""
    plain = active_frame_error(test_mel, GriffinLimVocoder()(test_mel))
    refined_vocoder = GriffinLimVocoder(refine_magnitudes=True)
    refined = refined_vocoder(test_mel)
    # 0.26 → 0.21 on this glide (its weak bins between partials dominate both); 0.072 → 0.038 on the ten recordings.
    assert active_frame_error(test_mel, refined) < 0.9 * plain
    torch.testing.assert_close(refined, refined_vocoder(test_mel), rtol=0, atol=0)  # still deterministic
    # match_mel sets each band's level and keeps the shape within it: a spectrum already at the target is unchanged
    # (the bins outside every mel band, DC and Nyquist, carry nothing of the mel and are zeroed).
    magnitudes = torch.rand(1, 513, 7, generator=torch.Generator().manual_seed(0)) + 0.1
    target = refined_vocoder.mel_basis @ magnitudes
    covered = refined_vocoder.mel_basis.sum(dim=0) > 0
    assert covered.sum() == 511
    matched = refined_vocoder.match_mel(magnitudes, target)
    torch.testing.assert_close(matched[:, covered], magnitudes[:, covered])
    assert (matched[:, ~covered] == 0).all()
    torch.testing.assert_close(
        refined_vocoder.match_mel(magnitudes, 4 * target)[:, covered], 4 * magnitudes[:, covered]
    )


def test_mel_inversion_is_a_nonnegative_least_squares_fit(test_mel):
    vocoder = GriffinLimVocoder()
    mel_magnitudes = test_mel.exp().transpose(1, 2)
    fitted = vocoder.mel_to_linear_magnitudes(mel_magnitudes)
    assert fitted.shape == (1, 513, FRAMES) and (fitted >= 0).all()
    pseudo_inverse = (torch.linalg.pinv(vocoder.mel_basis) @ mel_magnitudes).clamp(min=1e-7)

    def residual(magnitudes):
        return torch.linalg.norm(vocoder.mel_basis @ magnitudes - mel_magnitudes).item()

    assert residual(fitted) < 0.5 * residual(pseudo_inverse)


def test_deterministic_batched_and_float32_output(test_mel):
    vocoder = GriffinLimVocoder(num_iterations=8)
    batch = torch.cat([test_mel, test_mel.flip(1)])
    batched = vocoder(batch)
    torch.testing.assert_close(batched, vocoder(batch), rtol=0, atol=0)
    # Phases of near-silent bins are ill-defined, so float rounding (batched BLAS, float16 input) changes the fine
    # structure of the waveform: what must not change is how faithful it is to the input spectrogram.
    error = active_frame_error(batch, batched)
    unbatched = vocoder(test_mel.flip(1)[0])
    assert unbatched.shape == (FRAMES * 160,)
    assert active_frame_error(test_mel.flip(1), unbatched[None]) == pytest.approx(
        active_frame_error(test_mel.flip(1), batched[1:]), abs=0.02
    )
    from_half = vocoder.to(torch.float16)(batch.half())  # a float16 pipeline: float16 buffers and input
    assert from_half.dtype == torch.float32  # computed and returned in float32
    # float16 copies of the filterbank and window cost a little in the weakest bins (0.38 against 0.34 here).
    assert active_frame_error(batch, from_half) == pytest.approx(error, abs=0.06)


def test_bad_input_and_config_are_refused():
    with pytest.raises(ValueError, match="shape"):
        GriffinLimVocoder()(torch.zeros(1, 10, 80))
    with pytest.raises(ValueError, match="momentum"):
        GriffinLimVocoder(momentum=1.0)


def test_save_and_load(tmp_path, test_mel):
    vocoder = GriffinLimVocoder(num_iterations=4)
    vocoder.save_pretrained(tmp_path / "vocoder")
    assert json.loads((tmp_path / "vocoder" / "config.json").read_text())["_class_name"] == "GriffinLimVocoder"
    for loaded in (GriffinLimVocoder.from_pretrained(tmp_path / "vocoder"), load_vocoder(tmp_path)):
        assert isinstance(loaded, GriffinLimVocoder) and loaded.config.num_iterations == 4
        torch.testing.assert_close(loaded(test_mel), vocoder(test_mel))


def test_front_end_and_loader_for_both_vocoders(tmp_path):
    assert vocoder_front_end(GriffinLimVocoder()) == (16000, 160, 64)
    hifigan = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=64,
            upsample_rates=[5, 4, 4, 2],
            upsample_initial_channel=32,
            upsample_kernel_sizes=[10, 8, 8, 4],
        )
    )
    assert vocoder_front_end(hifigan) == (16000, 160, 64)
    hifigan.save_pretrained(tmp_path / "vocoder")
    assert isinstance(load_vocoder(tmp_path), SpeechT5HifiGan)


def tiny_griffin_lim_pipeline() -> ImpactPipeline:
    """The tiny pipeline (1.6 kHz, hop 16, 16 mel bins) with a Griffin-Lim vocoder on its front-end."""
    pipe = tiny_impact_pipeline()
    pipe.register_modules(
        vocoder=GriffinLimVocoder(
            sampling_rate=1600, n_fft=64, hop_length=16, win_length=64, num_mel_bins=16, f_max=800.0, num_iterations=4
        )
    )
    return pipe


def test_pipeline_with_griffin_lim_vocoder_generates_saves_and_loads(tmp_path):
    pipe = tiny_griffin_lim_pipeline()
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"num_inference_steps": 2, "num_diffusion_steps": 2, "generator": torch.Generator().manual_seed(0)}
    audio = pipe("a dog barking", **kwargs).audios
    # The same length as with the tiny HiFi-GAN: 16 latent frames × 4 mel frames × hop 16 at 1.6 kHz = 0.64 s.
    assert audio.shape == (1, 1024) and np.isfinite(audio).all() and np.abs(audio).max() > 0
    assert pipe.seconds_per_latent_frame == pytest.approx(0.04)
    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["vocoder"] == [
        "diffusers_impact",
        "GriffinLimVocoder",
    ]
    reloaded = ImpactPipeline.from_pretrained(tmp_path)
    reloaded.set_progress_bar_config(disable=True)
    assert isinstance(reloaded.vocoder, GriffinLimVocoder)
    kwargs["generator"] = torch.Generator().manual_seed(0)
    np.testing.assert_allclose(reloaded("a dog barking", **kwargs).audios, audio, atol=1e-5)
