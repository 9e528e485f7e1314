# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
Audio input for [`ImpactPipeline`]: which latent tokens a call generates and which it is given (inpainting,
continuation, variations, frequency inpainting, long-form windows), and how the user's samples are put back into the
output. The pipeline calls these; they hold no model.

A latent token covers `patch_size` latent frames and `patch_size` latent rows: in time a *column* of
`seconds_per_column` (AudioLDM: 0.16 s; the embedded default model: 0.32 s), in frequency one of `num_bands` bands
(AudioLDM: 4; the default model: 2), band 0 the lowest. Regions are exact at that grid: a column that overlaps a region
at all is generated, and outside the region's exact bounds the input's own samples are spliced back
([`splice_input`]), so a region between grid lines costs only generation, never kept audio.
"""

import math

import numpy as np
import scipy.signal
import torch


# Crossfade between kept input samples and generated audio at each boundary: equal-power (sin/cos) over 50 ms, 2.5
# periods of a 50 Hz hum and short against a 0.16 s token. Equal power because the generated waveform's phase is the
# vocoder's, not the input's (the two are uncorrelated), so that the level does not dip in the middle of the fade.
CROSSFADE_S = 0.05
# Frequency splicing (`mask_bands`) is done on an STFT: 64 ms Hann windows with 75 % overlap (perfect reconstruction).
BAND_SPLICE_NPERSEG = 1024


def region_columns(starts: list[float], ends: list[float], seconds_per_column: float, num_columns: int) -> np.ndarray:
    """`(num_columns,)` bool: the token columns that overlap any region `[start, end)` (in seconds)."""
    selected = np.zeros(num_columns, dtype=bool)
    for start, end in zip(starts, ends):
        first = math.floor(start / seconds_per_column + 1e-9)
        last = math.ceil(end / seconds_per_column - 1e-9)  # exclusive
        selected[first : max(last, first + 1)] = True
    return selected


def window_starts(num_columns: int, window_columns: int, overlap_columns: int) -> list[int]:
    """
    First column of each generation window over `num_columns` columns: windows of `window_columns` columns, each
    starting `window_columns − overlap_columns` after the previous one, the last one ending exactly at the end (its
    overlap with the one before may be larger). One window at 0 when everything fits.

    Example:

    ```py
    >>> from diffusers_impact.pipelines.audio_input import window_starts

    >>> window_starts(40, 16, 8)
    [0, 8, 16, 24]
    >>> window_starts(10, 16, 8)
    [0]
    ```
    """
    if num_columns <= window_columns:
        return [0]
    stride = window_columns - overlap_columns
    starts = list(range(0, num_columns - window_columns, stride))
    return starts + [num_columns - window_columns]


def _ramp(length: int) -> np.ndarray:
    """`length` values rising from 0 (excluded) towards 1 (excluded): the crossfade's position."""
    return (np.arange(length, dtype=np.float64) + 0.5) / length


def input_weights(
    num_samples: int,
    input_samples: int,
    generated_spans: list[tuple[int, int]],
    crossfade_samples: int,
) -> np.ndarray:
    """
    `(num_samples,)` in [0, 1]: how much of the output at each sample is the input (1) or generated (0), before the
    equal-power crossfade is applied ([`splice_input`]).

    The input is kept on `[0, input_samples)` except in `generated_spans` (sample ranges); everything after the input
    is generated. Each boundary gets a linear ramp of `crossfade_samples` (at most half the generated span) placed
    inside the generated span, so that every kept sample stays exactly the input's, except at the end of a continued
    input, where nothing of the input lies beyond: there the ramp takes the input's last `crossfade_samples`.
    """
    keep = np.zeros(num_samples, dtype=np.float64)
    keep[:input_samples] = 1.0
    for start, end in generated_spans:
        keep[start:end] = 0.0
    weights = keep.copy()
    # Maximal runs of generated samples, as [start, end) pairs.
    changes = np.flatnonzero(np.diff(np.concatenate([[1.0], keep, [1.0]])))
    for start, end in zip(changes[0::2], changes[1::2]):
        continues_input = start == input_samples and start > 0
        fade = min(crossfade_samples, (end - start) // 2 if not continues_input else start)
        if fade <= 0:
            continue
        if continues_input:  # the input's own last samples fade out
            weights[start - fade : start] = _ramp(fade)[::-1]
        elif start > 0:  # fade out the input at the start of the generated span
            weights[start : start + fade] = _ramp(fade)[::-1]
        if end < min(num_samples, input_samples) and not continues_input:  # fade the input back in
            weights[end - fade : end] = _ramp(fade)
    return weights


def splice_input(input_waveform: np.ndarray, generated: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """
    The output waveform: `generated` where `weights` is 0, exactly `input_waveform` where it is 1, and an equal-power
    crossfade (gains sin(π/2·w) and cos(π/2·w)) in between. `input_waveform` is zero-padded to the output length.
    """
    padded = np.zeros_like(generated)
    length = min(input_waveform.shape[-1], generated.shape[-1])
    padded[..., :length] = input_waveform[..., :length]
    input_gain = np.where(weights >= 1, 1.0, np.sin(np.pi / 2 * weights))
    generated_gain = np.where(weights >= 1, 0.0, np.cos(np.pi / 2 * weights))
    return np.where(weights >= 1, padded, input_gain * padded + generated_gain * generated)


def band_keep_weights(kept_mel_bins: np.ndarray, mel_filters: np.ndarray, sampling_rate: int) -> np.ndarray:
    """
    Per STFT bin (`BAND_SPLICE_NPERSEG // 2 + 1` of them): 1 where the frequency belongs to a kept mel bin, 0 where
    to a generated one, linear between the centre frequencies of two neighbouring mel bins on either side of a band
    edge. `kept_mel_bins` is `(num_mel_bins,)` bool; `mel_filters` the front-end's filter bank `(mels, fft bins)`.
    """
    filter_frequencies = np.linspace(0, sampling_rate / 2, mel_filters.shape[1])
    centres = filter_frequencies[np.argmax(mel_filters, axis=1)]
    frequencies = np.linspace(0, sampling_rate / 2, BAND_SPLICE_NPERSEG // 2 + 1)
    return np.interp(frequencies, centres, kept_mel_bins.astype(np.float64))


def splice_bands(input_waveform: np.ndarray, generated: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """
    `generated` `(..., samples)` with its kept frequencies replaced by the input's: STFT of both (Hann, `BAND_SPLICE_NPERSEG`, 75 %
    overlap), `keep · X_input + (1 − keep) · X_generated` per frequency bin, inverse STFT. `input_waveform` is
    zero-padded to the output length; where `keep` is 1 everywhere this returns the input (to float precision).
    """
    padded = np.zeros_like(generated)
    length = min(input_waveform.shape[-1], generated.shape[-1])
    padded[..., :length] = input_waveform[..., :length]
    overlap = BAND_SPLICE_NPERSEG * 3 // 4
    stft = [
        scipy.signal.stft(signal, nperseg=BAND_SPLICE_NPERSEG, noverlap=overlap)[2] for signal in (padded, generated)
    ]
    mixed = keep[:, None] * stft[0] + (1 - keep[:, None]) * stft[1]
    spliced = scipy.signal.istft(mixed, nperseg=BAND_SPLICE_NPERSEG, noverlap=overlap)[1]
    return spliced[..., : generated.shape[-1]]


def stitch_mel_windows(windows: list[tuple[int, torch.Tensor]], num_frames: int) -> torch.Tensor:
    """
    One log-mel spectrogram `(B, 1, num_frames, mels)` from overlapping windows `(first frame, (B, 1, frames, mels))`
    in order: over each overlap, a linear crossfade from the earlier window to the later one (both decode the same
    latent tokens there, so they agree up to the VAE decoder's edge effects).
    """
    first_mel = windows[0][1]
    shape = (first_mel.shape[0], 1, num_frames, first_mel.shape[-1])
    stitched = first_mel.new_zeros(shape)
    written = 0
    for start, mel in windows:
        end = min(start + mel.shape[2], num_frames)
        mel = mel[:, :, : end - start]
        overlap = max(0, written - start)
        if overlap:
            fade = torch.from_numpy(_ramp(overlap)).to(mel)[:, None]
            stitched[:, :, start:written] = torch.lerp(stitched[:, :, start:written], mel[:, :, :overlap], fade)
        stitched[:, :, start + overlap : end] = mel[:, :, overlap:]
        written = max(written, end)
    return stitched
