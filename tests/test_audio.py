"""AudioLDM's front-end (diffusers_impact.audio) against librosa and on known signals."""

import io
import math

import librosa
import numpy as np
import pytest
import soundfile
import torch

from diffusers_impact import audio
from diffusers_impact.audio import (
    HOP_LENGTH,
    SAMPLING_RATE,
    SEGMENT_FRAMES,
    SEGMENT_SAMPLES,
    SEGMENT_SECONDS,
    AudioDecodeError,
    is_silent,
    load_audio,
    mel_filterbank,
    mel_spectrogram,
    prepare_segment,
    waveform_to_latents,
)
from diffusers_impact.testing_utils import tiny_vae


LOG_FLOOR = math.log(1e-5)


def sines(frequencies, amplitudes, num_samples, sampling_rate=SAMPLING_RATE, dtype=np.float32):
    time = np.arange(num_samples) / sampling_rate
    return sum(a * np.sin(2 * np.pi * f * time) for f, a in zip(frequencies, amplitudes)).astype(dtype)


def sweep(num_samples, dtype=np.float32):
    return (0.4 * librosa.chirp(fmin=50, fmax=7900, sr=SAMPLING_RATE, length=num_samples)).astype(dtype)


def librosa_log_mel(waveform):
    """AudioLDM's recipe spelled with librosa: log(clip(mel_basis @ |STFT|, 1e-5)), as (frames, mels)."""
    basis = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=0, fmax=8000, dtype=waveform.dtype)
    magnitude = np.abs(
        librosa.stft(
            waveform, n_fft=1024, hop_length=160, win_length=1024, window="hann", center=True, pad_mode="reflect"
        )
    )
    return np.log(np.clip(basis @ magnitude, 1e-5, None)).T


def peak_frequency(waveform, sampling_rate=SAMPLING_RATE):
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    return np.fft.rfftfreq(len(waveform), 1 / sampling_rate)[spectrum.argmax()]


def wav_bytes(waveform, sampling_rate, subtype="FLOAT", format="WAV"):
    buffer = io.BytesIO()
    soundfile.write(buffer, waveform, sampling_rate, subtype=subtype, format=format)
    return buffer.getvalue()


def test_segment_constants_are_consistent():
    assert SEGMENT_SAMPLES == SEGMENT_FRAMES * HOP_LENGTH == round(SEGMENT_SECONDS * SAMPLING_RATE) == 163840


# --- mel filterbank and spectrogram -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sampling_rate, n_fft, n_mels, f_min, f_max",
    [(16000, 1024, 64, 0.0, 8000.0), (22050, 2048, 80, 30.0, 11025.0), (16000, 512, 40, 125.0, 7500.0)],
)
def test_mel_filterbank_matches_librosa(sampling_rate, n_fft, n_mels, f_min, f_max):
    reference = librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max)
    basis = mel_filterbank(sampling_rate=sampling_rate, n_fft=n_fft, n_mels=n_mels, f_min=f_min, f_max=f_max)
    assert basis.shape == (n_mels, n_fft // 2 + 1) and basis.dtype == np.float32
    np.testing.assert_allclose(basis, reference, rtol=0, atol=1e-7)


def test_mel_filterbank_has_slaney_unit_area():
    # Slaney normalisation: every triangle has area 1 in Hz (up to the sampling of the triangle on the bin grid).
    basis = mel_filterbank()
    bin_spacing = 16000 / 1024
    np.testing.assert_allclose(basis.sum(axis=1) * bin_spacing, 1.0, rtol=0.02)
    assert np.all(basis >= 0)


@pytest.mark.parametrize("signal", ["two_sines", "sweep"])
def test_mel_spectrogram_matches_librosa_float64(signal):
    # In float64 both compute the same formula; only rounding differs.
    if signal == "two_sines":
        waveform = sines([440, 3000], [0.3, 0.2], 48000, dtype=np.float64)
    else:
        waveform = sweep(48000, np.float64)
    mel = mel_spectrogram(torch.from_numpy(waveform)[None], num_frames=None)
    assert mel.dtype == torch.float64 and mel.shape == (1, 1, 48000 // 160 + 1, 64)
    np.testing.assert_allclose(mel[0, 0].numpy(), librosa_log_mel(waveform), rtol=0, atol=1e-6)


@pytest.mark.parametrize("signal", ["two_sines", "sweep"])
def test_mel_spectrogram_matches_librosa_float32(signal):
    waveform = sines([440, 3000], [0.3, 0.2], SEGMENT_SAMPLES) if signal == "two_sines" else sweep(SEGMENT_SAMPLES)
    mel = mel_spectrogram(torch.from_numpy(waveform)[None])
    assert mel.dtype == torch.float32 and mel.shape == (1, 1, SEGMENT_FRAMES, 64)
    ours = mel[0, 0].numpy().astype(np.float64)
    reference = librosa_log_mel(waveform)[:SEGMENT_FRAMES].astype(np.float64)
    # float32 FFT rounding is ~1e-7 of the frame's energy: exact to 1e-4 in log wherever the band holds energy,
    # and to 1e-7 absolute in linear mel near the 1e-5 floor (where the log magnifies rounding).
    energetic = reference > math.log(1e-3)
    assert energetic.mean() > 0.05
    np.testing.assert_allclose(ours[energetic], reference[energetic], rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.exp(ours), np.exp(reference), rtol=1e-4, atol=1e-7)


def test_mel_spectrogram_sine_lands_in_its_band():
    # A 1 kHz sine: the loudest band is the one whose triangle peaks nearest 1 kHz.
    mel = mel_spectrogram(torch.from_numpy(sines([1000], [0.5], 16000))[None], num_frames=None)[0, 0]
    centres = librosa.mel_frequencies(n_mels=66, fmin=0, fmax=8000)[1:-1]
    loudest = mel[50].argmax().item()
    assert abs(centres[loudest] - 1000) == min(abs(centres - 1000))


def test_mel_spectrogram_shapes_crop_and_batch():
    waveforms = torch.from_numpy(np.stack([sines([440], [0.3], SEGMENT_SAMPLES), sweep(SEGMENT_SAMPLES)]))
    full = mel_spectrogram(waveforms, num_frames=None)
    assert full.shape == (2, 1, 1025, 64)  # centred STFT: samples / hop + 1 frames
    cropped = mel_spectrogram(waveforms)
    assert cropped.shape == (2, 1, 1024, 64)
    # AudioLDM keeps the first 1024 frames (the mel matrix product runs on other shapes: rounding may differ)
    torch.testing.assert_close(cropped, full[:, :, :1024], rtol=0, atol=1e-5)
    assert mel_spectrogram(waveforms[:1]).shape == (1, 1, 1024, 64)
    torch.testing.assert_close(mel_spectrogram(waveforms[1:]), cropped[1:], rtol=0, atol=1e-5)
    assert torch.equal(mel_spectrogram(torch.zeros(1, SEGMENT_SAMPLES)), torch.full((1, 1, 1024, 64), LOG_FLOOR))


def test_mel_spectrogram_pads_with_the_value_of_silence():
    one_second = sines([440, 3000], [0.3, 0.2], 16000)
    padded = mel_spectrogram(torch.from_numpy(one_second)[None])
    assert padded.shape == (1, 1, 1024, 64)
    unpadded = mel_spectrogram(torch.from_numpy(one_second)[None], num_frames=None)
    assert unpadded.shape[2] == 101
    torch.testing.assert_close(padded[:, :, :101], unpadded, rtol=0, atol=1e-5)
    assert torch.all(padded[:, :, 101:] == torch.tensor(LOG_FLOOR))
    # Same as zero-padding the waveform (AudioLDM's order) once the STFT window has left the audio.
    zero_padded = np.zeros(SEGMENT_SAMPLES, dtype=np.float32)
    zero_padded[:16000] = one_second
    from_padded_waveform = mel_spectrogram(torch.from_numpy(zero_padded)[None])
    torch.testing.assert_close(from_padded_waveform[:, :, 104:], padded[:, :, 104:], rtol=0, atol=1e-5)


def test_mel_spectrogram_cache_survives_inference_mode():
    audio._cached_mel_basis.cache_clear()
    audio._cached_window.cache_clear()
    with torch.inference_mode():  # the first call fills the cache
        mel_spectrogram(torch.zeros(1, 16000))
    waveform = torch.from_numpy(sines([440], [0.3], 16000))[None].requires_grad_()
    mel_spectrogram(waveform).sum().backward()  # the cached basis and window can be saved for backward
    assert waveform.grad.abs().sum() > 0
    mel_spectrogram(waveform.detach().double())
    assert audio._cached_mel_basis.cache_info().currsize == 2  # one basis per (device, dtype)


def test_mel_spectrogram_rejects_bad_shapes():
    with pytest.raises(ValueError, match="batch_size, num_samples"):
        mel_spectrogram(torch.zeros(16000))
    with pytest.raises(ValueError, match="512"):
        mel_spectrogram(torch.zeros(1, 400))


# --- prepare_segment ----------------------------------------------------------------------------------------------


def test_prepare_segment_crops_with_the_generator():
    waveform = np.random.default_rng(123).normal(size=200000).astype(np.float32) + 0.25
    num_samples = 50000
    segment = prepare_segment(waveform, num_samples=num_samples, generator=np.random.default_rng(7))
    start = int(np.random.default_rng(7).integers(0, 200000 - num_samples + 1))
    window = waveform[start : start + num_samples].astype(np.float64)
    expected = (window - window.mean()) / np.abs(window - window.mean()).max() * 0.5
    assert segment.dtype == np.float32 and segment.shape == (num_samples,)
    np.testing.assert_allclose(segment, expected, rtol=0, atol=1e-7)

    again = prepare_segment(waveform, num_samples=num_samples, generator=np.random.default_rng(7))
    assert np.array_equal(segment, again)
    other = prepare_segment(waveform, num_samples=num_samples, generator=np.random.default_rng(8))
    assert not np.allclose(segment, other)
    # Without a generator the window starts at sample 0.
    first = waveform[:num_samples].astype(np.float64) - waveform[:num_samples].mean(dtype=np.float64)
    np.testing.assert_allclose(
        prepare_segment(waveform, num_samples=num_samples), first / np.abs(first).max() * 0.5, rtol=0, atol=1e-7
    )


def test_prepare_segment_crop_starts_cover_the_waveform():
    noise = np.random.default_rng(1).normal(size=1000)
    generator = np.random.default_rng(0)
    crops = {prepare_segment(noise, num_samples=10, generator=generator).tobytes() for _ in range(50)}
    assert len(crops) > 45  # one generator, a new start at every call
    # Both extreme starts are reachable: a waveform one sample too long gives two distinct crops.
    crops = {prepare_segment(noise[:11], num_samples=10, generator=generator).tobytes() for _ in range(50)}
    assert len(crops) == 2


def test_prepare_segment_normalises_then_pads():
    waveform = sines([300], [0.05], 1000).astype(np.float64) + 0.3
    waveform[10] = -0.9  # a negative peak after centring
    segment = prepare_segment(waveform, num_samples=4000, generator=np.random.default_rng(0))
    assert segment.shape == (4000,) and segment.dtype == np.float32
    assert np.abs(segment).max() == 0.5  # exactly
    assert segment[10] == -0.5
    assert abs(segment[:1000].astype(np.float64).mean()) < 1e-7  # zero mean before the padding
    assert np.all(segment[1000:] == 0)
    centred = waveform - waveform.mean()
    np.testing.assert_allclose(segment[:1000], centred / np.abs(centred).max() * 0.5, rtol=0, atol=1e-7)


def test_prepare_segment_exact_length_constant_and_empty():
    waveform = sines([440], [0.1], SEGMENT_SAMPLES)
    generator = np.random.default_rng(0)
    state = generator.bit_generator.state
    segment = prepare_segment(waveform, generator=generator)
    assert segment.shape == (SEGMENT_SAMPLES,) and np.abs(segment).max() == 0.5
    assert generator.bit_generator.state == state  # nothing to crop, nothing drawn
    assert np.array_equal(prepare_segment(np.full(100, 0.3), num_samples=200), np.zeros(200, dtype=np.float32))
    assert np.array_equal(prepare_segment(np.zeros(0), num_samples=8), np.zeros(8, dtype=np.float32))
    with pytest.raises(ValueError, match="1-D"):
        prepare_segment(np.zeros((2, 100)))


# --- load_audio ---------------------------------------------------------------------------------------------------


def test_load_audio_averages_channels(tmp_path):
    left, right = sines([440], [0.4], 8000), sines([1000], [0.2], 8000) + 0.1
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    waveform = load_audio(path)
    assert waveform.dtype == np.float32 and waveform.shape == (8000,)
    np.testing.assert_allclose(waveform, (left + right) / 2, rtol=0, atol=1e-7)
    assert np.array_equal(load_audio(str(path)), waveform)


@pytest.mark.parametrize("file_rate", [44100, 22050, 48000, 8000])
def test_load_audio_resamples_and_keeps_the_frequency(tmp_path, file_rate):
    path = tmp_path / f"tone_{file_rate}.wav"
    soundfile.write(path, sines([1000], [0.5], 2 * file_rate, sampling_rate=file_rate), file_rate, subtype="PCM_16")
    waveform = load_audio(path)
    assert waveform.shape == (32000,)  # 2 s at 16 kHz
    assert abs(peak_frequency(waveform) - 1000) <= 1.0
    # The polyphase filter keeps the amplitude of an in-band tone (away from the edges).
    assert abs(np.abs(waveform[2000:-2000]).max() - 0.5) < 0.01


def test_load_audio_to_another_rate():
    waveform = load_audio(wav_bytes(sines([440], [0.5], 16000), 16000), sampling_rate=8000)
    assert waveform.shape == (8000,)
    assert abs(peak_frequency(waveform, 8000) - 440) <= 1.0


@pytest.mark.parametrize("format, subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_load_audio_compressed_formats(tmp_path, format, subtype):
    path = tmp_path / f"tone.{format.lower()}"
    soundfile.write(path, sines([1000], [0.5], 32000), 16000, format=format, subtype=subtype)
    waveform = load_audio(path)
    assert abs(len(waveform) - 32000) <= 2304  # lossy codecs may add up to two frames of padding
    assert abs(peak_frequency(waveform) - 1000) <= 1.0
    if format == "FLAC":
        np.testing.assert_allclose(waveform, sines([1000], [0.5], 32000), rtol=0, atol=1 / 32768)


def test_load_audio_bytes_and_datasets_dict(tmp_path):
    tone = sines([440], [0.3], 4000)
    path = tmp_path / "tone.wav"
    soundfile.write(path, tone, 16000, subtype="FLOAT")
    data = path.read_bytes()
    from_path = load_audio(path)
    np.testing.assert_array_equal(load_audio(data), from_path)
    np.testing.assert_array_equal(load_audio(bytearray(data)), from_path)
    np.testing.assert_array_equal(load_audio({"path": str(path), "bytes": None}), from_path)
    # Bytes win over the path (a Hub dataset's path may be a bare file name).
    other = wav_bytes(sines([1000], [0.3], 6000), 16000)
    assert load_audio({"path": str(path), "bytes": other}).shape == (6000,)
    assert load_audio({"path": "not/on/this/disk.wav", "bytes": data}).shape == (4000,)


def test_load_audio_errors_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF this is not a wave file at all" * 10)
    with pytest.raises(AudioDecodeError, match="garbage.wav") as error:
        load_audio(garbage)
    assert error.value.reason == "unreadable" and isinstance(error.value, ValueError)

    zero_bytes = tmp_path / "zero_bytes.wav"
    zero_bytes.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="zero_bytes.wav") as error:
        load_audio(zero_bytes)
    assert error.value.reason == "unreadable"

    no_samples = tmp_path / "no_samples.wav"
    soundfile.write(no_samples, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioDecodeError, match="no_samples.wav.*no samples") as error:
        load_audio(no_samples)
    assert error.value.reason == "empty"

    with pytest.raises(AudioDecodeError, match="missing.wav") as error:
        load_audio(tmp_path / "missing.wav")
    assert error.value.reason == "unreadable"
    with pytest.raises(AudioDecodeError, match="in_dict.wav"):
        load_audio({"path": "in_dict.wav", "bytes": b"junk"})
    with pytest.raises(AudioDecodeError, match="neither"):
        load_audio({"path": None, "bytes": None})


def test_audio_decode_error_pickles_its_reason():
    import pickle

    error = pickle.loads(pickle.dumps(AudioDecodeError("x.wav has no samples", reason="empty")))
    assert error.reason == "empty" and str(error) == "x.wav has no samples"


def test_is_silent():
    assert is_silent(np.zeros(16000))
    assert is_silent(np.full(16000, 5e-5))
    assert not is_silent(np.full(16000, 2e-4))
    assert not is_silent(np.r_[np.zeros(100), -0.5])  # the peak is an absolute value
    assert is_silent(np.full(10, 0.01), threshold=0.1)
    assert is_silent(np.zeros(0))
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(AudioDecodeError, match="NaN or infinite"):
            is_silent(np.r_[np.zeros(10), bad])


# --- waveform_to_latents ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return tiny_vae(scaling_factor=0.75).eval()


@torch.no_grad()
def test_waveform_to_latents(vae):
    waveforms = torch.from_numpy(np.stack([sines([440, 3000], [0.3, 0.2], SEGMENT_SAMPLES), sweep(SEGMENT_SAMPLES)]))
    latents = waveform_to_latents(vae, waveforms, generator=torch.Generator().manual_seed(0))
    assert latents.shape == (2, 8, 256, 16)

    # The sample is the posterior's mean + std · N(0, 1) drawn from the generator (hence deterministic per seed),
    # times the scaling factor.
    posterior = vae.encode(mel_spectrogram(waveforms)).latent_dist
    noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(latents, (posterior.mean + posterior.std * noise) * 0.75)
    other_noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(latents, (posterior.mean + posterior.std * other_noise) * 0.75)

    # sample_posterior=False: the mode, whatever the generator.
    mode = waveform_to_latents(vae, waveforms, generator=torch.Generator().manual_seed(5), sample_posterior=False)
    torch.testing.assert_close(mode, posterior.mode() * 0.75)
    assert not torch.allclose(mode, latents)


@torch.no_grad()
def test_waveform_to_latents_other_lengths(vae):
    waveform = torch.from_numpy(sines([440], [0.3], 16000))[None]
    latents = waveform_to_latents(vae, waveform, sample_posterior=False, num_frames=100)
    assert latents.shape == (1, 8, 25, 16)
    torch.testing.assert_close(latents, vae.encode(mel_spectrogram(waveform, 100)).latent_dist.mode() * 0.75)
    # Sampling is deterministic per seed.
    samples = [
        waveform_to_latents(vae, waveform, torch.Generator().manual_seed(seed), num_frames=100) for seed in (3, 3, 4)
    ]
    assert torch.equal(samples[0], samples[1]) and not torch.allclose(samples[0], samples[2])
