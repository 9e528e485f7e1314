# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
VGGish (Hershey et al. 2017), the embedding network of audioldm_eval's FAD (paper App. F.1), and its front-end.

Written from the definitions of torchvggish (github.com/harritaylor/torchvggish: `vggish.py`, `vggish_input.py`,
`mel_features.py`, `vggish_params.py`) as audioldm_eval configures it (evaluation.md §1, FAD): no PCA, no quantisation,
no final ReLU. Module names equal those of the released `vggish-10086976.pth`, which loads with `strict=True`.
"""

import os

import numpy as np
import torch
from torch import nn

from .checkpoints import VGGISH_SHA256, VGGISH_URL, load_checkpoint


# torchvggish `vggish_params.py`.
VGGISH_SAMPLING_RATE = 16000
VGGISH_WINDOW_LENGTH = 400  # STFT_WINDOW_LENGTH_SECONDS 0.025 at 16 kHz
VGGISH_HOP_LENGTH = 160  # STFT_HOP_LENGTH_SECONDS 0.010
VGGISH_FFT_LENGTH = 512  # the next power of two above the window (`mel_features.log_mel_spectrogram`)
VGGISH_MEL_BINS = 64
VGGISH_F_MIN = 125.0
VGGISH_F_MAX = 7500.0
VGGISH_LOG_OFFSET = 0.01
VGGISH_EXAMPLE_FRAMES = 96  # EXAMPLE_WINDOW_SECONDS = EXAMPLE_HOP_SECONDS = 0.96: non-overlapping examples
VGGISH_EMBEDDING_SIZE = 128
# One example needs 96 frames of 400 samples every 160: 400 + 95 · 160 samples.
VGGISH_MIN_SAMPLES = VGGISH_WINDOW_LENGTH + (VGGISH_EXAMPLE_FRAMES - 1) * VGGISH_HOP_LENGTH


def _htk_hz_to_mel(frequencies: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(frequencies, dtype=np.float64) / 700.0)  # HTK mel scale


def vggish_mel_filterbank(
    sampling_rate: int = VGGISH_SAMPLING_RATE,
    n_fft: int = VGGISH_FFT_LENGTH,
    n_mels: int = VGGISH_MEL_BINS,
    f_min: float = VGGISH_F_MIN,
    f_max: float = VGGISH_F_MAX,
) -> np.ndarray:
    """
    VGGish's mel matrix (`mel_features.spectrogram_to_mel_matrix`): triangles that are linear on the HTK mel scale.

    FFT bin k (frequency k·sr/n_fft) sits at mel(f) = 1127·ln(1 + f/700); `n_mels + 2` edges equally spaced in mel
    from `f_min` to `f_max` define triangles of peak 1, interpolated *in mel* (not in Hz as librosa's filters are), with
    no area normalisation; the DC bin gets weight 0.

    Args:
        sampling_rate (`int`, defaults to 16000): Sampling rate of the STFT's input.
        n_fft (`int`, defaults to 512): FFT size.
        n_mels (`int`, defaults to 64): Number of bands.
        f_min (`float`, defaults to 125): Lower edge of the lowest band in Hz.
        f_max (`float`, defaults to 7500): Upper edge of the highest band in Hz.

    Returns:
        `np.ndarray`: float64 weights of shape `(n_fft // 2 + 1, n_mels)`, to post-multiply magnitude frames.

    Example:

    ```py
    >>> from diffusers_impact.evaluation.vggish import vggish_mel_filterbank

    >>> weights = vggish_mel_filterbank()
    >>> weights.shape, float(weights.max()) <= 1.0, float(weights[0].sum())
    ((257, 64), True, 0.0)
    ```
    """
    bin_mels = _htk_hz_to_mel(np.linspace(0.0, sampling_rate / 2.0, n_fft // 2 + 1))
    edges = np.linspace(_htk_hz_to_mel(f_min), _htk_hz_to_mel(f_max), n_mels + 2)
    lower, centre, upper = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
    rising = (bin_mels[:, None] - lower) / (centre - lower)
    falling = (upper - bin_mels[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # torchvggish zeroes the DC bin
    return weights


def _frame(array: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """The `1 + (len − frame_length) // hop_length` complete frames along axis 0 (`mel_features.frame`), as views."""
    windows = np.lib.stride_tricks.sliding_window_view(array, frame_length, axis=0)[::hop_length]
    return np.moveaxis(windows, -1, 1)  # (num_frames, frame_length, ...)


def vggish_log_mel(waveform: np.ndarray) -> np.ndarray:
    """
    VGGish's log-mel spectrogram of a 16 kHz waveform (`mel_features.log_mel_spectrogram`).

    Frames of 400 samples every 160 without padding (the last incomplete frame is dropped), periodic Hann window,
    |rfft| of 512 points (the frame zero-padded at its end), × [`vggish_mel_filterbank`], then `log(mel + 0.01)`.

    Args:
        waveform (`np.ndarray` of shape `(num_samples,)`): Mono audio at 16 kHz, at least 400 samples.

    Returns:
        `np.ndarray`: float64 array of shape `(1 + (num_samples − 400) // 160, 64)`.

    Example:

    ```py
    >>> import numpy as np
    >>> from diffusers_impact.evaluation.vggish import vggish_log_mel

    >>> log_mel = vggish_log_mel(np.zeros(16000))
    >>> log_mel.shape, bool(np.allclose(log_mel, np.log(0.01)))
    ((98, 64), True)
    ```
    """
    waveform = np.asarray(waveform, dtype=np.float64)
    if waveform.ndim != 1 or waveform.shape[0] < VGGISH_WINDOW_LENGTH:
        raise ValueError(f"`waveform` must be 1-D with at least {VGGISH_WINDOW_LENGTH} samples, got {waveform.shape}.")
    frames = _frame(waveform, VGGISH_WINDOW_LENGTH, VGGISH_HOP_LENGTH)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(VGGISH_WINDOW_LENGTH) / VGGISH_WINDOW_LENGTH)  # periodic Hann
    magnitude = np.abs(np.fft.rfft(frames * window, VGGISH_FFT_LENGTH))
    return np.log(magnitude @ vggish_mel_filterbank() + VGGISH_LOG_OFFSET)


def vggish_examples(waveform: np.ndarray) -> torch.Tensor:
    """
    The VGGish input of a 16 kHz waveform: its log-mel cut into non-overlapping 0.96 s examples of 96 × 64.

    As torchvggish's `waveform_to_examples` (`vggish_input.py`) at 16 kHz: [`vggish_log_mel`], then complete
    examples of 96 frames every 96 frames (the remainder is dropped), as float32. A 10 s clip gives 10 examples.

    Args:
        waveform (`np.ndarray` of shape `(num_samples,)`): Mono audio at 16 kHz, at least 15600 samples (0.975 s).

    Returns:
        `torch.Tensor`: float32 tensor of shape `(num_examples, 1, 96, 64)`.

    Example:

    ```py
    >>> import numpy as np
    >>> from diffusers_impact.evaluation.vggish import vggish_examples

    >>> vggish_examples(np.zeros(160000)).shape  # 10 s
    torch.Size([10, 1, 96, 64])
    ```
    """
    waveform = np.asarray(waveform)
    if waveform.ndim != 1 or waveform.shape[0] < VGGISH_MIN_SAMPLES:
        raise ValueError(
            f"VGGish needs a 1-D waveform of at least {VGGISH_MIN_SAMPLES} samples (one 0.96 s example), got shape "
            f"{waveform.shape}."
        )
    examples = _frame(vggish_log_mel(waveform), VGGISH_EXAMPLE_FRAMES, VGGISH_EXAMPLE_FRAMES)
    return torch.from_numpy(np.ascontiguousarray(examples, dtype=np.float32))[:, None]


class VGGish(nn.Module):
    """
    VGGish as audioldm_eval's FAD runs it: 96 × 64 log-mel examples → 128-d embeddings before the final ReLU.

    Four VGG stages (`features`: 3×3 convolutions with 64, 128, 256-256, 512-512 channels, ReLU, 2×2 max pooling)
    and three linear layers (`embeddings`: 12288 → 4096 → 4096 → 128 with ReLU between). torchvggish ends with one more
    ReLU and a PCA post-processor; `FrechetAudioDistance(use_pca=False, use_activation=False)` drops both, so the
    output is the last linear layer's.

    Example:

    ```py
    >>> import numpy as np
    >>> import torch
    >>> from diffusers_impact.evaluation.vggish import VGGish, vggish_examples

    >>> model = VGGish().eval()  # random weights; VGGish.from_pretrained() loads the released checkpoint
    >>> with torch.no_grad():
    ...     embeddings = model(vggish_examples(np.random.default_rng(0).standard_normal(32000) * 0.1))
    >>> embeddings.shape  # 2 s: two examples
    torch.Size([2, 128])
    ```
    """

    def __init__(self):
        super().__init__()
        layers, in_channels = [], 1
        for stage in ([64], [128], [256, 256], [512, 512]):
            for out_channels in stage:
                layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
                in_channels = out_channels
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096),
            nn.ReLU(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, VGGISH_EMBEDDING_SIZE),
        )

    @classmethod
    def from_pretrained(cls, checkpoint: str | os.PathLike = VGGISH_URL, sha256: str | None = None) -> "VGGish":
        """
        Builds the model and loads torchvggish's released weights with `strict=True`, in evaluation mode.

        Args:
            checkpoint (`str` or `os.PathLike`, defaults to the GitHub release URL of `vggish-10086976.pth`): A local
                file, a URL or `hf://<repo_id>/<file>` (see [`~evaluation.checkpoints.load_checkpoint`]).
            sha256 (`str`, *optional*): SHA-256 of a checkpoint of your own. Without it, the file must be the official
                `vggish-10086976.pth` ([`~evaluation.checkpoints.VGGISH_SHA256`]).

        Raises:
            `FileNotFoundError` or `OSError`: The checkpoint is missing or cannot be downloaded; the message names
                the GitHub release URL.
            `ValueError`: The file's SHA-256 is not the official one (or `sha256`).

        Example:

        ```py
        >>> from diffusers_impact.evaluation.vggish import VGGish

        >>> try:
        ...     VGGish.from_pretrained("checkpoints/vggish-10086976.pth")
        ... except FileNotFoundError as error:
        ...     print(error)
        VGGish checkpoint not found at 'checkpoints/vggish-10086976.pth'. Download it from
        https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth and pass the local path
        (or pass the URL).
        ```
        """
        state_dict = load_checkpoint(checkpoint, "VGGish", VGGISH_URL, VGGISH_SHA256, sha256)
        model = cls()
        model.load_state_dict(state_dict, strict=True)
        return model.eval()

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """
        Args:
            examples (`torch.Tensor` of shape `(num_examples, 1, 96, 64)`): From [`vggish_examples`].

        Returns:
            `torch.Tensor` of shape `(num_examples, 128)`: the embeddings (pre-ReLU).
        """
        hidden_states = self.features(examples)  # (num_examples, 512, 6, 4)
        # torchvggish flattens channels last, (6, 4, 512), the layout of the TensorFlow weights
        hidden_states = hidden_states.permute(0, 2, 3, 1).reshape(hidden_states.shape[0], -1)
        return self.embeddings(hidden_states)
