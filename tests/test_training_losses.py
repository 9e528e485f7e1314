"""IMPACT's training objective against MAR's masking and IDDPM's hybrid loss (mar.md §4 "Training loss", §5).

Every expected number comes from an independent float64 reference written in this file from mar.md's formulas (or
from mar.md's quoted values), never from running the code under test.
"""

import copy
import math

import numpy as np
import pytest
import scipy.stats
import torch

import diffusers_impact.training.losses as losses
from diffusers_impact import ImpactDiffHead, ImpactDiffHeadScheduler
from diffusers_impact.testing_utils import tiny_impact_components
from diffusers_impact.training.losses import (
    diffusion_head_loss,
    masked_generative_loss,
    sample_mask_ratio,
    splice_inpainting_gaps,
)


NUM_TRAIN_TIMESTEPS = 1000


# ---------------------------------------------------------------------------------------------------------------------
# Independent references (mar.md §4 / §5)
# ---------------------------------------------------------------------------------------------------------------------


def standard_normal_cdf(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def truncated_normal_reference(min_mask_ratio, loc=1.0, scale=0.25):
    """N(loc, scale²) truncated to [min_mask_ratio, 1]: (mean, std, cdf) from the textbook formulas."""
    alpha, beta = (min_mask_ratio - loc) / scale, (1.0 - loc) / scale
    pdf = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)  # noqa: E731
    mass = standard_normal_cdf(beta) - standard_normal_cdf(alpha)
    mean_z = (pdf(alpha) - pdf(beta)) / mass
    var_z = 1.0 + (alpha * pdf(alpha) - beta * pdf(beta)) / mass - mean_z**2

    def cdf(values):
        z = (np.clip(values, min_mask_ratio, 1.0) - loc) / scale
        return np.array([(standard_normal_cdf(v) - standard_normal_cdf(alpha)) / mass for v in np.atleast_1d(z)])

    return loc + scale * mean_z, scale * math.sqrt(var_z), cdf


def cosine_tables():
    """IDDPM's cosine-schedule tables in float64 (mar.md §4), as torch tensors indexed by t."""
    alpha_bar = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    T = NUM_TRAIN_TIMESTEPS
    betas = np.array([min(1.0 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)])
    alphas_cumprod = np.cumprod(1.0 - betas)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    tables = {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "log_betas": np.log(betas),
        # index 0 (β̃₀ = 0) replaced by index 1
        "posterior_log_variance_clipped": np.log(np.append(posterior_variance[1], posterior_variance[1:])),
        "coef1": betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        "coef2": (1.0 - alphas_cumprod_prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod),
    }
    return {name: torch.from_numpy(value) for name, value in tables.items()}


TABLES = cosine_tables()


def approx_standard_normal_cdf(x):
    """IDDPM's tanh approximation of Φ."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def reference_noisy(x0, t, noise):
    abar = TABLES["alphas_cumprod"][t].unsqueeze(1)
    return abar.sqrt() * x0.double() + (1.0 - abar).sqrt() * noise.double()


def reference_hybrid_terms(model_output, x0, x_t, t, noise):
    """Per-row (mse, vb) of IDDPM's hybrid loss from the head's output [ε̂, v], all in float64.

    vb = KL(q(x_{t−1}|x_t,x_0) ‖ p(x_{t−1}|x_t)) in bits (mean over channels), or at t = 0 the discretised Gaussian
    decoder NLL (bins ±1/255, edge cases beyond ±0.999). The model mean uses ε̂ exactly as given (the caller decides
    whether it is frozen).
    """
    channels = x0.shape[1]
    x0, x_t, noise, model_output = x0.double(), x_t.double(), noise.double(), model_output.double()
    eps_hat, v = model_output[:, :channels], model_output[:, channels:]
    take = lambda name: TABLES[name][t].unsqueeze(1)  # noqa: E731
    mse = ((noise - eps_hat) ** 2).mean(dim=1)

    abar = take("alphas_cumprod")
    x0_hat = x_t / abar.sqrt() - (1.0 / abar - 1.0).sqrt() * eps_hat
    model_mean = take("coef1") * x0_hat + take("coef2") * x_t
    frac = (v + 1.0) / 2.0
    model_log_var = frac * take("log_betas") + (1.0 - frac) * take("posterior_log_variance_clipped")
    true_mean = take("coef1") * x0 + take("coef2") * x_t
    true_log_var = take("posterior_log_variance_clipped").expand_as(x0)

    # KL between Gaussians written with standard deviations: log(σ₂/σ₁) + (σ₁² + (μ₁ − μ₂)²) / (2σ₂²) − ½.
    kl = (
        0.5 * (model_log_var - true_log_var)
        + (true_log_var.exp() + (true_mean - model_mean) ** 2) / (2.0 * model_log_var.exp())
        - 0.5
    )
    kl_bits = kl.mean(dim=1) / math.log(2.0)

    sigma = (0.5 * model_log_var).exp()
    upper = approx_standard_normal_cdf((x0 - model_mean + 1.0 / 255.0) / sigma)
    lower = approx_standard_normal_cdf((x0 - model_mean - 1.0 / 255.0) / sigma)
    probability = torch.where(x0 < -0.999, upper, torch.where(x0 > 0.999, 1.0 - lower, upper - lower))
    nll_bits = (-probability.clamp(min=1e-12).log()).mean(dim=1) / math.log(2.0)

    vb = torch.where(t == 0, nll_bits, kl_bits)
    return mse, vb


def reference_hybrid_loss(head, x0, hidden, t, noise):
    """Per-row hybrid loss (mse + vb) of `head` in float64 (the head itself runs in float32)."""
    x_t = reference_noisy(x0, t, noise)
    output = head(x_t.float(), t, hidden).sample.double()
    mse, vb = reference_hybrid_terms(output, x0, x_t, t, noise)
    return mse + vb


# ---------------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------------


class FixedDraws:
    """Replaces the t and ε draws of `diffusion_head_loss` by given tensors (and records what was asked for)."""

    def __init__(self, monkeypatch, timesteps, noise):
        self.timesteps, self.noise, self.requests = timesteps, noise, []
        monkeypatch.setattr(losses.torch, "randint", self.randint)
        monkeypatch.setattr(losses, "randn_tensor", self.randn_tensor)

    def randint(self, low, high, size, generator=None, **kwargs):
        self.requests.append(("randint", low, high, tuple(size), generator is not None))
        assert tuple(size) == tuple(self.timesteps.shape)
        return self.timesteps.clone()

    def randn_tensor(self, shape, generator=None, device=None, dtype=None):
        self.requests.append(("randn", tuple(shape), generator is not None))
        assert tuple(shape) == tuple(self.noise.shape)
        return self.noise.clone().to(dtype or self.noise.dtype)


def make_head(in_channels=8, condition_channels=12, learn_sigma=True, seed=0, std=0.05):
    """A small ImpactDiffHead whose zero-initialised layers are randomised (moderate ε̂ and v)."""
    torch.manual_seed(seed)
    head = ImpactDiffHead(
        in_channels=in_channels,
        model_channels=32,
        condition_channels=condition_channels,
        num_res_blocks=2,
        learn_sigma=learn_sigma,
    )
    with torch.no_grad():
        for parameter in head.parameters():
            if not parameter.any():
                parameter.normal_(0.0, std)
    return head.eval()


def loss_batch(seed=1, rows=24, channels=8, condition_channels=12):
    """x₀ (with values beyond ±0.999 on the t = 0 rows), hidden vectors, t (incl. 0, 1, 500, 999) and ε."""
    generator = torch.Generator().manual_seed(seed)
    x0 = 0.7 * torch.randn(rows, channels, generator=generator)
    x0[:4, :4] = torch.tensor([1.5, -1.5, 0.9995, -0.9995])
    hidden = torch.randn(rows, condition_channels, generator=generator)
    t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (rows,), generator=generator)
    special = torch.tensor([0, 0, 0, 0, 0, 1, 2, 500, 998, 999])[:rows]
    t[: len(special)] = special
    noise = torch.randn(rows, channels, generator=generator)
    return x0, hidden, t, noise


# ---------------------------------------------------------------------------------------------------------------------
# sample_mask_ratio
# ---------------------------------------------------------------------------------------------------------------------


def test_truncated_normal_reference_matches_mar_md():
    mean, std, _ = truncated_normal_reference(0.7)
    assert mean == pytest.approx(0.8670, abs=5e-5)
    assert std == pytest.approx(0.0835, abs=5e-5)


@pytest.mark.parametrize("min_mask_ratio, num_draws", [(0.7, 2000), (0.5, 1000)])
def test_sample_mask_ratio_range_and_distribution(min_mask_ratio, num_draws):
    ratios = np.array(
        [sample_mask_ratio(torch.Generator().manual_seed(seed), min_mask_ratio) for seed in range(num_draws)]
    )
    assert ratios.min() >= min_mask_ratio and ratios.max() <= 1.0
    mean, std, cdf = truncated_normal_reference(min_mask_ratio)
    # 4.5 standard errors (std of the sample std ≈ σ/√(2n) is generous for this light-tailed distribution).
    assert abs(ratios.mean() - mean) < 4.5 * std / math.sqrt(num_draws)
    assert abs(ratios.std(ddof=1) - std) < 4.5 * std / math.sqrt(2 * num_draws)
    # The whole distribution, not just two moments (fixed seeds: deterministic).
    assert scipy.stats.kstest(ratios, cdf).pvalue > 1e-3
    # Covers the range: near both ends.
    assert ratios.min() < min_mask_ratio + 0.02 and ratios.max() > 0.995


def test_sample_mask_ratio_determinism():
    first = [sample_mask_ratio(torch.Generator().manual_seed(seed)) for seed in range(5)]
    second = [sample_mask_ratio(torch.Generator().manual_seed(seed)) for seed in range(5)]
    assert first == second
    assert len(set(first)) == 5
    generator = torch.Generator().manual_seed(0)
    assert sample_mask_ratio(generator) != sample_mask_ratio(generator)  # the generator advances


@pytest.mark.parametrize("min_mask_ratio", [0.0, -0.2, 1.01, 2.0])
def test_sample_mask_ratio_rejects_out_of_range(min_mask_ratio):
    with pytest.raises(ValueError):
        sample_mask_ratio(torch.Generator().manual_seed(0), min_mask_ratio)


def test_sample_mask_ratio_of_one_is_one():
    assert sample_mask_ratio(torch.Generator().manual_seed(0), 1.0) == 1.0


# ---------------------------------------------------------------------------------------------------------------------
# diffusion_head_loss
# ---------------------------------------------------------------------------------------------------------------------


def test_reference_tables_match_mar_md():
    assert TABLES["betas"][0].item() == pytest.approx(4.1284e-5, rel=1e-4)
    assert TABLES["betas"][999].item() == 0.999
    assert int((TABLES["betas"] >= 0.999).sum()) == 1
    assert TABLES["alphas_cumprod"][0].item() == pytest.approx(0.99995872, abs=1e-8)
    assert TABLES["alphas_cumprod"][999].item() == pytest.approx(2.4288e-9, rel=1e-4)


def test_diffusion_head_loss_matches_reference(monkeypatch):
    head = make_head()
    x0, hidden, t, noise = loss_batch()
    draws = FixedDraws(monkeypatch, t, noise)
    with torch.no_grad():
        loss = diffusion_head_loss(
            head, ImpactDiffHeadScheduler(), x0, hidden, torch.Generator(), diffusion_batch_mul=1
        )
        reference_rows = reference_hybrid_loss(head, x0, hidden, t, noise)
    assert draws.requests == [("randint", 0, 1000, (24,), True), ("randn", (24, 8), True)]
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert loss.item() == pytest.approx(reference_rows.mean().item(), rel=1e-5)

    # Row by row, so that a wrong term on the few t = 0 / t = 999 rows cannot hide in the batch mean.
    with torch.no_grad():
        for row in range(x0.shape[0]):
            monkeypatch.setattr(losses.torch, "randint", lambda *a, _t=t[row : row + 1], **k: _t.clone())
            monkeypatch.setattr(losses, "randn_tensor", lambda *a, _n=noise[row : row + 1], **k: _n.clone())
            row_loss = diffusion_head_loss(
                head, ImpactDiffHeadScheduler(), x0[row : row + 1], hidden[row : row + 1], torch.Generator(), 1
            )
            assert row_loss.item() == pytest.approx(reference_rows[row].item(), rel=2e-5), f"row {row}, t = {t[row]}"


def test_reference_detects_decoder_edge_cases_and_vb():
    """The comparison above can fail: on its data the VB term and the ±0.999 edge cases change the loss."""
    head = make_head()
    x0, hidden, t, noise = loss_batch()
    with torch.no_grad():
        x_t = reference_noisy(x0, t, noise)
        output = head(x_t.float(), t, hidden).sample.double()
        mse, vb = reference_hybrid_terms(output, x0, x_t, t, noise)
        _, vb_inner = reference_hybrid_terms(output, x0.clamp(-0.99, 0.99), x_t, t, noise)
    assert output[:, 8:].std() > 0.1  # v really varies
    assert (vb.abs() > 1e-3 * mse.abs()).all()
    assert (vb[:4] - vb_inner[:4]).abs().min() > 1e-2  # rows 0-3 (t = 0) hold values beyond ±0.999


def test_oracle_output_has_no_mse_and_no_kl(monkeypatch):
    """ε̂ = ε and v = −1 (variance β̃ₜ): the posterior is matched, KL = 0 for t ≥ 1; at t = 0 the decoder NLL of a
    Gaussian centred on x₀ with σ = √β̃₁ over a bin of half-width 1/255 remains."""
    x0, hidden, _, noise = loss_batch(rows=8)
    x0 = x0.clamp(-0.9, 0.9)
    posterior_std_1 = math.exp(0.5 * TABLES["posterior_log_variance_clipped"][0].item())
    expected_nll_bits = -math.log2(2.0 * standard_normal_cdf((1.0 / 255.0) / posterior_std_1) - 1.0)

    class OracleHead:
        def __call__(self, sample, timesteps, condition):
            return type("Output", (), {"sample": torch.cat([noise, -torch.ones_like(noise)], dim=1)})

    for step, expected in [(1, 0.0), (2, 0.0), (500, 0.0), (999, 0.0), (0, expected_nll_bits)]:
        FixedDraws(monkeypatch, torch.full((8,), step), noise)
        loss = diffusion_head_loss(OracleHead(), ImpactDiffHeadScheduler(), x0, hidden, torch.Generator(), 1)
        assert loss.item() == pytest.approx(expected, abs=2e-3 if step == 0 else 1e-4), step
    assert expected_nll_bits > 0.5


def test_vb_gradient_does_not_reach_epsilon(monkeypatch):
    """d loss / d ε̂ is the MSE gradient alone; d loss / d v is the VB gradient (float64 reference, autograd)."""
    head = make_head()
    x0, hidden, t, noise = loss_batch()
    rows, channels = x0.shape
    captured = {}

    def keep_output(module, args, output):
        output.sample.retain_grad()
        captured["output"] = output.sample

    head.register_forward_hook(keep_output)
    FixedDraws(monkeypatch, t, noise)
    diffusion_head_loss(
        head, ImpactDiffHeadScheduler(), x0, hidden, torch.Generator(), diffusion_batch_mul=1
    ).backward()
    output = captured["output"]
    gradient = output.grad.double()

    eps_hat = output[:, :channels].detach().double()
    expected_eps_gradient = -2.0 * (noise.double() - eps_hat) / (rows * channels)
    torch.testing.assert_close(gradient[:, :channels], expected_eps_gradient, rtol=1e-5, atol=1e-9)

    x_t = reference_noisy(x0, t, noise)
    leaf = output.detach().double().requires_grad_(True)
    frozen = torch.cat([leaf[:, :channels].detach(), leaf[:, channels:]], dim=1)
    _, vb = reference_hybrid_terms(frozen, x0, x_t, t, noise)
    (vb.mean()).backward()
    torch.testing.assert_close(gradient[:, channels:], leaf.grad[:, channels:], rtol=1e-4, atol=1e-7)

    # Without the stop-gradient the ε̂ gradient would differ by far more than the tolerance above.
    leaf = output.detach().double().requires_grad_(True)
    _, vb_unfrozen = reference_hybrid_terms(leaf, x0, x_t, t, noise)
    vb_unfrozen.mean().backward()
    assert leaf.grad[:, :channels].abs().max() > 100 * 1e-5 * expected_eps_gradient.abs().max()


def test_diffusion_batch_mul_tiles_rows(monkeypatch):
    head = make_head()
    x0, hidden, _, _ = loss_batch(rows=5)
    mul = 3
    generator = torch.Generator().manual_seed(3)
    t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (5 * mul,), generator=generator)
    t[:2] = torch.tensor([0, 999])
    noise = torch.randn(5 * mul, 8, generator=generator)
    captured = {}
    head.register_forward_pre_hook(lambda module, args: captured.update(args=args))
    FixedDraws(monkeypatch, t, noise)
    with torch.no_grad():
        loss = diffusion_head_loss(
            head, ImpactDiffHeadScheduler(), x0, hidden, torch.Generator(), diffusion_batch_mul=mul
        )
    sample, timesteps, condition = captured["args"]
    assert sample.shape == (15, 8) and condition.shape == (15, 12)
    assert torch.equal(condition, torch.cat([hidden] * mul))  # [all rows] × mul, not interleaved
    assert not torch.equal(condition, hidden.repeat_interleave(mul, dim=0))
    assert torch.equal(timesteps, t)
    tiled = torch.cat([x0] * mul)
    torch.testing.assert_close(sample.double(), reference_noisy(tiled, t, noise), rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        expected = reference_hybrid_loss(head, tiled, torch.cat([hidden] * mul), t, noise).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_fixed_variance_head_gives_plain_mse(monkeypatch):
    head = make_head(learn_sigma=False)
    x0, hidden, t, noise = loss_batch()
    FixedDraws(monkeypatch, t, noise)
    with torch.no_grad():
        loss = diffusion_head_loss(
            head, ImpactDiffHeadScheduler(), x0, hidden, torch.Generator(), diffusion_batch_mul=1
        )
        eps_hat = head(reference_noisy(x0, t, noise).float(), t, hidden).sample.double()
    assert eps_hat.shape == (24, 8)
    expected = ((noise.double() - eps_hat) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_requires_full_training_schedule():
    head = make_head()
    x0, hidden, _, _ = loss_batch(rows=4)
    scheduler = ImpactDiffHeadScheduler()
    scheduler.set_timesteps(100)
    with pytest.raises(ValueError):
        diffusion_head_loss(head, scheduler, x0, hidden, torch.Generator().manual_seed(0))
    scheduler.set_timesteps(NUM_TRAIN_TIMESTEPS)
    assert torch.isfinite(diffusion_head_loss(head, scheduler, x0, hidden, torch.Generator().manual_seed(0)))


def test_generator_draws_are_reproducible():
    head = make_head()
    x0, hidden, _, _ = loss_batch(rows=16)
    timesteps_seen = []
    head.register_forward_pre_hook(lambda module, args: timesteps_seen.append(args[1]))
    with torch.no_grad():
        losses = [
            diffusion_head_loss(head, ImpactDiffHeadScheduler(), x0, hidden, torch.Generator().manual_seed(seed))
            for seed in (0, 0, 1)
        ]
    assert torch.equal(losses[0], losses[1]) and not torch.equal(losses[0], losses[2])
    assert torch.equal(timesteps_seen[0], timesteps_seen[1])
    assert timesteps_seen[0].dtype == torch.long and timesteps_seen[0].shape == (64,)
    assert 0 <= int(timesteps_seen[0].min()) and int(timesteps_seen[0].max()) < NUM_TRAIN_TIMESTEPS


# ---------------------------------------------------------------------------------------------------------------------
# masked_generative_loss
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    components = tiny_impact_components(with_clap=False)
    transformer = components["transformer"].eval()  # dropout off: its masks come from the global RNG
    head = components["diff_head"].eval()
    assert transformer.num_tokens == 16 and head.config.in_channels == 32
    generator = torch.Generator().manual_seed(11)
    return {
        "transformer": transformer,
        "head": head,
        "scheduler": components["head_scheduler"],
        "tokens": 0.5 * torch.randn(3, 16, 32, generator=generator),
        "text": torch.randn(3, 5, 16, generator=generator),
        "other_text": torch.randn(3, 5, 16, generator=generator),
    }


class Recorder:
    """Forward hooks: the transformer's mask and output, and the head's inputs."""

    def __init__(self, transformer, head):
        self.handles = [
            transformer.register_forward_pre_hook(self.transformer_in, with_kwargs=True),
            transformer.register_forward_hook(self.transformer_out),
            head.register_forward_pre_hook(self.head_in),
        ]

    def transformer_in(self, module, args, kwargs):
        self.mask = args[1]

    def transformer_out(self, module, args, output):
        self.hidden = output.sample

    def head_in(self, module, args):
        self.head_sample, self.head_timesteps, self.head_condition = args

    def remove(self):
        for handle in self.handles:
            handle.remove()


def run(tiny, seed=0, tokens=None, **kwargs):
    kwargs.setdefault("diffusion_batch_mul", 2)
    recorder = Recorder(tiny["transformer"], tiny["head"])
    try:
        with torch.no_grad():
            loss = masked_generative_loss(
                tiny["transformer"],
                tiny["head"],
                tiny["scheduler"],
                tiny["tokens"] if tokens is None else tokens,
                torch.Generator().manual_seed(seed),
                **kwargs,
            )
    finally:
        recorder.remove()
    return loss, recorder


@pytest.mark.parametrize("mask_ratio, num_masked", [(0.01, 1), (0.3, 5), (0.5, 8), (0.75, 12), (1.0, 16)])
def test_fixed_mask_ratio_selects_masked_rows(tiny, mask_ratio, num_masked):
    assert num_masked == math.ceil(16 * mask_ratio)
    _, rec = run(tiny, mask_ratio=mask_ratio, diffusion_batch_mul=2)
    assert rec.mask.dtype == torch.bool and rec.mask.shape == (3, 16)
    assert rec.mask.sum(dim=1).tolist() == [num_masked] * 3
    assert rec.head_sample.shape == (num_masked * 3 * 2, 32)
    # The head's condition is the transformer output at the masked positions (row-major), tiled ×2.
    assert torch.equal(rec.head_condition, torch.cat([rec.hidden[rec.mask]] * 2))


def test_targets_are_the_masked_tokens(tiny, monkeypatch):
    rows = 8 * 3 * 4
    # t ≥ 1: this head's large ε̂ makes the t = 0 decoder NLL of far-off tokens hit the float32 saturation of the
    # tanh CDF (as in MAR), where a float64 reference legitimately differs; t = 0 is covered with `make_head` above.
    t = 1 + torch.arange(rows) * 13 % (NUM_TRAIN_TIMESTEPS - 1)
    noise = torch.randn(rows, 32, generator=torch.Generator().manual_seed(5))
    FixedDraws(monkeypatch, t, noise)
    loss, rec = run(tiny, mask_ratio=0.5, diffusion_batch_mul=4)
    targets = torch.cat([tiny["tokens"][rec.mask]] * 4)
    torch.testing.assert_close(rec.head_sample.double(), reference_noisy(targets, t, noise), rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        expected = reference_hybrid_loss(tiny["head"], targets, rec.head_condition, t, noise).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_truncated_normal_ratio_sets_the_row_count(tiny, monkeypatch):
    drawn = []

    def recording_sample_mask_ratio(generator, min_mask_ratio=0.7):
        drawn.append((sample_mask_ratio(generator, min_mask_ratio), min_mask_ratio))
        return drawn[-1][0]

    monkeypatch.setattr(losses, "sample_mask_ratio", recording_sample_mask_ratio)
    counts = set()
    for min_mask_ratio in (0.7, 0.3):
        for seed in range(6):
            drawn.clear()
            _, rec = run(tiny, seed=seed, min_mask_ratio=min_mask_ratio, diffusion_batch_mul=3)
            ((ratio, q),) = drawn  # one draw per batch
            assert q == min_mask_ratio and min_mask_ratio <= ratio <= 1.0
            num_masked = math.ceil(16 * ratio)
            assert rec.mask.sum(dim=1).tolist() == [num_masked] * 3
            assert rec.head_sample.shape[0] == num_masked * 3 * 3
            counts.add(num_masked)
    assert len(counts) > 1


def test_masked_values_enter_only_as_targets_visible_only_through_the_transformer(tiny):
    reference_loss, rec = run(tiny, mask_ratio=0.5)
    mask = rec.mask
    noise = torch.randn(tiny["tokens"].shape, generator=torch.Generator().manual_seed(9))

    changed_masked = torch.where(mask.unsqueeze(-1), tiny["tokens"] + noise, tiny["tokens"])
    loss_masked, rec_masked = run(tiny, tokens=changed_masked, mask_ratio=0.5)
    assert torch.equal(rec_masked.mask, mask)  # the mask does not depend on the token values
    assert torch.equal(rec_masked.head_condition, rec.head_condition)  # the encoder never sees masked values
    assert not torch.equal(rec_masked.head_sample, rec.head_sample)  # ... but they are the targets
    assert loss_masked != reference_loss

    changed_visible = torch.where(mask.unsqueeze(-1), tiny["tokens"], tiny["tokens"] + noise)
    loss_visible, rec_visible = run(tiny, tokens=changed_visible, mask_ratio=0.5)
    assert torch.equal(rec_visible.head_sample, rec.head_sample)  # same targets, same t and ε
    assert not torch.allclose(rec_visible.head_condition, rec.head_condition)  # the context changed
    assert loss_visible != reference_loss


def test_full_mask_loss_depends_on_tokens_only_through_targets(tiny):
    other_tokens = torch.randn(tiny["tokens"].shape, generator=torch.Generator().manual_seed(4))
    loss_a, rec_a = run(tiny, mask_ratio=1.0)
    loss_b, rec_b = run(tiny, tokens=other_tokens, mask_ratio=1.0)
    assert rec_a.mask.all()
    assert torch.equal(rec_a.hidden, rec_b.hidden)  # no latent reaches the encoder
    assert loss_a != loss_b


def test_condition_drop(tiny):
    dropped_a, rec_a = run(tiny, encoder_hidden_states=tiny["text"], condition_drop_prob=1.0)
    dropped_b, rec_b = run(tiny, encoder_hidden_states=tiny["other_text"], condition_drop_prob=1.0)
    assert torch.equal(dropped_a, dropped_b)
    assert torch.equal(rec_a.hidden, rec_b.hidden)
    kept_a, _ = run(tiny, encoder_hidden_states=tiny["text"], condition_drop_prob=0.0)
    kept_b, _ = run(tiny, encoder_hidden_states=tiny["other_text"], condition_drop_prob=0.0)
    assert kept_a != kept_b and kept_a != dropped_a


def test_unconditional_equals_dropped_condition(tiny, monkeypatch):
    """The null path is the same function (equal up to float rounding: the padded attention differs, ~1e-6); with the
    generator, the text path draws the drop decision before t and ε, so only fixed draws give equal losses."""
    rows = 8 * 3 * 2
    FixedDraws(monkeypatch, torch.arange(rows) * 21 % NUM_TRAIN_TIMESTEPS, torch.randn(rows, 32))
    unconditional, rec_u = run(tiny, mask_ratio=0.5)
    dropped, rec_d = run(tiny, mask_ratio=0.5, encoder_hidden_states=tiny["text"], condition_drop_prob=1.0)
    kept, rec_k = run(tiny, mask_ratio=0.5, encoder_hidden_states=tiny["text"], condition_drop_prob=0.0)
    assert torch.equal(rec_u.mask, rec_d.mask)
    torch.testing.assert_close(rec_u.head_condition, rec_d.head_condition, rtol=1e-5, atol=1e-5)
    assert unconditional.item() == pytest.approx(dropped.item(), rel=1e-5)
    assert (rec_u.head_condition - rec_k.head_condition).abs().max() > 1e-2
    assert kept.item() != pytest.approx(unconditional.item(), rel=1e-3)


def test_same_generator_seed_same_loss(tiny):
    first, _ = run(tiny, seed=3, encoder_hidden_states=tiny["text"], condition_drop_prob=0.5)
    second, _ = run(tiny, seed=3, encoder_hidden_states=tiny["text"], condition_drop_prob=0.5)
    other, _ = run(tiny, seed=4, encoder_hidden_states=tiny["text"], condition_drop_prob=0.5)
    assert torch.equal(first, second) and not torch.equal(first, other)


@pytest.mark.parametrize("conditional", [True, False])
def test_gradients_reach_transformer_and_head(tiny, conditional):
    transformer, head = copy.deepcopy(tiny["transformer"]), copy.deepcopy(tiny["head"])
    kwargs = {"encoder_hidden_states": tiny["text"]} if conditional else {}
    loss = masked_generative_loss(
        transformer,
        head,
        tiny["scheduler"],
        tiny["tokens"],
        torch.Generator().manual_seed(0),
        mask_ratio=0.5,
        **kwargs,
    )
    loss.backward()
    unused = {"null_condition"} if conditional else {"text_proj.weight", "text_proj.bias"}
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    for name, parameter in transformer.named_parameters():
        reached = parameter.grad is not None and bool(parameter.grad.abs().sum() > 0)
        assert reached != (name in unused), name


@pytest.mark.parametrize("mask_ratio", [0.0, -0.5, 1.5])
def test_mask_ratio_validation(tiny, mask_ratio):
    with pytest.raises(ValueError):
        run(tiny, mask_ratio=mask_ratio)


def per_sample_loss(tiny, samples, seeds, **kwargs):
    with torch.no_grad():
        return masked_generative_loss(
            tiny["transformer"],
            tiny["head"],
            tiny["scheduler"],
            tiny["tokens"][samples],
            [torch.Generator().manual_seed(seed) for seed in seeds],
            mask_ratio=0.5,
            diffusion_batch_mul=2,
            encoder_hidden_states=tiny["text"][samples],
            condition_drop_prob=0.5,
            **kwargs,
        )


def test_one_generator_per_sample_makes_the_loss_independent_of_how_the_batch_is_split(tiny):
    """What distributed training relies on: the loss of a batch of three is the mean of its samples' losses computed
    one at a time with the same generators (every sample masks as many tokens, so the means weigh them equally)."""
    whole = per_sample_loss(tiny, [0, 1, 2], seeds=[5, 6, 7])
    one_at_a_time = [per_sample_loss(tiny, [index], seeds=[seed]) for index, seed in zip([0, 1, 2], [5, 6, 7])]
    torch.testing.assert_close(whole, torch.stack(one_at_a_time).mean(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(whole, per_sample_loss(tiny, [0, 1, 2], seeds=[5, 6, 8]))  # the generators are used


def test_one_generator_per_sample_needs_the_batchs_mask_ratio_and_one_generator_each(tiny):
    generators = [torch.Generator().manual_seed(seed) for seed in range(3)]
    arguments = (tiny["transformer"], tiny["head"], tiny["scheduler"], tiny["tokens"])
    with pytest.raises(ValueError, match="pass `mask_ratio`"):
        masked_generative_loss(*arguments, generators)
    with pytest.raises(ValueError, match="2 generators for a batch of 3"):
        masked_generative_loss(*arguments, generators[:2], mask_ratio=0.5)


# ---------------------------------------------------------------------------------------------------------------------
# Inpainting batches (issue 16): masks restricted to a gap, gaps holding another sample's tokens and caption
# ---------------------------------------------------------------------------------------------------------------------


def gap_mask(starts, length, num_tokens=16):
    """`(len(starts), num_tokens)` bool: positions start..start+length-1 of each sample."""
    positions = torch.arange(num_tokens)
    return torch.stack([(positions >= start) & (positions < start + length) for start in starts])


@pytest.mark.parametrize("mask_ratio, num_masked", [(0.2, 2), (0.5, 3), (1.0, 6)])
def test_maskable_positions_bound_the_mask(tiny, mask_ratio, num_masked):
    """⌈G·r⌉ of the G maskable positions are masked, none outside them; the head sees exactly those rows."""
    maskable = gap_mask([0, 4, 10], 6)
    _, rec = run(tiny, mask_ratio=mask_ratio, maskable=maskable)
    assert rec.mask.sum(dim=1).tolist() == [num_masked] * 3
    assert not (rec.mask & ~maskable).any()
    assert rec.head_sample.shape == (num_masked * 3 * 2, 32)
    if mask_ratio == 1.0:
        assert torch.equal(rec.mask, maskable)


def test_every_position_maskable_is_the_plain_objective(tiny):
    """Restricting to all positions keeps each sample's random order: the same mask and the same loss."""
    plain_loss, plain = run(tiny, mask_ratio=0.5)
    loss, rec = run(tiny, mask_ratio=0.5, maskable=torch.ones(3, 16, dtype=torch.bool))
    assert torch.equal(rec.mask, plain.mask) and torch.equal(loss, plain_loss)


def test_maskable_must_have_the_batchs_shape_and_one_count(tiny):
    with pytest.raises(ValueError, match="same positive number of positions"):
        run(tiny, mask_ratio=0.5, maskable=torch.cat([gap_mask([0], 4), gap_mask([0, 0], 5)]))
    with pytest.raises(ValueError, match=r"\(3, 16\)"):
        run(tiny, mask_ratio=0.5, maskable=gap_mask([0, 0, 0], 4, num_tokens=8))
    with pytest.raises(ValueError, match="same positive number of positions"):
        run(tiny, mask_ratio=0.5, maskable=torch.zeros(3, 16, dtype=torch.bool))


def test_splice_inpainting_gaps_puts_the_next_samples_beginning_and_caption_in_each_gap():
    batch_size, tokens_per_column, num_columns, gap_columns = 4, 2, 8, 3
    tokens = torch.randn(batch_size, num_columns * tokens_per_column, 5, generator=torch.Generator().manual_seed(0))
    condition = {
        "encoder_hidden_states": torch.randn(batch_size, 7, 6),
        "encoder_attention_mask": torch.rand(batch_size, 7) > 0.5,
        "pooled_projections": None,
    }
    generators = [torch.Generator().manual_seed(seed) for seed in range(batch_size)]
    spliced, spliced_condition, maskable = splice_inpainting_gaps(
        tokens, condition, tokens_per_column, gap_columns, generators
    )
    grid = tokens.reshape(batch_size, num_columns, tokens_per_column, 5)
    spliced_grid = spliced.reshape(batch_size, num_columns, tokens_per_column, 5)
    gap_columns_seen = maskable.reshape(batch_size, num_columns, tokens_per_column)
    assert (gap_columns_seen.all(dim=2) == gap_columns_seen.any(dim=2)).all()  # whole columns
    starts = []
    for sample in range(batch_size):
        (columns,) = torch.nonzero(gap_columns_seen[sample, :, 0], as_tuple=True)
        assert columns.tolist() == list(range(columns[0], columns[0] + gap_columns))
        start, partner = int(columns[0]), (sample + 1) % batch_size
        starts.append(start)
        kept = torch.ones(num_columns, dtype=torch.bool)
        kept[start : start + gap_columns] = False
        assert torch.equal(spliced_grid[sample, kept], grid[sample, kept])
        assert torch.equal(spliced_grid[sample, start : start + gap_columns], grid[partner, :gap_columns])
        for name in ("encoder_hidden_states", "encoder_attention_mask"):
            assert torch.equal(spliced_condition[name][sample], condition[name][partner])
    assert spliced_condition["pooled_projections"] is None
    assert len(set(starts)) > 1  # the starts are drawn per sample
    # Each sample's start comes from its own generator, whatever the batch around it.
    again = [torch.Generator().manual_seed(seed) for seed in range(batch_size)]
    _, _, first_two = splice_inpainting_gaps(tokens[:2], {}, tokens_per_column, gap_columns, again[:2])
    assert torch.equal(first_two, maskable[:2])


def test_splice_inpainting_gaps_own_gaps_keep_the_samples_tokens_and_caption():
    """`own_gap_prob`: those samples keep their own tokens and caption, their gap still the only maskable part; the
    others are spliced as without it, from the same gap starts (the own/other draw comes after the start)."""
    batch_size, tokens_per_column, num_columns, gap_columns = 64, 2, 8, 3
    tokens = torch.randn(batch_size, num_columns * tokens_per_column, 5, generator=torch.Generator().manual_seed(0))
    condition = {"pooled_projections": torch.randn(batch_size, 6)}

    def generators():
        return [torch.Generator().manual_seed(seed) for seed in range(batch_size)]

    other, other_condition, other_gap = splice_inpainting_gaps(
        tokens, condition, tokens_per_column, gap_columns, generators()
    )
    mixed, mixed_condition, mixed_gap = splice_inpainting_gaps(
        tokens, condition, tokens_per_column, gap_columns, generators(), own_gap_prob=0.5
    )
    assert torch.equal(mixed_gap, other_gap)
    own = (mixed == tokens).flatten(1).all(dim=1)
    spliced = (mixed == other).flatten(1).all(dim=1)
    assert (own ^ spliced).all() and 16 < int(own.sum()) < 48  # every sample is one or the other, about half own
    assert torch.equal(mixed_condition["pooled_projections"][own], condition["pooled_projections"][own])
    assert torch.equal(mixed_condition["pooled_projections"][spliced], other_condition["pooled_projections"][spliced])
    everything_own, own_condition, own_gap = splice_inpainting_gaps(
        tokens, condition, tokens_per_column, gap_columns, generators(), own_gap_prob=1.0
    )
    assert torch.equal(everything_own, tokens) and torch.equal(own_gap, other_gap)
    assert torch.equal(own_condition["pooled_projections"], condition["pooled_projections"])
    with pytest.raises(ValueError, match="`own_gap_prob` must be in \\[0, 1\\], got 1.5"):
        splice_inpainting_gaps(tokens, condition, tokens_per_column, gap_columns, generators(), own_gap_prob=1.5)


@pytest.mark.parametrize("tokens_per_column, gap_columns", [(2, 0), (2, 9), (3, 1)])
def test_splice_inpainting_gaps_refuses_gaps_that_do_not_fit(tokens_per_column, gap_columns):
    with pytest.raises(ValueError, match="`gap_columns` must be 1 to"):
        splice_inpainting_gaps(torch.zeros(2, 16, 4), {}, tokens_per_column, gap_columns, torch.Generator())
