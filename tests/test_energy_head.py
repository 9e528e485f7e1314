# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""The AudioDEAR energy-scoring head, the energy score and the distillation it is trained with (issue 14)."""

import copy
import itertools
import math

import numpy as np
import pytest
import torch

from diffusers_impact import ImpactEnergyHead
from diffusers_impact.configs import IMPACT_ENERGY_HEAD_CONFIGS
from diffusers_impact.testing_utils import tiny_impact_components
from diffusers_impact.training.losses import (
    distillation_projector,
    energy_score_loss,
    masked_energy_loss,
    representation_alignment_loss,
)


def tiny_head(seed: int = 0) -> ImpactEnergyHead:
    """A small head with every weight random (the zero-initialised layers too), so that noise and condition matter."""
    torch.manual_seed(seed)
    head = ImpactEnergyHead(
        out_channels=6, model_channels=16, condition_channels=10, noise_channels=4, num_res_blocks=2
    )
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.normal_(0, 0.3)
    return head.eval()


def test_fresh_head_outputs_zero_and_one_token_per_row():
    head = ImpactEnergyHead(
        out_channels=6, model_channels=16, condition_channels=10, noise_channels=4, num_res_blocks=2
    )
    output = head(torch.randn(7, 10), torch.randn(7, 4)).sample
    assert output.shape == (7, 6)
    assert torch.equal(output, torch.zeros(7, 6))


def test_noise_changes_the_token_and_temperature_scales_the_noise():
    head, condition, noise = tiny_head(), torch.randn(5, 10), torch.randn(5, 4)
    with torch.no_grad():
        first = head(condition, noise).sample
        other = head(condition, torch.randn(5, 4)).sample
        assert (first - other).abs().min() > 1e-4  # every token depends on its noise
        assert torch.equal(head(condition, noise, temperature=0.5).sample, head(condition, 0.5 * noise).sample)
        noise_free = head(condition, torch.zeros(5, 4)).sample
        assert torch.equal(head(condition, noise, temperature=0.0).sample, noise_free)
        # Rows are independent: a token does not depend on the other rows of the batch.
        torch.testing.assert_close(head(condition[:2], noise[:2]).sample, first[:2])


def test_refuses_noise_of_the_wrong_shape():
    head = tiny_head()
    with pytest.raises(ValueError, match=r"`noise` has shape \(5, 3\); expected \(5, 4\)"):
        head(torch.randn(5, 10), torch.randn(5, 3))


def test_save_and_load_round_trip(tmp_path):
    head, condition, noise = tiny_head(), torch.randn(3, 10), torch.randn(3, 4)
    head.save_pretrained(tmp_path)
    loaded = ImpactEnergyHead.from_pretrained(tmp_path).eval()
    assert loaded.config.noise_channels == 4 and loaded.config.num_res_blocks == 2
    with torch.no_grad():
        assert torch.equal(loaded(condition, noise).sample, head(condition, noise).sample)


@pytest.mark.parametrize("size", ["base", "large"])
def test_reference_sizes_have_the_expected_parameter_count(size):
    config = IMPACT_ENERGY_HEAD_CONFIGS[size]
    width, blocks = config["model_channels"], config["num_res_blocks"]

    def linear(inputs, outputs):
        return inputs * outputs + outputs

    block = 2 * width + 2 * linear(width, width) + linear(width, 3 * width)  # LayerNorm, MLP, AdaLN modulation
    final = linear(width, config["out_channels"]) + linear(width, 2 * width)
    expected = linear(config["condition_channels"], width) + linear(config["noise_channels"], width)
    expected += blocks * block + final
    head = ImpactEnergyHead(**config)
    assert sum(parameter.numel() for parameter in head.parameters()) == expected
    if size == "base":
        assert expected == 34_584_704


def energy_score_float64(samples: np.ndarray, target: np.ndarray, alpha: float, repulsion_weight: float) -> np.ndarray:
    """Per-token energy score by explicit loops over the samples and the ordered pairs, in float64."""
    num_samples, num_tokens, _ = samples.shape
    scores = np.zeros(num_tokens)
    for token in range(num_tokens):
        attraction = np.mean([np.linalg.norm(samples[i, token] - target[token]) ** alpha for i in range(num_samples)])
        pairs = [
            np.linalg.norm(samples[i, token] - samples[j, token]) ** alpha
            for i, j in itertools.permutations(range(num_samples), 2)
        ]
        scores[token] = attraction - repulsion_weight * sum(pairs) / (2 * num_samples * (num_samples - 1))
    return scores


@pytest.mark.parametrize(("num_samples", "alpha", "repulsion_weight"), [(2, 1.0, 1.0), (3, 0.5, 0.7), (4, 1.5, 1.0)])
def test_energy_score_matches_an_independent_float64_implementation(num_samples, alpha, repulsion_weight):
    generator = np.random.default_rng(num_samples)
    samples = generator.standard_normal((num_samples, 9, 5))
    target = generator.standard_normal((9, 5))
    weights = (generator.random(9) < 0.6).astype(np.float64)
    weights[0] = 1.0
    expected = energy_score_float64(samples, target, alpha, repulsion_weight)
    loss = energy_score_loss(torch.from_numpy(samples), torch.from_numpy(target), alpha, repulsion_weight)
    assert loss.item() == pytest.approx(expected.mean(), rel=1e-5)
    masked = energy_score_loss(
        torch.from_numpy(samples), torch.from_numpy(target), alpha, repulsion_weight, torch.from_numpy(weights)
    )
    assert masked.item() == pytest.approx((expected * weights).sum() / weights.sum(), rel=1e-5)


def test_energy_score_is_lowest_for_the_true_distribution():
    """1-D targets y ~ N(0, 1): a head whose samples follow N(μ, σ²) scores, in expectation,
    E|X − y| − ½E|X − X′| = s√(2/π)·exp(−μ²/2s²) + μ·erf(μ/(s√2)) − σ/√π with s = √(σ² + 1), smallest at μ = 0, σ = 1.
    The loss's Monte Carlo estimate (m = 2) agrees with that closed form and ranks the true distribution first."""
    generator = torch.Generator().manual_seed(0)
    num_tokens = 1_000_000
    target = torch.randn(num_tokens, 1, generator=generator, dtype=torch.float64)

    def closed_form(mean, std):
        spread = math.sqrt(std**2 + 1)
        distance = spread * math.sqrt(2 / math.pi) * math.exp(-(mean**2) / (2 * spread**2))
        return distance + mean * math.erf(mean / (spread * math.sqrt(2))) - std / math.sqrt(math.pi)

    scores = {}
    for mean, std in [(0.0, 1.0), (0.5, 1.0), (0.0, 0.1), (0.0, 2.0), (0.0, 0.8)]:
        samples = mean + std * torch.randn(2, num_tokens, 1, generator=generator, dtype=torch.float64)
        scores[mean, std] = energy_score_loss(samples, target).item()
        assert scores[mean, std] == pytest.approx(closed_form(mean, std), abs=5e-3)
    assert scores[0.0, 1.0] == pytest.approx(1 / math.sqrt(math.pi), abs=5e-3)
    assert min(scores, key=scores.get) == (0.0, 1.0)
    # Collapsing to the mean (σ → 0) is not rewarded, unlike a regression loss.
    assert scores[0.0, 0.1] - scores[0.0, 1.0] > 0.05


def test_energy_score_gradient_reaches_only_the_tokens_in_the_loss():
    samples = torch.randn(2, 6, 3, requires_grad=True)
    weights = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    energy_score_loss(samples, torch.randn(6, 3), token_weights=weights).backward()
    assert torch.equal(samples.grad[:, weights == 0], torch.zeros(2, 3, 3))
    assert (samples.grad[:, weights == 1].abs().sum(dim=-1) > 0).all()


@pytest.mark.parametrize(
    ("shape", "alpha", "message"),
    [((1, 6, 3), 1.0, "m >= 2 samples"), ((2, 5, 3), 1.0, r"expected \(m, 6, 3\)"), ((2, 6, 3), 2.0, "alpha")],
)
def test_energy_score_refusals(shape, alpha, message):
    with pytest.raises(ValueError, match=message):
        energy_score_loss(torch.randn(shape), torch.randn(6, 3), alpha=alpha)


# ----------------------------------------------------------------------------- training objective with distillation
def energy_training_models(seed: int = 0):
    """A tiny transformer (eval mode: no dropout) with its text condition and an energy head for its hidden size."""
    components = tiny_impact_components(seed=seed, with_clap=False, head="energy")
    transformer, head = components["transformer"].eval(), components["energy_head"]
    torch.manual_seed(seed)
    tokens = torch.randn(3, transformer.num_tokens, 32)
    condition = {"encoder_hidden_states": torch.randn(3, 5, 16), "encoder_attention_mask": torch.ones(3, 5)}
    return transformer, head, tokens, condition


def record_calls(module):
    """The positional inputs and output of every forward of `module`."""
    calls = []
    module.register_forward_hook(lambda _, inputs, output: calls.append((inputs, output)))
    return calls


def test_masked_energy_loss_is_the_energy_score_of_m_samples_on_the_masked_tokens():
    transformer, head, tokens, condition = energy_training_models()
    transformer_calls, head_calls = record_calls(transformer), record_calls(head)
    generator = torch.Generator().manual_seed(0)
    losses = masked_energy_loss(
        transformer,
        head,
        tokens,
        generator,
        mask_ratio=0.5,
        num_samples=3,
        alpha=1.5,
        repulsion_weight=0.9,
        **condition,
    )
    assert set(losses) == {"energy"}
    (tokens_in, mask), hidden = transformer_calls[0][0], transformer_calls[0][1].sample
    assert mask.sum(dim=1).tolist() == [8, 8, 8] and torch.equal(tokens_in, tokens)
    (head_condition, head_noise), samples = head_calls[0][0], head_calls[0][1].sample
    assert head_condition.shape == (3 * 24, 32) and head_noise.shape == (3 * 24, 8)  # m copies of the masked rows
    torch.testing.assert_close(head_condition, hidden[mask].repeat(3, 1), rtol=0, atol=0)
    expected = energy_score_loss(samples.reshape(3, 24, 32), tokens[mask], alpha=1.5, repulsion_weight=0.9)
    torch.testing.assert_close(losses["energy"], expected)
    assert len({tuple(row.tolist()) for row in head_noise}) == 3 * 24  # fresh noise for every sample of every token


def test_per_sample_generators_make_a_samples_draws_independent_of_the_batch():
    transformer, head, tokens, condition = energy_training_models()
    head_calls = record_calls(head)
    seeds = (11, 12, 13)
    masked_energy_loss(
        transformer, head, tokens, [torch.Generator().manual_seed(s) for s in seeds], mask_ratio=0.5, **condition
    )
    masked_energy_loss(
        transformer,
        head,
        tokens[2:],
        [torch.Generator().manual_seed(13)],
        mask_ratio=0.5,
        **{key: value[2:] for key, value in condition.items()},
    )
    batch_noise = head_calls[0][0][1].reshape(2, 3, 8, 8)[:, 2]  # (m, sample, its 8 masked tokens, channels)
    alone_noise = head_calls[1][0][1].reshape(2, 1, 8, 8)[:, 0]
    torch.testing.assert_close(batch_noise, alone_noise, rtol=0, atol=0)


@pytest.mark.parametrize("distill_layer", [None, 1])
def test_a_teacher_identical_to_the_student_sees_the_same_input_and_aligns_perfectly(distill_layer):
    transformer, head, tokens, condition = energy_training_models()
    teacher = copy.deepcopy(transformer).requires_grad_(False)
    if distill_layer is not None:  # align the output of decoder block 1: the teacher's copy of it is the target
        teacher.decoder_norm = torch.nn.Identity()
        teacher.diffusion_pos_embed.data.zero_()
    losses = masked_energy_loss(
        transformer,
        head,
        tokens,
        torch.Generator().manual_seed(0),
        condition_drop_prob=0.5,  # some samples get the null condition: the teacher must see the same drops
        teacher=teacher,
        projector=torch.nn.Identity(),
        distill_layer=distill_layer,
        **condition,
    )
    assert losses["distill"].item() == pytest.approx(0.0, abs=1e-6)
    shuffled = copy.deepcopy(teacher)
    shuffled.mask_token.data.normal_()
    losses = masked_energy_loss(
        transformer,
        head,
        tokens,
        torch.Generator().manual_seed(0),
        teacher=shuffled,
        projector=torch.nn.Identity(),
        distill_layer=distill_layer,
        **condition,
    )
    assert losses["distill"].item() > 1e-3


def test_distillation_trains_the_student_and_projector_not_the_teacher():
    transformer, head, tokens, condition = energy_training_models()
    teacher = energy_training_models(seed=1)[0].requires_grad_(False)
    projector = distillation_projector(32, 32, width=16)
    losses = masked_energy_loss(
        transformer,
        head,
        tokens,
        torch.Generator().manual_seed(0),
        teacher=teacher,
        projector=projector,
        distill_loss="mse",
        **condition,
    )
    losses["distill"].backward()
    assert all(parameter.grad is not None for parameter in projector.parameters())
    assert transformer.decoder_blocks[0].ff.net[2].weight.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in head.parameters())  # the head does not shape z's alignment
    assert all(parameter.grad is None for parameter in teacher.parameters())


def test_distillation_refusals():
    transformer, head, tokens, condition = energy_training_models()
    with pytest.raises(ValueError, match="`teacher` and `projector` together"):
        masked_energy_loss(transformer, head, tokens, torch.Generator(), teacher=transformer, **condition)
    with pytest.raises(ValueError, match=r"one of \('cosine', 'mse'\), got 'l1'"):
        representation_alignment_loss(torch.ones(2, 3), torch.ones(2, 3), torch.nn.Identity(), kind="l1")
