# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
PANNs Cnn14 (Kong et al. 2020), the AudioSet tagger behind audioldm_eval's FD, KL and IS (paper App. F.1–F.3).

Written from audioldm_eval's `feature_extractors/panns/models.py` configuration and torchlibrosa's definitions
(evaluation.md §1) without torchlibrosa: the module and parameter names equal those of the released checkpoint
`Cnn14_16k_mAP=0.438.pth` (its `"model"` entry), which therefore loads with `strict=True`.
"""

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.utils import BaseOutput
from torch import nn

from ..audio import mel_filterbank
from .checkpoints import PANNS_CNN14_16K_SHA256, PANNS_CNN14_16K_URL, load_checkpoint


# audioldm_eval `EvaluationHelper(16000, ...)`: Cnn14(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64,
# fmin=50, fmax=8000, classes_num=527).
PANNS_SAMPLING_RATE = 16000
PANNS_WINDOW_SIZE = 512
PANNS_HOP_SIZE = 160
PANNS_MEL_BINS = 64
PANNS_F_MIN = 50.0
PANNS_F_MAX = 8000.0
PANNS_NUM_CLASSES = 527
# audioldm_eval Cnn14: LogmelFilterBank(ref=1.0, amin=1e-10, top_db=None).
PANNS_LOG_AMIN = 1e-10


class _ConvolutionalSTFT(nn.Module):
    """torchlibrosa's `STFT`: a reflect-padded (center=True) Conv1d whose kernels are the Hann-windowed DFT basis."""

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft = n_fft
        num_bins = n_fft // 2 + 1
        # librosa `get_window("hann", n_fft, fftbins=True)`: the periodic Hann window
        window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
        angles = 2.0 * np.pi * np.outer(np.arange(num_bins), np.arange(n_fft)) / n_fft
        self.conv_real = nn.Conv1d(1, num_bins, kernel_size=n_fft, stride=hop_length, bias=False)
        self.conv_imag = nn.Conv1d(1, num_bins, kernel_size=n_fft, stride=hop_length, bias=False)
        with torch.no_grad():  # exp(-2πi·k·n/N)·w[n]
            self.conv_real.weight.copy_(torch.from_numpy(np.cos(angles) * window)[:, None, :])
            self.conv_imag.weight.copy_(torch.from_numpy(-np.sin(angles) * window)[:, None, :])
        self.requires_grad_(False)

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padded = F.pad(waveform[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        return self.conv_real(padded), self.conv_imag(padded)  # (batch, n_fft // 2 + 1, frames) each


class PannsSpectrogram(nn.Module):
    """
    Power spectrogram |STFT|² of PANNs (torchlibrosa `Spectrogram`, as librosa's `stft` with `center=True`).

    Periodic Hann window of `n_fft` samples, hop `hop_length`, reflect padding of `n_fft // 2` on both sides, so a
    waveform of `num_samples` gives `num_samples // hop_length + 1` frames. The windowed DFT basis is held by two
    Conv1d layers (`stft.conv_real`, `stft.conv_imag`) as in the checkpoint.

    Args:
        n_fft (`int`, defaults to 512): FFT and window size.
        hop_length (`int`, defaults to 160): Hop between frames.

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact.evaluation.panns import PannsSpectrogram

    >>> power = PannsSpectrogram()(torch.ones(2, 16000))  # a constant: the Hann window's spectrum, (N/2)², (N/4)², 0…
    >>> power.shape, [round(value / 256**2, 4) for value in power[0, 0, 50, :3].tolist()]
    (torch.Size([2, 1, 101, 257]), [1.0, 0.25, 0.0])
    ```
    """

    def __init__(self, n_fft: int = PANNS_WINDOW_SIZE, hop_length: int = PANNS_HOP_SIZE):
        super().__init__()
        self.stft = _ConvolutionalSTFT(n_fft, hop_length)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """`waveform` `(batch, num_samples)` → power spectrogram `(batch, 1, frames, n_fft // 2 + 1)`."""
        real, imag = self.stft(waveform)
        return (real**2 + imag**2).transpose(1, 2)[:, None]


class PannsLogMel(nn.Module):
    """
    Log-mel filterbank of PANNs (torchlibrosa `LogmelFilterBank` with ref 1.0, amin 1e-10, top_db None).

    `10·log10(max(power @ melW, 1e-10))` in dB, with `melW` the Slaney mel filters of
    `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)` (defaults `htk=False`, `norm="slaney"`), transposed to
    `(n_fft // 2 + 1, n_mels)` as in the checkpoint.

    Args:
        sampling_rate (`int`, defaults to 16000): Sampling rate of the audio.
        n_fft (`int`, defaults to 512): FFT size of the spectrogram.
        n_mels (`int`, defaults to 64): Number of mel bands.
        f_min (`float`, defaults to 50): Lowest filter edge in Hz.
        f_max (`float`, defaults to 8000): Highest filter edge in Hz.

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact.evaluation.panns import PannsLogMel

    >>> log_mel = PannsLogMel()
    >>> log_mel.melW.shape
    torch.Size([257, 64])
    >>> log_mel(torch.zeros(1, 1, 3, 257)).unique()  # silence is 10·log10(1e-10) dB
    tensor([-100.])
    ```
    """

    def __init__(
        self,
        sampling_rate: int = PANNS_SAMPLING_RATE,
        n_fft: int = PANNS_WINDOW_SIZE,
        n_mels: int = PANNS_MEL_BINS,
        f_min: float = PANNS_F_MIN,
        f_max: float = PANNS_F_MAX,
    ):
        super().__init__()
        filters = mel_filterbank(sampling_rate=sampling_rate, n_fft=n_fft, n_mels=n_mels, f_min=f_min, f_max=f_max)
        self.melW = nn.Parameter(torch.from_numpy(filters.T.copy()), requires_grad=False)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        """Power spectrogram `(..., n_fft // 2 + 1)` → log-mel in dB `(..., n_mels)`."""
        mel = torch.matmul(power, self.melW)
        # librosa `power_to_db` with ref 1.0: 10·log10(max(S, amin)) − 10·log10(max(amin, ref)), the second term is 0
        return 10.0 * torch.log10(torch.clamp(mel, min=PANNS_LOG_AMIN))


class Cnn14ConvBlock(nn.Module):
    """
    Two 3×3 convolutions (no bias), each followed by BatchNorm and ReLU, then 2-d average pooling.

    Args:
        in_channels (`int`): Input channels.
        out_channels (`int`): Output channels.

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact.evaluation.panns import Cnn14ConvBlock

    >>> Cnn14ConvBlock(1, 4).eval()(torch.randn(2, 1, 10, 8), pool_size=(2, 2)).shape
    torch.Size([2, 4, 5, 4])
    ```
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, hidden_states: torch.Tensor, pool_size: tuple[int, int]) -> torch.Tensor:
        hidden_states = F.relu(self.bn1(self.conv1(hidden_states)))
        hidden_states = F.relu(self.bn2(self.conv2(hidden_states)))
        return F.avg_pool2d(hidden_states, kernel_size=pool_size)  # audioldm_eval Cnn14: pool_type="avg"


@dataclass
class Cnn14Output(BaseOutput):
    """
    Output of [`Cnn14`].

    Args:
        embedding (`torch.Tensor` of shape `(batch_size, 2048)`): `relu(fc1(·))`, audioldm_eval's `"2048"` feature,
            the embedding of FD.
        logits (`torch.Tensor` of shape `(batch_size, num_classes)`): `fc_audioset(relu(fc1(·)))` before the sigmoid,
            audioldm_eval's `"logits"`, the class scores of KL and IS.
    """

    embedding: torch.Tensor
    logits: torch.Tensor


class Cnn14(nn.Module):
    """
    PANNs Cnn14 in evaluation mode, as audioldm_eval runs it: waveform → 2048-d embedding and AudioSet logits.

    Log-mel front-end ([`PannsSpectrogram`], [`PannsLogMel`]) → `bn0` over the mel bands → six conv blocks
    (64 … 2048 channels; 2×2 average pooling, none after the last) → mean over frequency → max + mean over time →
    `fc1` → ReLU (the embedding) → `fc_audioset` (the logits). Dropout and SpecAugment act only in training, which
    evaluation never uses, so they are left out. The defaults are the 16 kHz model of `Cnn14_16k_mAP=0.438.pth`;
    `sampling_rate=32000, window_size=1024, hop_size=320, f_max=14000` is the 32 kHz `Cnn14_mAP=0.431.pth`.

    Args:
        sampling_rate (`int`, defaults to 16000): Sampling rate of the input waveforms.
        window_size (`int`, defaults to 512): STFT window and FFT size.
        hop_size (`int`, defaults to 160): STFT hop.
        mel_bins (`int`, defaults to 64): Mel bands.
        f_min (`float`, defaults to 50): Lowest mel filter edge in Hz.
        f_max (`float`, defaults to 8000): Highest mel filter edge in Hz.
        num_classes (`int`, defaults to 527): AudioSet classes.

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact.evaluation.panns import Cnn14

    >>> model = Cnn14().eval()  # random weights; Cnn14.from_pretrained() loads the released checkpoint
    >>> with torch.no_grad():
    ...     output = model(torch.randn(1, 32000) * 0.1)  # 2 s at 16 kHz
    >>> output.embedding.shape, output.logits.shape, bool((output.embedding >= 0).all())
    (torch.Size([1, 2048]), torch.Size([1, 527]), True)
    ```
    """

    def __init__(
        self,
        sampling_rate: int = PANNS_SAMPLING_RATE,
        window_size: int = PANNS_WINDOW_SIZE,
        hop_size: int = PANNS_HOP_SIZE,
        mel_bins: int = PANNS_MEL_BINS,
        f_min: float = PANNS_F_MIN,
        f_max: float = PANNS_F_MAX,
        num_classes: int = PANNS_NUM_CLASSES,
    ):
        super().__init__()
        self.sampling_rate = sampling_rate
        self.spectrogram_extractor = PannsSpectrogram(n_fft=window_size, hop_length=hop_size)
        self.logmel_extractor = PannsLogMel(sampling_rate, window_size, mel_bins, f_min, f_max)
        self.bn0 = nn.BatchNorm2d(mel_bins)
        channels = [1, 64, 128, 256, 512, 1024, 2048]
        for index in range(6):
            setattr(self, f"conv_block{index + 1}", Cnn14ConvBlock(channels[index], channels[index + 1]))
        self.fc1 = nn.Linear(2048, 2048)
        self.fc_audioset = nn.Linear(2048, num_classes)

    @classmethod
    def from_pretrained(
        cls, checkpoint: str | os.PathLike = PANNS_CNN14_16K_URL, sha256: str | None = None, **kwargs
    ) -> "Cnn14":
        """
        Builds the model and loads a released PANNs checkpoint with `strict=True`, in evaluation mode.

        Args:
            checkpoint (`str` or `os.PathLike`, defaults to the Zenodo URL of `Cnn14_16k_mAP=0.438.pth`): A local
                file, a URL or `hf://<repo_id>/<file>` (see [`~evaluation.checkpoints.load_checkpoint`]).
            sha256 (`str`, *optional*): SHA-256 of a checkpoint of your own. Without it, the file must be the official
                `Cnn14_16k_mAP=0.438.pth` ([`~evaluation.checkpoints.PANNS_CNN14_16K_SHA256`]).
            kwargs: Passed to the constructor (e.g. the 32 kHz configuration).

        Raises:
            `FileNotFoundError` or `OSError`: The checkpoint is missing or cannot be downloaded; the message names
                https://zenodo.org/record/3987831.
            `ValueError`: The file's SHA-256 is not the official one (or `sha256`).

        Example:

        ```py
        >>> from diffusers_impact.evaluation.panns import Cnn14

        >>> try:
        ...     Cnn14.from_pretrained("checkpoints/Cnn14_16k_mAP=0.438.pth")
        ... except FileNotFoundError as error:
        ...     print(error)
        PANNs Cnn14 (16 kHz) checkpoint not found at 'checkpoints/Cnn14_16k_mAP=0.438.pth'. Download it from
        https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth and pass the local path (or pass the URL).
        ```
        """
        state_dict = load_checkpoint(
            checkpoint, "PANNs Cnn14 (16 kHz)", PANNS_CNN14_16K_URL, PANNS_CNN14_16K_SHA256, sha256
        )
        model = cls(**kwargs)
        model.load_state_dict(state_dict, strict=True)
        return model.eval()

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """`waveform` `(batch, num_samples)` → log-mel in dB `(batch, 1, frames, mel_bins)` (before `bn0`)."""
        return self.logmel_extractor(self.spectrogram_extractor(waveform))

    def forward(self, waveform: torch.Tensor, return_dict: bool = True) -> Cnn14Output | tuple[torch.Tensor, ...]:
        """
        Args:
            waveform (`torch.Tensor` of shape `(batch_size, num_samples)`): Audio at `sampling_rate`, at least
                32 frames long (audioldm_eval pads every clip to 2 s).
            return_dict (`bool`, defaults to `True`): Return a [`Cnn14Output`] instead of a tuple.
        """
        hidden_states = self.log_mel(waveform)
        hidden_states = self.bn0(hidden_states.transpose(1, 3)).transpose(1, 3)  # normalise each mel band
        for index in range(1, 7):
            pool_size = (2, 2) if index < 6 else (1, 1)
            hidden_states = getattr(self, f"conv_block{index}")(hidden_states, pool_size=pool_size)
        hidden_states = hidden_states.mean(dim=3)  # over frequency
        hidden_states = hidden_states.max(dim=2).values + hidden_states.mean(dim=2)  # over time
        embedding = F.relu(self.fc1(hidden_states))  # audioldm_eval "2048"
        logits = self.fc_audioset(embedding)  # audioldm_eval "logits" (pre-sigmoid)
        if not return_dict:
            return embedding, logits
        return Cnn14Output(embedding=embedding, logits=logits)
