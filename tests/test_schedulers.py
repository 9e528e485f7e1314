"""Behaviour of ImpactMaskScheduler and ImpactDiffHeadScheduler against MAR's sampling math (mar.md §4, §6; paper App. A).

Expected numbers come from mar.md's worked examples or from independent references written in this file.
"""

import importlib
import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from diffusers_impact import ImpactDiffHeadScheduler, ImpactMaskScheduler


head_module = importlib.import_module("diffusers_impact.schedulers.scheduling_impact_diff_head")


# ---------------------------------------------------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------------------------------------------------


def reference_mask_schedule(num_tokens, num_iter):
    """MAR's `sample_tokens` schedule (mar.md §6 steps 4-5), with empty iterations dropped.

    Returns a list of (iteration, masked_before, clamped mask_len) for every iteration that predicts ≥ 1 token.
    """
    steps, masked = [], num_tokens
    for k in range(num_iter):
        mask_len = math.floor(num_tokens * np.cos(math.pi / 2.0 * (k + 1) / num_iter))
        mask_len = max(1, min(masked - 1, mask_len))
        remaining = 0 if k == num_iter - 1 else mask_len
        if masked - remaining > 0:
            steps.append((k, masked, mask_len))
            masked = remaining
    assert masked == 0
    return steps


def reference_gaussian_diffusion(num_sampling_steps, num_train_timesteps=1000):
    """MAR/IDDPM tables in float64: cosine betas, `space_timesteps`, and GaussianDiffusion's derived tables."""

    def alpha_bar(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    train_betas = []
    for i in range(num_train_timesteps):
        train_betas.append(
            min(1 - alpha_bar((i + 1) / num_train_timesteps) / alpha_bar(i / num_train_timesteps), 0.999)
        )
    train_alphas_cumprod = np.cumprod(1.0 - np.array(train_betas, dtype=np.float64))

    # space_timesteps(T, "K"): one section, fractional stride accumulated as in IDDPM's respace.py.
    stride = (num_train_timesteps - 1) / (num_sampling_steps - 1)
    kept, cursor = [], 0.0
    for _ in range(num_sampling_steps):
        kept.append(round(cursor))
        cursor += stride
    kept = sorted(set(kept))

    # SpacedDiffusion: new betas from the kept ᾱ, then every table is recomputed from these betas.
    betas, last = [], 1.0
    for i, alpha_cumprod in enumerate(train_alphas_cumprod):
        if i in kept:
            betas.append(1 - alpha_cumprod / last)
            last = alpha_cumprod
    betas = np.array(betas, dtype=np.float64)
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    return {
        "timestep_map": kept,
        "train_alphas_cumprod": train_alphas_cumprod,
        "betas": betas,
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1),
        "posterior_log_variance_clipped": np.log(np.append(posterior_variance[1], posterior_variance[1:])),
        "posterior_mean_coef1": betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
    }


def reference_p_sample_loop(model, x_start, noises, tables, temperature, learned_range, dtype=np.float64):
    """MAR's `p_sample_loop` (p_mean_variance + p_sample, clip_denoised=False) in NumPy.

    float64 by default; `dtype=np.float32` emulates MAR on fp32 tensors (per-t coefficients cast to float32).
    """
    x = x_start.astype(dtype)
    num_steps = len(tables["timestep_map"])

    def coef(name, k):
        return dtype(tables[name][k])

    for j, k in enumerate(reversed(range(num_steps))):
        out = model(x.astype(np.float64), tables["timestep_map"][k]).astype(dtype)  # head sees the original τ_k
        min_log = coef("posterior_log_variance_clipped", k)
        if learned_range:
            eps, v = np.split(out, 2, axis=1)
            frac = (v + dtype(1)) / dtype(2)
            log_variance = frac * dtype(np.log(tables["betas"][k])) + (dtype(1) - frac) * min_log
        else:  # fixed small: posterior variance, clipped log
            eps, log_variance = out, np.full_like(x, min_log)
        x0 = coef("sqrt_recip_alphas_cumprod", k) * x - coef("sqrt_recipm1_alphas_cumprod", k) * eps
        mean = coef("posterior_mean_coef1", k) * x0 + coef("posterior_mean_coef2", k) * x
        nonzero = dtype(1.0 if k != 0 else 0.0)
        x = mean + nonzero * np.exp(dtype(0.5) * log_variance) * noises[j].astype(dtype) * dtype(temperature)
    return x


CHANNELS = 16
CHANNEL_GAINS = np.linspace(-1.0, 1.0, CHANNELS)
TRAIN_ALPHAS_CUMPROD = reference_gaussian_diffusion(100)["train_alphas_cumprod"]


def fake_head(x, t, learned_range=True):
    """A fixed, deterministic stand-in for the diffusion head (float64 NumPy in, float64 out).

    ε is the exact denoiser of N(0, 0.5²) data plus a bounded nonlinear term (so the trajectory stays O(1)); v is a
    smooth function of x and t in [-1, 1].
    """
    alpha_bar = TRAIN_ALPHAS_CUMPROD[t]
    eps = math.sqrt(1 - alpha_bar) * x / (0.25 * alpha_bar + 1 - alpha_bar)
    eps = eps + 0.3 * math.sqrt(alpha_bar) * np.tanh(x * CHANNEL_GAINS + t / 1000)
    if not learned_range:
        return eps
    return np.concatenate([eps, np.sin(x + t / 250)], axis=1)


def run_scheduler_loop(monkeypatch, num_steps, x_start, noises, temperature, learned_range):
    """Run ImpactDiffHeadScheduler.step over all timesteps with `fake_head`; `randn_tensor` yields `noises` in order."""
    supply = iter(noises)

    def fake_randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
        noise = next(supply)
        assert tuple(noise.shape) == tuple(shape)
        return noise.to(dtype=dtype)

    monkeypatch.setattr(head_module, "randn_tensor", fake_randn_tensor)
    scheduler = ImpactDiffHeadScheduler()
    scheduler.set_timesteps(num_steps)
    sample = x_start.clone()
    for t in scheduler.timesteps:
        output = fake_head(sample.double().numpy(), int(t), learned_range)
        model_output = torch.from_numpy(output).float()
        sample = scheduler.step(model_output, t, sample, temperature=temperature).prev_sample
        assert sample.dtype == torch.float32
    return sample


# ---------------------------------------------------------------------------------------------------------------------
# ImpactMaskScheduler: mask schedule
# ---------------------------------------------------------------------------------------------------------------------


def mask_scheduler(num_iter, num_tokens, **config):
    scheduler = ImpactMaskScheduler(**config)
    scheduler.set_timesteps(num_iter, num_tokens=num_tokens)
    return scheduler


def test_worked_example_16_tokens_4_iterations():
    """mar.md §6: S=16, num_iter=4 → masked before each step [16, 14, 11, 6], predicted [2, 3, 5, 6]."""
    scheduler = mask_scheduler(4, 16)
    assert scheduler.timesteps.tolist() == [0, 1, 2, 3]
    assert scheduler.num_masked_before == [16, 14, 11, 6]
    assert scheduler.num_tokens_to_predict == [2, 3, 5, 6]
    assert len(scheduler) == 4


def test_worked_example_single_iteration_generates_everything():
    """mar.md §6: num_iter=1 → all 16 tokens in one step."""
    scheduler = mask_scheduler(1, 16)
    assert scheduler.timesteps.tolist() == [0]
    assert scheduler.num_masked_before == [16]
    assert scheduler.num_tokens_to_predict == [16]


def test_worked_example_256_tokens_64_iterations_starts_with_single_tokens():
    """mar.md §6: S=256, num_iter=64 → the first steps predict 1 token, the last ones ~6-7; all 256 are generated."""
    scheduler = mask_scheduler(64, 256)
    counts = scheduler.num_tokens_to_predict
    assert len(counts) == 64
    assert counts[:3] == [1, 1, 1]
    assert sum(counts) == 256
    assert all(6 <= c <= 7 for c in counts[-10:]), counts[-10:]


@pytest.mark.parametrize("num_tokens", [1, 5, 16, 64])
def test_as_many_iterations_as_tokens_predicts_one_per_step(num_tokens):
    """mar.md §6: num_iter = S → exactly one token per step."""
    scheduler = mask_scheduler(num_tokens, num_tokens)
    assert scheduler.num_tokens_to_predict == [1] * num_tokens
    assert scheduler.num_masked_before == list(range(num_tokens, 0, -1))


@pytest.mark.parametrize("num_tokens", [2, 5, 16, 37, 64, 256])
@pytest.mark.parametrize("num_iter_fraction", [1 / 64, 0.1, 0.25, 0.5, 0.77, 0.9, 1.0])
def test_counts_match_mar_clamp_reference_for_t_le_n(num_tokens, num_iter_fraction):
    """For T ≤ N every iteration is kept and the counts equal MAR's clamp μ = max(1, min(n−1, ⌊N·cos(π/2·(k+1)/T)⌋))."""
    num_iter = max(1, round(num_tokens * num_iter_fraction))
    scheduler = mask_scheduler(num_iter, num_tokens)
    reference = reference_mask_schedule(num_tokens, num_iter)
    assert len(reference) == num_iter
    assert scheduler.timesteps.tolist() == list(range(num_iter))
    assert scheduler.num_masked_before == [before for _, before, _ in reference]
    expected_counts = [before - (0 if k == num_iter - 1 else mask_len) for k, before, mask_len in reference]
    assert scheduler.num_tokens_to_predict == expected_counts


@pytest.mark.parametrize("num_tokens, num_iter", [(16, 40), (5, 7), (3, 100), (1, 4), (10, 11)])
def test_iterations_predicting_nothing_are_skipped_for_t_gt_n(num_tokens, num_iter):
    """T > N: MAR would crash on empty steps (mar.md §6); the kept ones follow the clamp, the rest are dropped."""
    scheduler = mask_scheduler(num_iter, num_tokens)
    reference = reference_mask_schedule(num_tokens, num_iter)
    assert scheduler.timesteps.tolist() == [k for k, _, _ in reference]
    assert scheduler.num_masked_before == [before for _, before, _ in reference]
    assert len(scheduler.timesteps) <= num_tokens
    assert scheduler.timesteps[-1] == num_iter - 1  # the last iteration always generates what is left
    assert min(scheduler.num_tokens_to_predict) >= 1
    assert sum(scheduler.num_tokens_to_predict) == num_tokens


@pytest.mark.parametrize(
    "num_tokens, num_iter",
    [(16, 4), (16, 1), (16, 16), (16, 40), (5, 7), (64, 10), (37, 23), (1, 1), (1, 3)],
)
def test_decoding_loop_generates_each_position_once_with_nested_masks(num_tokens, num_iter):
    """Drive positions_to_predict / mask_before / step over all timesteps (App. D.1, mar.md §6 step 5)."""
    batch_size, token_dim = 3, 2
    scheduler = mask_scheduler(num_iter, num_tokens)
    orders = scheduler.sample_orders(batch_size, generator=torch.Generator().manual_seed(0))
    timesteps = scheduler.timesteps.tolist()
    assert 1 <= len(timesteps) <= min(num_iter, num_tokens)
    if num_iter <= num_tokens:
        assert len(timesteps) == num_iter

    sample = torch.full((batch_size, num_tokens, token_dim), -1.0)
    mask = torch.ones(batch_size, num_tokens, dtype=torch.bool)
    predicted = []
    for step_index, t in enumerate(timesteps):
        before = scheduler.mask_before(step_index, orders)
        assert torch.equal(before, mask)  # the previous step's output mask is this step's input mask
        positions = scheduler.positions_to_predict(step_index, orders)
        count = positions.shape[1]
        assert count >= 1  # no kept iteration predicts nothing
        assert count == scheduler.num_tokens_to_predict[step_index]
        assert before.sum(dim=1).tolist() == [scheduler.num_masked_before[step_index]] * batch_size
        assert bool(before.gather(1, positions).all())  # only masked positions are generated
        # mar.md §6 step 5: the first n entries of each order stay masked; a step predicts the tail of that prefix.
        num_before = scheduler.num_masked_before[step_index]
        assert torch.equal(before, torch.zeros_like(before).scatter_(1, orders[:, :num_before], True))
        assert torch.equal(positions, orders[:, num_before - count : num_before])

        model_output = torch.full((batch_size, count, token_dim), float(step_index + 1))
        output = scheduler.step(model_output, t, sample, orders)
        sample, next_mask = output.prev_sample, output.mask
        assert not bool(next_mask.gather(1, positions).any())
        assert not bool((next_mask & ~mask).any())  # M(t+1) ⊆ M(t)
        assert torch.equal(mask & ~next_mask, torch.zeros_like(mask).scatter_(1, positions, True))
        if step_index + 1 < len(timesteps):
            assert torch.equal(next_mask, scheduler.mask_before(step_index + 1, orders))
        predicted.append(positions)
        mask = next_mask

    assert not bool(mask.any())  # everything generated
    all_positions = torch.cat(predicted, dim=1)
    assert torch.equal(all_positions.sort(dim=1).values, torch.arange(num_tokens).expand(batch_size, -1))
    # Each position holds the value of the one step that generated it (written once, never overwritten).
    for step_index, positions in enumerate(predicted):
        values = sample.gather(1, positions.unsqueeze(-1).expand(-1, -1, token_dim))
        assert bool((values == step_index + 1).all())


def test_step_tuple_output_and_wrong_token_count():
    """return_dict=False gives (prev_sample, mask); a model_output with the wrong token count is rejected."""
    scheduler = mask_scheduler(4, 16)
    orders = scheduler.sample_orders(2, generator=torch.Generator().manual_seed(1))
    sample = torch.zeros(2, 16, 3)
    prev_sample, mask = scheduler.step(torch.ones(2, 2, 3), 0, sample, orders, return_dict=False)
    assert prev_sample.sum() == 2 * 2 * 3
    assert mask.sum(dim=1).tolist() == [14, 14]
    with pytest.raises(ValueError):
        scheduler.step(torch.ones(2, 3, 3), 0, sample, orders)


# ---------------------------------------------------------------------------------------------------------------------
# ImpactMaskScheduler: orders
# ---------------------------------------------------------------------------------------------------------------------


def test_orders_are_permutations_and_seeded():
    """Each row is a permutation of 0..N−1; the same seed reproduces the orders, another seed changes them."""
    scheduler = mask_scheduler(8, 32)
    orders = scheduler.sample_orders(5, generator=torch.Generator().manual_seed(3))
    assert orders.shape == (5, 32)
    assert orders.dtype == torch.long
    assert torch.equal(orders.sort(dim=1).values, torch.arange(32).expand(5, -1))
    assert len({tuple(row) for row in orders.tolist()}) == 5  # rows are independent draws
    assert torch.equal(orders, scheduler.sample_orders(5, generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(orders, scheduler.sample_orders(5, generator=torch.Generator().manual_seed(4)))


def test_orders_with_a_list_of_generators_match_single_sample_calls():
    """Row k of a batched call with a list of generators equals a batch-1 call with generator k (same seed)."""
    scheduler = mask_scheduler(8, 32)
    seeds = [11, 12, 13]
    orders = scheduler.sample_orders(3, generator=[torch.Generator().manual_seed(s) for s in seeds])
    for row, seed in enumerate(seeds):
        single = scheduler.sample_orders(1, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(orders[row : row + 1], single)


# ---------------------------------------------------------------------------------------------------------------------
# ImpactMaskScheduler: guidance
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_tokens, num_iter", [(16, 4), (256, 64), (16, 40), (5, 7), (8, 1)])
@pytest.mark.parametrize("beta_max", [3.0, 5.5])
def test_cosine_guidance_matches_paper_appendix_a(num_tokens, num_iter, beta_max):
    """β(t) = 1 + cos(π/2·t/T)(β_max − 1) at every kept iteration t (paper App. A); the first one gives β_max."""
    scheduler = mask_scheduler(num_iter, num_tokens)
    assert scheduler.config.guidance_schedule == "cosine"
    for step_index, t in enumerate(scheduler.timesteps.tolist()):
        expected = 1 + math.cos(math.pi / 2 * t / num_iter) * (beta_max - 1)
        assert scheduler.guidance_scale_at(step_index, beta_max) == pytest.approx(expected, abs=1e-12)
    assert scheduler.guidance_scale_at(0, beta_max) == pytest.approx(beta_max, abs=1e-12)


def test_linear_guidance_reproduces_mar_worked_example():
    """mar.md §6: S=16, cfg 3, 4 iterations, linear → 1.25, 1.625, 2.25, 2.875 (the last never reaches cfg)."""
    scheduler = mask_scheduler(4, 16, guidance_schedule="linear")
    scales = [scheduler.guidance_scale_at(i, 3.0) for i in range(4)]
    assert scales == pytest.approx([1.25, 1.625, 2.25, 2.875], abs=1e-12)


def test_linear_guidance_single_iteration():
    """mar.md §6: num_iter=1 → cfg_iter = 1 + (cfg − 1)·15/16."""
    scheduler = mask_scheduler(1, 16, guidance_schedule="linear")
    assert scheduler.guidance_scale_at(0, 4.0) == pytest.approx(1 + 3.0 * 15 / 16, abs=1e-12)


@pytest.mark.parametrize("num_tokens, num_iter", [(64, 10), (256, 64), (37, 37)])
def test_linear_guidance_matches_mar_formula(num_tokens, num_iter):
    """linear: 1 + (cfg − 1)(S − mask_len)/S with MAR's clamped (post-step) mask_len."""
    scheduler = mask_scheduler(num_iter, num_tokens, guidance_schedule="linear")
    reference = reference_mask_schedule(num_tokens, num_iter)
    for step_index, (_, _, mask_len) in enumerate(reference):
        expected = 1 + 2.0 * (num_tokens - mask_len) / num_tokens
        assert scheduler.guidance_scale_at(step_index, 3.0) == pytest.approx(expected, abs=1e-12)


def test_constant_guidance_and_per_call_override():
    """constant gives β everywhere; the `guidance_schedule` argument overrides the configured schedule per call."""
    constant = mask_scheduler(4, 16, guidance_schedule="constant")
    assert [constant.guidance_scale_at(i, 3.7) for i in range(4)] == pytest.approx([3.7] * 4, abs=1e-12)
    assert constant.guidance_scale_at(2, 3.0, guidance_schedule="linear") == pytest.approx(2.25, abs=1e-12)
    cosine = mask_scheduler(4, 16)
    assert cosine.guidance_scale_at(3, 3.0, guidance_schedule="constant") == pytest.approx(3.0, abs=1e-12)
    assert cosine.guidance_scale_at(1, 3.0, guidance_schedule="linear") == pytest.approx(1.625, abs=1e-12)
    assert cosine.guidance_scale_at(1, 3.0) == pytest.approx(1 + 2 * math.cos(math.pi / 8), abs=1e-12)


def test_guidance_scale_one_is_unguided_for_every_schedule():
    """β_max = 1 gives 1 whatever the schedule (ζ(t) multiplies β_max − 1)."""
    scheduler = mask_scheduler(6, 16)
    for schedule in ("cosine", "linear", "constant"):
        assert [scheduler.guidance_scale_at(i, 1.0, schedule) for i in range(6)] == [1.0] * 6


def test_unknown_guidance_schedule_raises():
    with pytest.raises(ValueError):
        ImpactMaskScheduler(guidance_schedule="quadratic")
    scheduler = mask_scheduler(4, 16)
    with pytest.raises(ValueError):
        scheduler.guidance_scale_at(0, 3.0, guidance_schedule="quadratic")


# ---------------------------------------------------------------------------------------------------------------------
# ImpactMaskScheduler: arguments and config
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_iter, num_tokens", [(0, 16), (-1, 16), (4, 0)])
def test_mask_set_timesteps_rejects_non_positive_arguments(num_iter, num_tokens):
    with pytest.raises(ValueError):
        ImpactMaskScheduler().set_timesteps(num_iter, num_tokens=num_tokens)


def test_mask_scheduler_config_round_trip(tmp_path):
    """save_config / from_pretrained keep `guidance_schedule`."""
    ImpactMaskScheduler(guidance_schedule="linear").save_config(tmp_path)
    loaded = ImpactMaskScheduler.from_pretrained(tmp_path)
    assert isinstance(loaded, ImpactMaskScheduler)
    assert loaded.config.guidance_schedule == "linear"
    loaded.set_timesteps(4, num_tokens=16)
    assert loaded.guidance_scale_at(0, 3.0) == pytest.approx(1.25, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# ImpactDiffHeadScheduler: schedule tables
# ---------------------------------------------------------------------------------------------------------------------


def test_head_timesteps_100_are_mar_respacing():
    """mar.md §4: space_timesteps(1000, "100") keeps round(k·999/99) = [0, 10, 20, 30, 40, 50, 61, ..., 989, 999]."""
    scheduler = ImpactDiffHeadScheduler()
    scheduler.set_timesteps(100)
    expected = [round(k * 999 / 99) for k in range(100)]
    assert expected[:7] == [0, 10, 20, 30, 40, 50, 61] and expected[-3:] == [979, 989, 999]
    assert scheduler.timesteps.dtype == torch.long
    assert scheduler.timesteps.tolist() == expected[::-1]
    assert scheduler.timesteps.tolist() == reference_gaussian_diffusion(100)["timestep_map"][::-1]
    assert scheduler.num_inference_steps == 100


def test_head_timesteps_10():
    """mar.md §4: "10" → [0, 111, ..., 999]."""
    scheduler = ImpactDiffHeadScheduler()
    scheduler.set_timesteps(10)
    assert scheduler.timesteps.tolist() == [k * 111 for k in range(10)][::-1]


@pytest.mark.parametrize("num_steps", [0, 1001])
def test_head_set_timesteps_rejects_out_of_range(num_steps):
    with pytest.raises(ValueError):
        ImpactDiffHeadScheduler().set_timesteps(num_steps)


def test_head_cosine_schedule_matches_mar_numbers():
    """mar.md §4: ᾱ₀ = 0.99995872, ᾱ₉₉₉ = 2.4288e-9 (β₉₉₉ = 0.999 is the only clipped beta); float64 tables."""
    scheduler = ImpactDiffHeadScheduler()
    alphas_cumprod = scheduler.alphas_cumprod
    assert alphas_cumprod.dtype == torch.float64
    assert alphas_cumprod.shape == (1000,)
    assert float(alphas_cumprod[0]) == pytest.approx(0.99995872, abs=1e-8)
    assert float(1 - alphas_cumprod[0]) == pytest.approx(4.1284e-5, rel=1e-4)
    assert float(alphas_cumprod[999]) == pytest.approx(2.4288e-9, rel=1e-4)
    np.testing.assert_allclose(alphas_cumprod.numpy(), TRAIN_ALPHAS_CUMPROD, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------------------------------
# ImpactDiffHeadScheduler: sampling loop against the float64 reference
# ---------------------------------------------------------------------------------------------------------------------


def draw_inputs(num_steps, batch_size=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x_start = torch.randn(batch_size, CHANNELS, generator=generator)
    noises = [torch.randn(batch_size, CHANNELS, generator=generator) for _ in range(num_steps)]
    return x_start, noises


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_head_loop_matches_mar_learned_range_reference(monkeypatch, temperature):
    """100 spaced steps with learned-range variance (ε, v) reproduce MAR's p_sample_loop to 1e-5."""
    x_start, noises = draw_inputs(100)
    tables = reference_gaussian_diffusion(100)
    expected = reference_p_sample_loop(
        fake_head, x_start.numpy(), [n.numpy() for n in noises], tables, temperature, True
    )
    # Scheduler draws no noise at k = 0, MAR draws and zeroes it: the first 99 draws are the ones used by both.
    result = run_scheduler_loop(monkeypatch, 100, x_start, noises, temperature, learned_range=True)
    assert np.abs(expected).max() > 0.1  # a non-trivial trajectory
    np.testing.assert_allclose(result.double().numpy(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_head_loop_with_epsilon_only_uses_posterior_variance(monkeypatch, temperature):
    """An ε-only output (same size as the sample) uses the fixed-small (clipped posterior) variance."""
    x_start, noises = draw_inputs(100, seed=1)
    tables = reference_gaussian_diffusion(100)
    model = lambda x, t: fake_head(x, t, learned_range=False)  # noqa: E731
    expected = reference_p_sample_loop(model, x_start.numpy(), [n.numpy() for n in noises], tables, temperature, False)
    result = run_scheduler_loop(monkeypatch, 100, x_start, noises, temperature, learned_range=False)
    np.testing.assert_allclose(result.double().numpy(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("num_steps", [10, 2])
def test_coarse_head_loop_matches_fp32_mar_reference(monkeypatch, num_steps):
    """Coarse schedules: same loop against MAR emulated in fp32 (float64 tables cast to float32 per step, mar.md §4).

    With few steps, x̂0 = √(1/ᾱ')x − … at τ = 999 (√(1/ᾱ) ≈ 2e4) amplifies fp32 rounding beyond 1e-5 versus float64,
    in MAR as well; the fp32 emulation must agree to fp32 precision and float64 to a looser bound.
    """
    x_start, noises = draw_inputs(num_steps, seed=2)
    tables = reference_gaussian_diffusion(num_steps)
    assert tables["timestep_map"] == sorted(round(k * 999 / (num_steps - 1)) for k in range(num_steps))
    noises_np = [n.numpy() for n in noises]
    expected32 = reference_p_sample_loop(fake_head, x_start.numpy(), noises_np, tables, 1.0, True, np.float32)
    expected64 = reference_p_sample_loop(fake_head, x_start.numpy(), noises_np, tables, 1.0, True)
    result = run_scheduler_loop(monkeypatch, num_steps, x_start, noises, 1.0, learned_range=True)
    np.testing.assert_allclose(result.numpy(), expected32, atol=2e-6, rtol=0)
    np.testing.assert_allclose(result.double().numpy(), expected64, atol=2e-2, rtol=0)


def test_head_single_step_pred_original_sample_and_variance():
    """One step at k = 50: x̂0 = √(1/ᾱ')x − √(1/ᾱ' − 1)ε; v = +1 / −1 selects log β'_k / clipped log β̃'_k."""
    tables = reference_gaussian_diffusion(100)
    k = 50
    t = tables["timestep_map"][k]
    scheduler = ImpactDiffHeadScheduler()
    scheduler.set_timesteps(100)
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, CHANNELS, generator=generator)
    eps = torch.randn(2, CHANNELS, generator=generator)
    noise = torch.randn(2, CHANNELS, generator=torch.Generator().manual_seed(6)).double().numpy()
    x64, eps64 = x.double().numpy(), eps.double().numpy()
    x0 = tables["sqrt_recip_alphas_cumprod"][k] * x64 - tables["sqrt_recipm1_alphas_cumprod"][k] * eps64
    mean = tables["posterior_mean_coef1"][k] * x0 + tables["posterior_mean_coef2"][k] * x64
    log_beta, log_posterior = np.log(tables["betas"][k]), tables["posterior_log_variance_clipped"][k]
    assert log_beta - log_posterior > 0.01  # the two variances are distinguishable at this step
    for v, log_variance in [(1.0, log_beta), (-1.0, log_posterior), (0.0, 0.5 * (log_beta + log_posterior))]:
        model_output = torch.cat([eps, torch.full_like(eps, v)], dim=1)
        out = scheduler.step(model_output, t, x, generator=torch.Generator().manual_seed(6))
        np.testing.assert_allclose(out.pred_original_sample.double().numpy(), x0, atol=1e-5, rtol=1e-6)
        expected = mean + np.exp(0.5 * log_variance) * noise
        np.testing.assert_allclose(out.prev_sample.double().numpy(), expected, atol=1e-5, rtol=1e-6)


def test_head_last_step_adds_no_noise():
    """k = 0 (τ = 0): the result is the posterior mean, whatever the generator or temperature."""
    scheduler = ImpactDiffHeadScheduler()
    scheduler.set_timesteps(100)
    x = torch.randn(3, CHANNELS, generator=torch.Generator().manual_seed(0))
    model_output = torch.randn(3, 2 * CHANNELS, generator=torch.Generator().manual_seed(1))
    a = scheduler.step(model_output, 0, x, generator=torch.Generator().manual_seed(2)).prev_sample
    b = scheduler.step(model_output, 0, x, generator=torch.Generator().manual_seed(3), temperature=5.0).prev_sample
    assert torch.equal(a, b)
    tables = reference_gaussian_diffusion(100)
    x0 = (
        tables["sqrt_recip_alphas_cumprod"][0] * x.double()
        - tables["sqrt_recipm1_alphas_cumprod"][0] * model_output[:, :CHANNELS].double()
    )
    expected = tables["posterior_mean_coef1"][0] * x0 + tables["posterior_mean_coef2"][0] * x.double()
    torch.testing.assert_close(a.double(), expected, atol=1e-6, rtol=0)


def test_head_step_with_list_of_generators_matches_single_rows():
    """step with one generator per row gives row k equal to a batch-1 call with generator k."""
    scheduler = ImpactDiffHeadScheduler()
    scheduler.set_timesteps(100)
    x = torch.randn(3, CHANNELS, generator=torch.Generator().manual_seed(0))
    model_output = torch.randn(3, 2 * CHANNELS, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    seeds = [21, 22, 23]
    batched = scheduler.step(model_output, 989, x, generator=[torch.Generator().manual_seed(s) for s in seeds])
    for row, seed in enumerate(seeds):
        single = scheduler.step(
            model_output[row : row + 1], 989, x[row : row + 1], generator=torch.Generator().manual_seed(seed)
        )
        torch.testing.assert_close(batched.prev_sample[row : row + 1], single.prev_sample, atol=1e-6, rtol=0)
    # The generators matter: another seed changes the (noisy) result.
    other = scheduler.step(model_output[:1], 989, x[:1], generator=torch.Generator().manual_seed(99))
    assert not torch.allclose(other.prev_sample, batched.prev_sample[:1])


def test_head_step_tuple_output():
    scheduler = ImpactDiffHeadScheduler()
    scheduler.set_timesteps(10)
    x = torch.randn(2, CHANNELS, generator=torch.Generator().manual_seed(0))
    model_output = torch.zeros(2, 2 * CHANNELS)
    out = scheduler.step(model_output, 999, x, generator=torch.Generator().manual_seed(1))
    prev, x0 = scheduler.step(model_output, 999, x, generator=torch.Generator().manual_seed(1), return_dict=False)
    assert torch.equal(prev, out.prev_sample) and torch.equal(x0, out.pred_original_sample)


# ---------------------------------------------------------------------------------------------------------------------
# ImpactDiffHeadScheduler: forward process and interchangeability
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timestep",
    [0, 1, 5, 10, 250, 500, 998, 999],
)
def test_add_noise_matches_reference_forward_process(timestep):
    """x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε with the float64 reference ᾱ, to 1e-6."""
    generator = torch.Generator().manual_seed(timestep)
    x0 = torch.randn(64, CHANNELS, 3, generator=generator)
    noise = torch.randn(64, CHANNELS, 3, generator=generator)
    noisy = ImpactDiffHeadScheduler().add_noise(x0, noise, torch.full((64,), timestep))
    alpha_bar = TRAIN_ALPHAS_CUMPROD[timestep]
    expected = np.sqrt(alpha_bar) * x0.double().numpy() + np.sqrt(1 - alpha_bar) * noise.double().numpy()
    assert noisy.shape == x0.shape and noisy.dtype == torch.float32
    np.testing.assert_allclose(noisy.double().numpy(), expected, atol=1e-6, rtol=0)


def test_add_noise_uses_one_timestep_per_row():
    """Each batch row is noised with its own timestep."""
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, CHANNELS, generator=generator)
    noise = torch.randn(4, CHANNELS, generator=generator)
    timesteps = torch.tensor([999, 300, 600, 900])
    noisy = ImpactDiffHeadScheduler().add_noise(x0, noise, timesteps)
    alpha_bar = TRAIN_ALPHAS_CUMPROD[timesteps.numpy()][:, None]
    expected = np.sqrt(alpha_bar) * x0.double().numpy() + np.sqrt(1 - alpha_bar) * noise.double().numpy()
    np.testing.assert_allclose(noisy.double().numpy(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("scheduler_class", [DDIMScheduler, DPMSolverMultistepScheduler, DDPMScheduler])
def test_diffusers_schedulers_load_head_config(scheduler_class):
    """Swapping schedulers via from_config keeps the cosine schedule, linspace spacing and no clipping."""
    other = scheduler_class.from_config(ImpactDiffHeadScheduler().config)
    assert other.config.beta_schedule == "squaredcos_cap_v2"
    assert other.config.timestep_spacing == "linspace"
    assert other.config.prediction_type == "epsilon"
    assert other.config.num_train_timesteps == 1000
    if "clip_sample" in other.config:
        assert other.config.clip_sample is False
    # Same noise schedule (diffusers builds it in float32).
    np.testing.assert_allclose(other.alphas_cumprod.double().numpy(), TRAIN_ALPHAS_CUMPROD, rtol=1e-4, atol=1e-7)


def test_ddim_from_head_config_does_not_clip():
    assert DDIMScheduler.from_config(ImpactDiffHeadScheduler().config).config.clip_sample is False


def test_head_from_ddpm_config():
    """ImpactDiffHeadScheduler.from_config accepts a DDPMScheduler config with the matching schedule."""
    ddpm = DDPMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False, timestep_spacing="linspace")
    scheduler = ImpactDiffHeadScheduler.from_config(ddpm.config)
    assert isinstance(scheduler, ImpactDiffHeadScheduler)
    np.testing.assert_allclose(scheduler.alphas_cumprod.numpy(), TRAIN_ALPHAS_CUMPROD, rtol=1e-12, atol=0)
    scheduler.set_timesteps(100)
    assert scheduler.timesteps.tolist() == [round(k * 999 / 99) for k in range(100)][::-1]


@pytest.mark.parametrize(
    "override",
    [
        {"beta_schedule": "linear"},
        {"prediction_type": "v_prediction"},
        {"timestep_spacing": "leading"},
        {"clip_sample": True},
    ],
)
def test_head_rejects_unsupported_config(override):
    with pytest.raises(ValueError):
        ImpactDiffHeadScheduler(**override)
    with pytest.raises(ValueError):
        ImpactDiffHeadScheduler.from_config({**ImpactDiffHeadScheduler().config, **override})
