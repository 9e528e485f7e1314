"""audioldm_eval's FD / KL / IS math against closed forms and hand-computed values."""

import math

import numpy as np
import pytest
import scipy.linalg

from diffusers_impact.evaluation import metrics
from diffusers_impact.evaluation.metrics import (
    frechet_distance,
    frechet_distance_from_features,
    inception_score,
    kl_divergence,
)


def _random_covariance(rng, dim):
    matrix = rng.standard_normal((dim, dim))
    return matrix @ matrix.T + 0.1 * np.eye(dim)


def test_frechet_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal(5), _random_covariance(rng, 5)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_frechet_shifted_mean_same_covariance():
    rng = np.random.default_rng(1)
    sigma = _random_covariance(rng, 6)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-7, abs=1e-8)


def test_frechet_diagonal_covariances():
    a, b = np.array([0.5, 2.0, 9.0]), np.array([4.0, 1.0, 0.25])
    mu1, mu2 = np.array([1.0, 0.0, -1.0]), np.array([0.0, 2.0, 1.0])
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu1 - mu2) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_singular_covariances_finite():
    # Rank-1 covariances along orthogonal directions: Σ1Σ2 = 0, so FD = tr Σ1 + tr Σ2 = 4.
    sigma1 = np.array([[1.0, 1.0], [1.0, 1.0]])
    sigma2 = np.array([[1.0, -1.0], [-1.0, 1.0]])
    distance = frechet_distance(np.zeros(2), sigma1, np.zeros(2), sigma2)
    assert math.isfinite(distance) and distance == pytest.approx(4.0, abs=1e-6)
    # More dimensions than samples: rank-deficient sample covariances still give a finite distance.
    rng = np.random.default_rng(2)
    assert math.isfinite(frechet_distance_from_features(rng.standard_normal((5, 8)), rng.standard_normal((6, 8))))


def test_frechet_eps_retry_when_square_root_not_finite(monkeypatch):
    calls = []
    real_sqrtm = scipy.linalg.sqrtm

    def fake_sqrtm(matrix):
        calls.append(matrix.copy())
        return np.full_like(matrix, np.inf) if len(calls) == 1 else real_sqrtm(matrix)

    monkeypatch.setattr(metrics.scipy.linalg, "sqrtm", fake_sqrtm)
    sigma = np.diag([1.0, 4.0])
    distance = frechet_distance(np.zeros(2), sigma, np.zeros(2), sigma, eps=1e-2)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], (sigma + 1e-2 * np.eye(2)) @ (sigma + 1e-2 * np.eye(2)))
    # tr Σ + tr Σ − 2 tr(Σ + eps·I) = −2·2·eps
    assert distance == pytest.approx(-4e-2, rel=1e-9)


def test_frechet_large_imaginary_part_raises(monkeypatch):
    monkeypatch.setattr(metrics.scipy.linalg, "sqrtm", lambda matrix: np.eye(2) * (1 + 0.1j))
    with pytest.raises(ValueError, match="Imaginary"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))
    monkeypatch.setattr(metrics.scipy.linalg, "sqrtm", lambda matrix: np.eye(2) * (1 + 1e-4j))
    assert frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2)) == pytest.approx(0.0)


def test_frechet_symmetric():
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.standard_normal(4), rng.standard_normal(4)
    sigma1, sigma2 = _random_covariance(rng, 4), _random_covariance(rng, 4)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(
        frechet_distance(mu2, sigma2, mu1, sigma1), rel=1e-9
    )


def test_frechet_from_features_matches_formula_on_sample_statistics():
    rng = np.random.default_rng(4)
    features1, features2 = rng.standard_normal((50, 3)), 2.0 * rng.standard_normal((70, 3)) + 1.0
    mu1, mu2 = features1.mean(axis=0), features2.mean(axis=0)
    # unbiased (ddof = 1) covariance, written out
    sigma1 = (features1 - mu1).T @ (features1 - mu1) / (len(features1) - 1)
    sigma2 = (features2 - mu2).T @ (features2 - mu2) / (len(features2) - 1)
    assert frechet_distance_from_features(features1, features2) == pytest.approx(
        frechet_distance(mu1, sigma1, mu2, sigma2), rel=1e-12
    )


def test_frechet_from_features_approaches_closed_form():
    rng = np.random.default_rng(5)
    num_samples = 20000
    a, b = np.array([1.0, 4.0]), np.array([9.0, 1.0])
    mu1, mu2 = np.zeros(2), np.array([1.0, -2.0])
    features1 = rng.standard_normal((num_samples, 2)) * np.sqrt(a) + mu1
    features2 = rng.standard_normal((num_samples, 2)) * np.sqrt(b) + mu2
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu1 - mu2) ** 2)  # 4 + 1 + 5 = 10
    # sampling error of the means and variances is O(σ²/√N) ≈ 0.1 here
    assert frechet_distance_from_features(features1, features2) == pytest.approx(expected, abs=0.3)


def test_kl_hand_computed_two_and_three_classes():
    reference = {"a": [0.5, 0.5], "b": [0.9, 0.1]}
    generated = {"b": [0.5, 0.5], "a": [0.25, 0.75]}  # paired by name, not by order
    kl_a = 0.5 * math.log(0.5 / (0.25 + 1e-6)) + 0.5 * math.log(0.5 / (0.75 + 1e-6))
    kl_b = 0.9 * math.log(0.9 / (0.5 + 1e-6)) + 0.1 * math.log(0.1 / (0.5 + 1e-6))
    assert kl_divergence(reference, generated, from_probabilities=True) == pytest.approx((kl_a + kl_b) / 2, rel=1e-12)

    # three classes, given as logits: softmax(log p) = p; a zero reference probability contributes nothing
    p, q = [0.2, 0.3, 0.5], [0.1, 0.6, 0.3]
    expected = sum(pi * math.log(pi / (qi + 1e-6)) for pi, qi in zip(p, q))
    kl = kl_divergence({"x": np.log(p) + 7.0}, {"x": np.log(q) - 3.0})  # softmax ignores a constant shift
    assert kl == pytest.approx(expected, rel=1e-9)
    zero = kl_divergence({"x": [0.0, 1.0, 0.0]}, {"x": [0.5, 0.25, 0.25]}, from_probabilities=True)
    assert zero == pytest.approx(math.log(1.0 / (0.25 + 1e-6)), rel=1e-12)


def test_kl_direction_is_reference_to_generated():
    p, q = [0.9, 0.1], [0.5, 0.5]
    forward = kl_divergence({"x": p}, {"x": q}, from_probabilities=True)
    assert forward == pytest.approx(0.9 * math.log(0.9 / (0.5 + 1e-6)) + 0.1 * math.log(0.1 / (0.5 + 1e-6)))
    assert forward != pytest.approx(kl_divergence({"x": q}, {"x": p}, from_probabilities=True))
    assert kl_divergence({"x": p}, {"x": p}, from_probabilities=True) == pytest.approx(0.0, abs=1e-5)


def test_kl_missing_names_raise():
    with pytest.raises(ValueError, match=r"generated set: \['c'\].*reference set: \['d'\]"):
        kl_divergence({"a": [0.0, 1.0], "c": [1.0, 0.0]}, {"a": [0.0, 1.0], "d": [1.0, 0.0]})


def test_inception_score_balanced_confident_is_num_classes():
    for num_classes in (2, 5):
        one_hot = np.eye(num_classes)[np.arange(10 * num_classes) % num_classes]
        # each of the 10 shuffled splits need not be balanced, so check the unshuffled balanced order
        mean, std = inception_score(one_hot, splits=10, seed=None, from_probabilities=True)
        assert mean == pytest.approx(num_classes, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)
        # confident logits behave the same; a single split is balanced whatever the shuffle
        mean, _ = inception_score(100.0 * one_hot, splits=1)
        assert mean == pytest.approx(num_classes, rel=1e-9)


def test_inception_score_identical_predictions_is_one():
    logits = np.tile(np.array([[0.3, -1.0, 2.0]]), (30, 1))
    mean, std = inception_score(logits)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_deterministic_with_seed():
    logits = np.random.default_rng(6).standard_normal((53, 7)) * 3.0
    assert inception_score(logits) == inception_score(logits.copy())
    assert inception_score(logits, seed=1) == inception_score(logits, seed=1)
    assert inception_score(logits, seed=1) != inception_score(logits, seed=2)  # the splits depend on the shuffle
    with pytest.raises(ValueError):
        inception_score(logits[:5], splits=10)
