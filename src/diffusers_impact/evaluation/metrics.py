# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
The metric math of audioldm_eval (FD / FAD, KL, IS; paper App. F), on features and class scores computed elsewhere.

No networks and no audio front-ends live here: feed PANNs Cnn14 2048-d embeddings (FD), VGGish frame embeddings (FAD)
or PANNs logits (KL, IS) extracted by the caller (evaluation.md §1).
"""

import warnings
from collections.abc import Mapping

import numpy as np
import scipy.linalg
import scipy.special


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    """`scipy.linalg.sqrtm` without the `disp` argument (deprecated in SciPy 1.17, removed in 1.18; evaluation.md §1)."""
    with warnings.catch_warnings():  # singular products are expected and handled by the caller
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        return scipy.linalg.sqrtm(matrix)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """
    Fréchet distance between N(`mu1`, `sigma1`) and N(`mu2`, `sigma2`), computed as audioldm_eval's FD and FAD do.

    ‖μ₁ − μ₂‖² + tr(Σ₁) + tr(Σ₂) − 2 tr((Σ₁Σ₂)^½). If the matrix square root is not finite, `eps`·I is added to both
    covariances and it is retried; an imaginary part (numerical noise) is dropped if its diagonal is within 1e-3 of 0,
    otherwise a `ValueError` is raised (evaluation.md §1, "Fréchet distance" and "FAD").

    Args:
        mu1 (array-like of shape `(dim,)`): Mean of the first set of features.
        sigma1 (array-like of shape `(dim, dim)`): Covariance of the first set of features.
        mu2 (array-like of shape `(dim,)`): Mean of the second set of features.
        sigma2 (array-like of shape `(dim, dim)`): Covariance of the second set of features.
        eps (`float`, defaults to 1e-6): Diagonal offset used only when the square root of the product is not finite.

    Returns:
        `float`: The Fréchet distance.

    Example:

    ```py
    >>> import numpy as np
    >>> from diffusers_impact.evaluation import frechet_distance

    >>> # ‖(3, 4)‖² + (√4 − √1)² + (√9 − √1)² = 25 + 1 + 4
    >>> round(frechet_distance(np.zeros(2), np.diag([4.0, 9.0]), np.array([3.0, 4.0]), np.eye(2)), 6)
    30.0
    ```
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"The mean vectors have different shapes: {mu1.shape} and {mu2.shape}.")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"The covariances must both be {(mu1.shape[0],) * 2}, got {sigma1.shape} and {sigma2.shape}.")

    difference = mu1 - mu2
    # audioldm_eval metrics/fid.py (FD) and metrics/fad.py (FAD): sqrtm of Σ1Σ2, eps·I retry only if non-finite
    covariance_mean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covariance_mean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covariance_mean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covariance_mean):
        # audioldm_eval: the diagonal's imaginary part must be ≤ 1e-3 (np.allclose atol), then the real part is kept
        if not np.allclose(np.diagonal(covariance_mean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covariance_mean.imag))} in the matrix square root.")
        covariance_mean = covariance_mean.real
    # Fréchet distance of two Gaussians (Dowson & Landau 1982), as in audioldm_eval metrics/fid.py
    distance = difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covariance_mean)
    return float(distance)


def frechet_distance_from_features(features1, features2, eps: float = 1e-6) -> float:
    """
    Fréchet distance between two sets of embeddings (rows are samples), with audioldm_eval's statistics.

    Means over rows and the unbiased covariance `np.cov(rowvar=False)` (ddof = 1), then [`frechet_distance`]
    (evaluation.md §1). For FAD, pass every VGGish frame of every clip as a row (the frames are pooled, not per clip).

    Args:
        features1 (array-like of shape `(num_samples_1, dim)`): The first set, e.g. generated clips' embeddings.
        features2 (array-like of shape `(num_samples_2, dim)`): The second set, e.g. reference clips' embeddings.
        eps (`float`, defaults to 1e-6): Passed to [`frechet_distance`].

    Returns:
        `float`: The Fréchet distance between the two sets' Gaussian fits.

    Example:

    ```py
    >>> import numpy as np
    >>> from diffusers_impact.evaluation import frechet_distance_from_features

    >>> features = np.random.default_rng(0).standard_normal((500, 4))
    >>> round(frechet_distance_from_features(features, features + 1.0), 6)  # a shift by 1 in each of 4 dimensions
    4.0
    ```
    """
    features1 = np.asarray(features1, dtype=np.float64)
    features2 = np.asarray(features2, dtype=np.float64)
    if features1.ndim != 2 or features2.ndim != 2:
        raise ValueError(f"Features must be 2-d (num_samples, dim), got {features1.shape} and {features2.shape}.")
    # audioldm_eval metrics/fid.py: mu = mean(axis=0), sigma = np.cov(rowvar=False) (ddof = 1)
    mu1, sigma1 = features1.mean(axis=0), np.cov(features1, rowvar=False)
    mu2, sigma2 = features2.mean(axis=0), np.cov(features2, rowvar=False)
    return frechet_distance(mu1, sigma1, mu2, sigma2, eps=eps)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    return logits - scipy.special.logsumexp(logits, axis=-1, keepdims=True)


def kl_divergence(
    reference_scores: Mapping[str, object],
    generated_scores: Mapping[str, object],
    from_probabilities: bool = False,
) -> float:
    """
    audioldm_eval's reported "KL": mean over paired clips of KL(reference ‖ generated) between softmax class scores.

    KL = (1/N) Σᵢ Σ_c p_ref,i(c) [log p_ref,i(c) − log(p_gen,i(c) + 1e-6)], with p = softmax(PANNs logits) over the
    527 AudioSet classes (`kullback_leibler_divergence_softmax`, the paper number; not the sigmoid variant). Clips are
    paired by name (audioldm_eval pairs by file basename); every name must be in both mappings (evaluation.md §1, KL).

    Args:
        reference_scores (`Mapping[str, array-like]`): Clip name → class logits (shape `(num_classes,)`) of the
            reference clip.
        generated_scores (`Mapping[str, array-like]`): Clip name → class logits of the generated clip.
        from_probabilities (`bool`, defaults to `False`): If `True`, the scores are already probabilities (each row
            sums to 1) and the softmax is skipped.

    Returns:
        `float`: The mean KL divergence in nats.

    Raises:
        `ValueError`: If a name is in only one of the mappings (the names are listed) or the mappings are empty.

    Example:

    ```py
    >>> import math
    >>> from diffusers_impact.evaluation import kl_divergence

    >>> reference = {"a.wav": [0.5, 0.5]}
    >>> generated = {"a.wav": [0.25, 0.75]}
    >>> kl = kl_divergence(reference, generated, from_probabilities=True)
    >>> expected = 0.5 * math.log(0.5 / (0.25 + 1e-6)) + 0.5 * math.log(0.5 / (0.75 + 1e-6))
    >>> round(kl, 6) == round(expected, 6), round(kl, 4)
    (True, 0.1438)
    ```
    """
    missing_from_generated = sorted(set(reference_scores) - set(generated_scores))
    missing_from_reference = sorted(set(generated_scores) - set(reference_scores))
    if missing_from_generated or missing_from_reference:
        raise ValueError(
            "The reference and generated clips must have the same names. Missing from the generated set: "
            f"{missing_from_generated}; missing from the reference set: {missing_from_reference}."
        )
    if not reference_scores:
        raise ValueError("No clips to compare.")
    names = sorted(reference_scores)
    reference = np.stack([np.asarray(reference_scores[name], dtype=np.float64) for name in names])
    generated = np.stack([np.asarray(generated_scores[name], dtype=np.float64) for name in names])
    if reference.shape != generated.shape or reference.ndim != 2:
        raise ValueError(
            f"Every clip needs one score vector of the same length, got {reference.shape} and {generated.shape}."
        )
    if from_probabilities:
        reference_probabilities, generated_probabilities = reference, generated
    else:
        reference_probabilities = np.exp(_log_softmax(reference))
        generated_probabilities = np.exp(_log_softmax(generated))
    # audioldm_eval kullback_leibler_divergence_softmax: kl_div(log(p_gen + 1e-6), p_ref, reduction="sum") / N
    pointwise = scipy.special.xlogy(reference_probabilities, reference_probabilities) - scipy.special.xlogy(
        reference_probabilities, generated_probabilities + 1e-6
    )
    return float(pointwise.sum() / len(names))


def inception_score(
    logits, splits: int = 10, seed: int = 2020, from_probabilities: bool = False
) -> tuple[float, float]:
    """
    audioldm_eval's Inception Score of the generated clips: (mean, std) of exp(E_x KL(p(y|x) ‖ p(y))) over splits.

    The rows are shuffled with `np.random.RandomState(seed).permutation` (seed 2020 in audioldm_eval), converted to
    float64 and softmax probabilities, and cut into `splits` consecutive chunks at rows ⌊i·N/splits⌋; p(y) is each
    chunk's mean prediction. The std is NumPy's population std (ddof = 0) (evaluation.md §1, IS).

    Args:
        logits (array-like of shape `(num_clips, num_classes)`): PANNs logits of the generated clips.
        splits (`int`, defaults to 10): Number of chunks.
        seed (`int`, defaults to 2020): Seed of the shuffle; `None` keeps the given order.
        from_probabilities (`bool`, defaults to `False`): If `True`, the rows are already probabilities and the
            softmax is skipped.

    Returns:
        `tuple[float, float]`: The mean and the standard deviation of the per-split scores.

    Example:

    ```py
    >>> import numpy as np
    >>> from diffusers_impact.evaluation import inception_score

    >>> one_hot = np.eye(4)[np.arange(40) % 4]  # confident and balanced over 4 classes
    >>> mean, std = inception_score(one_hot, splits=1, from_probabilities=True)
    >>> round(mean, 6), round(std, 6)
    (4.0, 0.0)
    ```
    """
    scores = np.asarray(logits, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"`logits` must be 2-d (num_clips, num_classes), got shape {scores.shape}.")
    num_clips = scores.shape[0]
    if not 1 <= splits <= num_clips:
        raise ValueError(f"`splits` must be between 1 and the number of clips ({num_clips}), got {splits}.")
    if seed is not None:  # audioldm_eval metrics/isc.py: RandomState(2020).permutation before splitting
        scores = scores[np.random.RandomState(seed).permutation(num_clips)]
    probabilities = scores if from_probabilities else np.exp(_log_softmax(scores))

    split_scores = []
    for index in range(splits):
        chunk = probabilities[index * num_clips // splits : (index + 1) * num_clips // splits]
        marginal = chunk.mean(axis=0, keepdims=True)
        # audioldm_eval metrics/isc.py (Salimans et al. 2016): exp(mean_x Σ_c p(c|x) (log p(c|x) − log p(c)))
        kl = (scipy.special.xlogy(chunk, chunk) - scipy.special.xlogy(chunk, marginal)).sum(axis=1)
        split_scores.append(float(np.exp(kl.mean())))
    return float(np.mean(split_scores)), float(np.std(split_scores))
