# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
AudioLDM's audio front-end: decoding, 10.24 s segments, the 64-bin log-mel spectrogram and VAE latents.

This is the one implementation used by training, latent pre-computation, evaluation and any audio-input feature.
Constants and the order of operations follow AudioLDM (haoheliu/AudioLDM `audioldm/utils.py`
`default_audioldm_config`, `audioldm/audio/stft.py`, `audioldm/audio/tools.py`; the training dataset of
haoheliu/AudioLDM-training-finetuning), whose VAE and HiFi-GAN vocoder IMPACT reuses.
"""

import functools
import io
import math
import os
from typing import Any

import numpy as np
import scipy.signal
import soundfile
import torch
from transformers.audio_utils import mel_filter_bank


# AudioLDM `default_audioldm_config`: preprocessing.audio.sampling_rate 16000, stft.filter_length 1024,
# stft.hop_length 160, stft.win_length 1024, mel.n_mel_channels 64, mel.mel_fmin 0, mel.mel_fmax 8000.
SAMPLING_RATE = 16000
HOP_LENGTH = 160
N_FFT = 1024
WIN_LENGTH = 1024
N_MELS = 64
F_MIN = 0.0
F_MAX = 8000.0
# AudioLDM trains on 10.24 s: `target_length` 1024 mel frames × hop 160 = 163840 samples (`wav_to_fbank`).
SEGMENT_SECONDS = 10.24
SEGMENT_SAMPLES = 163840
SEGMENT_FRAMES = 1024
# AudioLDM `dynamic_range_compression`: log(clamp(x, min=1e-5)) (C = 1).
LOG_CLAMP_MIN = 1e-5
# AudioLDM `normalize_wav`: waveforms are centred and peak-normalised to 0.5.
PEAK_AMPLITUDE = 0.5


class AudioDecodeError(ValueError):
    """
    Raised when audio cannot be used: an unreadable or empty file, or a waveform with NaN or infinite values.

    Args:
        message (`str`): What went wrong, naming the file.
        reason (`str`, defaults to `"unreadable"`): `"unreadable"` or `"empty"` (no samples), for callers that count
            skipped examples by cause.

    Example:

    ```py
    >>> from diffusers_impact.audio import AudioDecodeError, load_audio

    >>> try:
    ...     load_audio(b"not audio at all")
    ... except AudioDecodeError as error:
    ...     print(error.reason)
    unreadable
    ```
    """

    def __init__(self, message: str, reason: str = "unreadable"):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):  # keep `reason` through pickling (DataLoader workers)
        return (type(self), (str(self), self.reason))


def _describe_source(source: Any) -> str:
    if isinstance(source, dict):
        if source.get("path"):
            return repr(source["path"])
        return f"<{len(source.get('bytes') or b'')} bytes>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    try:
        return repr(os.fspath(source))
    except TypeError:
        return repr(source)


def load_audio(source: str | os.PathLike | bytes | dict, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """
    Decodes an audio file into a mono float32 waveform at `sampling_rate`.

    Channels are averaged; the sampling rate is changed with a polyphase filter (`scipy.signal.resample_poly`, the
    up/down factors reduced by their gcd). Any format libsndfile reads works (wav, flac, mp3, ogg/vorbis, opus, ...).

    Args:
        source (`str`, `os.PathLike`, `bytes` or `dict`):
            A path, the file's bytes, or a `datasets.Audio(decode=False)` value `{"path": ..., "bytes": ...}`
            (the bytes are used when present, otherwise the path).
        sampling_rate (`int`, defaults to 16000): Output sampling rate.

    Returns:
        `np.ndarray`: float32 waveform of shape `(num_samples,)`.

    Raises:
        [`AudioDecodeError`]: The file cannot be read or holds no samples (`reason` is `"unreadable"` / `"empty"`).

    Example:

    ```py
    >>> import io
    >>> import numpy as np
    >>> import soundfile
    >>> from diffusers_impact.audio import load_audio

    >>> stereo = np.zeros((44100, 2), dtype=np.float32)  # 1 s of stereo at 44.1 kHz
    >>> buffer = io.BytesIO()
    >>> soundfile.write(buffer, stereo, 44100, format="WAV")
    >>> waveform = load_audio(buffer.getvalue())
    >>> waveform.shape, waveform.dtype
    ((16000,), dtype('float32'))
    ```
    """
    name = _describe_source(source)
    if isinstance(source, dict):
        if source.get("bytes") is not None:
            data = source["bytes"]
        elif source.get("path") is not None:
            data = source["path"]
        else:
            raise AudioDecodeError(f"Audio {name} has neither bytes nor a path.")
    else:
        data = source
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = io.BytesIO(bytes(data))

    try:
        samples, file_sampling_rate = soundfile.read(data, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as error:  # all "unreadable"
        raise AudioDecodeError(f"Could not decode audio {name}: {error}") from error
    if samples.size == 0:
        raise AudioDecodeError(f"Audio {name} contains no samples.", reason="empty")

    waveform = resample(samples.mean(axis=1, dtype=np.float32), file_sampling_rate, sampling_rate)
    return np.ascontiguousarray(waveform, dtype=np.float32)


# Audio files libsndfile (>= 1.1) decodes: a training folder without metadata and an evaluation folder list these.
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".au", ".caf", ".w64", ".rf64")


def resample(waveform: np.ndarray, sampling_rate: int, target_sampling_rate: int) -> np.ndarray:
    """
    Change a waveform's sampling rate along its last axis with a polyphase filter (`scipy.signal.resample_poly`, the
    ratio reduced by the rates' greatest common divisor); the waveform itself where the rates are equal. The one
    resampler of the package: training data, evaluation and the CLAP score all go through it.

    Example:

    ```py
    >>> import numpy as np
    >>> from diffusers_impact.audio import resample

    >>> resample(np.zeros(22050, dtype=np.float32), 22050, 16000).shape
    (16000,)
    ```
    """
    if sampling_rate == target_sampling_rate:
        return waveform
    divisor = math.gcd(int(sampling_rate), int(target_sampling_rate))
    return scipy.signal.resample_poly(waveform, target_sampling_rate // divisor, sampling_rate // divisor, axis=-1)


def is_silent(waveform: np.ndarray, threshold: float = 1e-4) -> bool:
    """
    Whether a waveform's peak absolute amplitude is below `threshold` (an empty waveform is silent).

    The default 1e-4 is AudioLDM's test for a silent crop (`random_segment_wav` retries while
    `max(abs(segment)) <= 1e-4`). Silent clips are skipped in training: peak normalisation cannot scale them.

    Args:
        waveform (`np.ndarray`): Waveform of any shape.
        threshold (`float`, defaults to 1e-4): Peak amplitude below which the waveform counts as silent.

    Raises:
        [`AudioDecodeError`]: The waveform contains NaN or infinite values.

    Example:

    ```py
    >>> import numpy as np
    >>> from diffusers_impact.audio import is_silent

    >>> is_silent(np.full(16000, 1e-5)), is_silent(np.full(16000, 0.01))
    (True, False)
    ```
    """
    waveform = np.asarray(waveform)
    if waveform.size == 0:
        return True
    if not np.isfinite(waveform).all():
        raise AudioDecodeError("Waveform contains NaN or infinite values.")
    return bool(np.abs(waveform).max() < threshold)


def prepare_segment(
    waveform: np.ndarray,
    num_samples: int = SEGMENT_SAMPLES,
    generator: np.random.Generator | None = None,
) -> np.ndarray:
    """
    Cuts a training segment from a 16 kHz waveform the way AudioLDM's dataset does.

    1. A waveform longer than `num_samples` is cropped to a window of `num_samples` starting at a random sample drawn
       from `generator` (`random_segment_wav`); without a generator the window starts at sample 0.
    2. The window is centred and peak-normalised to 0.5: `(x − mean(x)) / max|x − mean(x)| · 0.5` (`normalize_wav`;
       AudioLDM adds 1e-8 to the divisor, here the peak is exactly 0.5 and an all-zero window stays zero).
    3. It is zero-padded at the end to exactly `num_samples` (`pad_wav` with `pad_wav_start_sample` 0).

    Args:
        waveform (`np.ndarray`): Mono waveform of shape `(length,)`.
        num_samples (`int`, defaults to 163840): Segment length (10.24 s at 16 kHz).
        generator (`np.random.Generator`, *optional*): Draws the crop start.

    Returns:
        `np.ndarray`: float32 segment of shape `(num_samples,)`.

    Example:

    ```py
    >>> import numpy as np
    >>> from diffusers_impact.audio import prepare_segment

    >>> waveform = np.sin(np.linspace(0, 2000, 200000)) + 3.0  # 12.5 s with a DC offset
    >>> segment = prepare_segment(waveform, generator=np.random.default_rng(0))
    >>> segment.shape, float(np.abs(segment).max())
    ((163840,), 0.5)
    >>> prepare_segment(np.ones(10), num_samples=4).tolist()  # a constant window centres to zero
    [0.0, 0.0, 0.0, 0.0]
    ```
    """
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:
        raise ValueError(f"`waveform` must be 1-D (samples,), got shape {waveform.shape}.")
    if waveform.shape[0] > num_samples:
        start = 0 if generator is None else int(generator.integers(0, waveform.shape[0] - num_samples + 1))
        waveform = waveform[start : start + num_samples]

    segment = np.zeros(num_samples, dtype=np.float32)
    if waveform.shape[0] > 0:
        centred = waveform.astype(np.float64) - waveform.mean(dtype=np.float64)
        peak = np.abs(centred).max()
        if peak > 0:
            centred = centred / peak * PEAK_AMPLITUDE
        else:
            centred = np.zeros_like(centred)
        segment[: centred.shape[0]] = centred
    return segment


def mel_filterbank(
    sampling_rate: int = SAMPLING_RATE,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    f_min: float = F_MIN,
    f_max: float = F_MAX,
) -> np.ndarray:
    """
    Triangular mel filters on the Slaney mel scale with Slaney area normalisation: the basis AudioLDM builds with
    `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)` (defaults `htk=False`, `norm="slaney"`), from
    `transformers.audio_utils.mel_filter_bank` (equal to librosa's within 1e-9; the tests compare them).

    Args:
        sampling_rate (`int`, defaults to 16000): Sampling rate of the STFT's input.
        n_fft (`int`, defaults to 1024): FFT size.
        n_mels (`int`, defaults to 64): Number of filters.
        f_min (`float`, defaults to 0): Lowest edge in Hz.
        f_max (`float`, defaults to 8000): Highest edge in Hz.

    Returns:
        `np.ndarray`: float32 weights of shape `(n_mels, n_fft // 2 + 1)`.

    Example:

    ```py
    >>> from diffusers_impact.audio import mel_filterbank

    >>> basis = mel_filterbank()
    >>> basis.shape, basis.dtype
    ((64, 513), dtype('float32'))
    ```
    """
    weights = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=f_min,
        max_frequency=f_max,
        sampling_rate=sampling_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return np.ascontiguousarray(weights.T, dtype=np.float32)


# Cached per (device, dtype). Built outside inference mode so that a first call under `torch.inference_mode()` does not
# cache inference tensors that a later call with autograd could not use.
@functools.lru_cache(maxsize=16)
def _cached_mel_basis(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    with torch.inference_mode(False):
        return torch.from_numpy(mel_filterbank()).to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=16)
def _cached_window(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # AudioLDM: scipy `get_window("hann", win_length, fftbins=True)`, i.e. the periodic Hann window.
    with torch.inference_mode(False):
        return torch.hann_window(WIN_LENGTH, periodic=True, device=device, dtype=dtype)


def mel_spectrogram(waveform: torch.Tensor, num_frames: int | None = SEGMENT_FRAMES) -> torch.Tensor:
    """
    AudioLDM's log-mel spectrogram, the input of its VAE.

    `|STFT|` (magnitude, not power; n_fft 1024, hop 160, periodic Hann window of 1024, centred with reflect padding
    of 512) → 64 Slaney mel filters (0–8 kHz) → `log(clamp(·, min=1e-5))`, as `TacotronSTFT.mel_spectrogram`.

    With `num_frames` the time axis is cut to exactly that many frames: a 163840-sample input gives 1025 frames and
    AudioLDM keeps the first 1024 (`_pad_spec`). A shorter spectrogram is padded at the end with log(1e-5), the
    value of silence: AudioLDM pads its log-mel with zeros there, but never reaches that branch because it zero-pads
    the *waveform* to 163840 samples first; padding with log(1e-5) keeps that equivalence (padded frames equal the
    frames of zero-padded audio), while a 0 pad would be a loud, flat spectrum (magnitude 1 in every band).

    Args:
        waveform (`torch.Tensor` of shape `(batch_size, num_samples)`): 16 kHz waveforms, more than 512 samples.
        num_frames (`int`, *optional*, defaults to 1024): Output frames; `None` keeps all `num_samples // 160 + 1`.

    Returns:
        `torch.Tensor` of shape `(batch_size, 1, num_frames, 64)`: float32 (float64 for float64 input).

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact.audio import mel_spectrogram

    >>> mel = mel_spectrogram(torch.zeros(2, 163840))
    >>> mel.shape, round(mel.max().item(), 4)  # silence is log(1e-5) everywhere
    (torch.Size([2, 1, 1024, 64]), -11.5129)
    ```
    """
    if waveform.ndim != 2:
        raise ValueError(f"`waveform` must have shape (batch_size, num_samples), got {tuple(waveform.shape)}.")
    if waveform.shape[1] <= N_FFT // 2:
        raise ValueError(f"`waveform` needs more than {N_FFT // 2} samples for the reflect padding of the STFT.")
    dtype = waveform.dtype if waveform.dtype == torch.float64 else torch.float32
    waveform = waveform.to(dtype)

    spectrum = torch.stft(
        waveform,
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        win_length=WIN_LENGTH,
        window=_cached_window(waveform.device, dtype),
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    magnitude = spectrum.abs()  # (batch, n_fft // 2 + 1, frames)
    mel = torch.matmul(_cached_mel_basis(waveform.device, dtype), magnitude)
    log_mel = torch.log(torch.clamp(mel, min=LOG_CLAMP_MIN)).transpose(1, 2)  # (batch, frames, n_mels)

    if num_frames is not None:
        if log_mel.shape[1] >= num_frames:
            log_mel = log_mel[:, :num_frames]
        else:
            padding = log_mel.new_full(
                (log_mel.shape[0], num_frames - log_mel.shape[1], log_mel.shape[2]), math.log(LOG_CLAMP_MIN)
            )
            log_mel = torch.cat([log_mel, padding], dim=1)
    return log_mel.unsqueeze(1)


def waveform_to_latents(
    vae,
    waveform: torch.Tensor,
    generator: torch.Generator | list[torch.Generator] | None = None,
    sample_posterior: bool = True,
    num_frames: int | None = SEGMENT_FRAMES,
) -> torch.Tensor:
    """
    Encodes 16 kHz waveforms into scaled AudioLDM VAE latents, the space IMPACT generates in.

    [`mel_spectrogram`] → `vae.encode(mel).latent_dist` → a sample (or the mode) × `vae.config.scaling_factor`; the
    pipeline divides by the same factor before decoding. Wrap the call in `torch.no_grad()` when no gradient is needed.

    Args:
        vae ([`~diffusers.AutoencoderKL`]): The AudioLDM VAE (1 input channel, 64 mel bins, downsampling 4).
        waveform (`torch.Tensor` of shape `(batch_size, num_samples)`): Waveforms, e.g. from [`prepare_segment`].
        generator (`torch.Generator` or a list of one per waveform, *optional*): Draws the posterior sample.
        sample_posterior (`bool`, defaults to `True`): Sample the posterior; `False` takes its mode (the mean).
        num_frames (`int`, *optional*, defaults to 1024): Mel frames, as in [`mel_spectrogram`].

    Returns:
        `torch.Tensor` of shape `(batch_size, latent_channels, num_frames // 4, 16)` for the AudioLDM VAE.

    Example:

    ```py
    >>> import torch
    >>> from diffusers import AutoencoderKL
    >>> from diffusers_impact.audio import waveform_to_latents

    >>> vae = AutoencoderKL(
    ...     in_channels=1, out_channels=1, latent_channels=8, block_out_channels=[8, 8, 16],
    ...     down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
    ...     layers_per_block=1, norm_num_groups=4,
    ... )
    >>> with torch.no_grad():
    ...     latents = waveform_to_latents(vae, torch.randn(1, 16000) * 0.1, num_frames=100)
    >>> latents.shape
    torch.Size([1, 8, 25, 16])
    ```
    """
    mel = mel_spectrogram(waveform, num_frames=num_frames)
    mel = mel.to(device=vae.device, dtype=vae.dtype)
    latent_dist = vae.encode(mel).latent_dist
    latents = latent_dist.sample(generator=generator) if sample_posterior else latent_dist.mode()
    return latents * vae.config.scaling_factor
