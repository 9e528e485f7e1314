"""Mel-spectrogram figures (for validation during training, the CLI and the README); matplotlib is a dependency of the package."""

from pathlib import Path

import numpy as np


def save_mel_spectrograms_png(mel_spectrograms, titles: list[str], path: str | Path, columns: int = 2) -> None:
    """
    Save log-mel spectrograms `(n, frames, mels)` as one PNG: a grid of panels, time left to right, low bins at the bottom.

    Example:

    ```py
    >>> import numpy as np, tempfile, os
    >>> from diffusers_impact.visualization import save_mel_spectrograms_png

    >>> path = os.path.join(tempfile.mkdtemp(), "mel.png")
    >>> save_mel_spectrograms_png(np.random.randn(3, 100, 64), ["a", "b", "c"], path)
    >>> os.path.getsize(path) > 0
    True
    ```
    """
    # A `Figure` of its own, not pyplot's global state: safe from several threads (the web demo) and backend-free.
    from matplotlib.figure import Figure

    mel_spectrograms = np.asarray(mel_spectrograms, dtype=np.float32)
    if mel_spectrograms.ndim != 3 or len(mel_spectrograms) != len(titles):
        raise ValueError(
            f"Expected (n, frames, mels) spectrograms with n titles, got {mel_spectrograms.shape} and {len(titles)}."
        )
    columns = min(columns, len(titles))
    rows = -(-len(titles) // columns)
    figure = Figure(figsize=(5 * columns, 2.4 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    low, high = np.percentile(mel_spectrograms, [1, 99.5])
    for axis in axes.flat[len(titles) :]:
        axis.axis("off")
    for axis, mel, title in zip(axes.flat, mel_spectrograms, titles):
        axis.imshow(mel.T, origin="lower", aspect="auto", cmap="magma", vmin=low, vmax=high)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("frame (10 ms)", fontsize=8)
        axis.set_ylabel("mel bin", fontsize=8)
        axis.tick_params(labelsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
