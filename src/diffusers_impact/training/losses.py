# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""IMPACT's training objective (paper §3.1, Eq. 2) with MAR's masking and hybrid diffusion loss (mar.md §4–§5), and
AudioDEAR's: the energy score of a one-step head with representation distillation from a diffusion-trained teacher."""

import contextlib
import math

import scipy.stats
import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from ..schedulers import ImpactDiffHeadScheduler, mask_from_orders, random_orders


_LOG_2 = math.log(2.0)


def sample_mask_ratio(generator: torch.Generator, min_mask_ratio: float = 0.7) -> float:
    """
    One mask ratio per batch from N(1, 0.25²) truncated to [`min_mask_ratio`, 1] (MAR; the paper's q = 0.7, §4.2).

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact.training.losses import sample_mask_ratio

    >>> ratios = [sample_mask_ratio(torch.Generator().manual_seed(seed)) for seed in range(1000)]
    >>> 0.7 <= min(ratios) and max(ratios) <= 1.0, round(sum(ratios) / len(ratios), 2)  # mean 0.867
    (True, 0.87)
    ```
    """
    if not 0.0 < min_mask_ratio <= 1.0:
        raise ValueError(f"`min_mask_ratio` must be in (0, 1], got {min_mask_ratio}.")
    uniform = torch.rand((), generator=generator, dtype=torch.float64).item()
    if min_mask_ratio == 1.0:  # a degenerate truncation interval: every token masked
        return 1.0
    lower = (min_mask_ratio - 1.0) / 0.25
    return float(scipy.stats.truncnorm.ppf(uniform, lower, 0.0, loc=1.0, scale=0.25))


def uniform_per_sample(batch_size: int, generator: torch.Generator | list[torch.Generator]) -> torch.Tensor:
    """
    One draw from U[0, 1) per sample: `batch_size` draws from one generator, or one from each generator of a list
    (one per sample), like `randn_tensor`'s generator lists.

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact.training.losses import uniform_per_sample

    >>> generators = [torch.Generator().manual_seed(seed) for seed in (0, 1)]
    >>> torch.equal(uniform_per_sample(2, generators)[1:], uniform_per_sample(1, [torch.Generator().manual_seed(1)]))
    True
    ```
    """
    if isinstance(generator, list):
        return torch.cat([torch.rand(1, generator=g) for g in generator])
    return torch.rand(batch_size, generator=generator)


def splice_inpainting_gaps(
    tokens: torch.Tensor,
    condition: dict[str, torch.Tensor | None],
    tokens_per_column: int,
    gap_columns: int,
    generator: torch.Generator | list[torch.Generator],
    own_gap_prob: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor | None], torch.BoolTensor]:
    """
    A batch of inpainting examples with another sound (issue 16): each sample keeps its own tokens around a gap of
    `gap_columns` token columns at a random start; the gap holds the first `gap_columns` columns of the next sample of
    the batch (the batch rolled by one), whose text condition the sample takes. Returns the spliced tokens, that
    condition and the gap, to pass as `maskable` to [`masked_generative_loss`]: the model learns to generate what the
    text asks for between kept tokens of another sound, which is what an inpainting call asks of it. With
    `own_gap_prob`, that share of the samples (drawn per sample) keeps its own tokens and caption in the gap instead:
    the same sound on both sides of the boundary, which is what a continuation or a same-sound inpainting asks.

    Args:
        tokens (`torch.Tensor` of shape `(batch_size, num_tokens, token_dim)`): Latent tokens in time-major raster
            order ([`ImpactTransformer.patchify`]).
        condition (`dict`): The text condition's tensors, each with the batch first (`None` entries stay `None`).
        tokens_per_column (`int`): Tokens per token column (the latent's frequency rows over the patch size).
        gap_columns (`int`): The gap's length in token columns, 1 to the number of columns.
        generator (`torch.Generator` or a list of them, one per sample): Draws each sample's gap start (and, with
            `own_gap_prob`, then whether its gap is its own).
        own_gap_prob (`float`, defaults to 0): Probability that a sample's gap holds its own tokens and it keeps its
            own caption. At 0 nothing more is drawn.

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact.training.losses import splice_inpainting_gaps

    >>> tokens = torch.arange(2 * 8, dtype=torch.float32).reshape(2, 8, 1)  # 2 samples, 4 columns of 2 tokens
    >>> condition = {"pooled_projections": torch.tensor([[10.0], [20.0]]), "encoder_hidden_states": None}
    >>> spliced, condition, gap = splice_inpainting_gaps(tokens, condition, 2, 1, torch.Generator().manual_seed(0))
    >>> spliced[..., 0]  # each gap holds the other sample's first column
    tensor([[ 0.,  1.,  8.,  9.,  4.,  5.,  6.,  7.],
            [ 8.,  9., 10., 11., 12., 13.,  0.,  1.]])
    >>> gap
    tensor([[False, False,  True,  True, False, False, False, False],
            [False, False, False, False, False, False,  True,  True]])
    >>> condition["pooled_projections"][:, 0]  # and the other sample's text
    tensor([20., 10.])
    ```
    """
    batch_size, num_tokens, token_dim = tokens.shape
    num_columns = num_tokens // tokens_per_column
    if num_columns * tokens_per_column != num_tokens or not 0 < gap_columns <= num_columns:
        raise ValueError(
            f"`gap_columns` must be 1 to {num_columns} and `tokens_per_column` divide {num_tokens} tokens, got "
            f"gap_columns={gap_columns} and tokens_per_column={tokens_per_column}."
        )
    if not 0 <= own_gap_prob <= 1:
        raise ValueError(f"`own_gap_prob` must be in [0, 1], got {own_gap_prob}.")
    samples, columns = torch.arange(batch_size)[:, None], torch.arange(num_columns)[None]
    partners = samples.roll(-1, dims=0)
    starts = (uniform_per_sample(batch_size, generator) * (num_columns - gap_columns + 1)).long()[:, None]
    in_gap = (columns >= starts) & (columns < starts + gap_columns)
    if own_gap_prob > 0:
        partners = torch.where(uniform_per_sample(batch_size, generator)[:, None] < own_gap_prob, samples, partners)
    spliced_in = in_gap & (partners != samples)
    source_samples = torch.where(spliced_in, partners, samples).to(tokens.device)
    source_columns = torch.where(spliced_in, columns - starts, columns).to(tokens.device)
    grid = tokens.reshape(batch_size, num_columns, tokens_per_column, token_dim)
    spliced = grid[source_samples, source_columns].reshape(tokens.shape)
    partners = partners[:, 0]
    condition = {
        name: None if value is None else value[partners.to(value.device)] for name, value in condition.items()
    }
    return spliced, condition, in_gap.repeat_interleave(tokens_per_column, dim=1).to(tokens.device)


def _normal_kl(mean1, log_variance1, mean2, log_variance2):
    """KL(N(mean1, exp(log_variance1)) ‖ N(mean2, exp(log_variance2))), elementwise."""
    return 0.5 * (
        -1.0
        + log_variance2
        - log_variance1
        + torch.exp(log_variance1 - log_variance2)
        + (mean1 - mean2) ** 2 * torch.exp(-log_variance2)
    )


def _discretized_gaussian_log_likelihood(x, means, log_scales):
    """Log-likelihood of x under a Gaussian discretised into bins of width 2/255 (IDDPM's decoder term at t = 0)."""

    def standard_normal_cdf(value):  # IDDPM's tanh approximation
        return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (value + 0.044715 * value**3)))

    centered = x - means
    inverse_std = torch.exp(-log_scales)
    cdf_plus = standard_normal_cdf(inverse_std * (centered + 1.0 / 255.0))
    cdf_minus = standard_normal_cdf(inverse_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_minus = torch.log((1.0 - cdf_minus).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_minus).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, log_cdf_delta))


def diffusion_head_loss(
    diff_head: torch.nn.Module,
    noise_scheduler: ImpactDiffHeadScheduler,
    target_tokens: torch.Tensor,
    hidden_states: torch.Tensor,
    generator: torch.Generator | list[torch.Generator],
    diffusion_batch_mul: int = 4,
) -> torch.Tensor:
    """
    The diffusion head's loss on the masked tokens (Eq. 2 with MAR's hybrid objective, mar.md §4).

    Each token is repeated `diffusion_batch_mul` times (MAR tiles, it does not interleave), given a uniform timestep
    t ∈ [0, T) and noise ε, and the head predicts ε̂ and the learned-range value v from x_t and its hidden vector.
    Per token: mean_C (ε − ε̂)² plus, for the variance, the KL between q(x_{t−1} | x_t, x_0) and the model's
    p(x_{t−1} | x_t) with a stop-gradient on ε̂ (in bits; the discretised decoder likelihood at t = 0). Returns the mean.

    Args:
        diff_head: The [`ImpactDiffHead`] (possibly wrapped for distributed training).
        noise_scheduler ([`ImpactDiffHeadScheduler`]): On its full training schedule (as constructed).
        target_tokens (`torch.Tensor` of shape `(num_masked, token_dim)`): Clean latent tokens x_0 at masked positions.
        hidden_states (`torch.Tensor` of shape `(num_masked, hidden_size)`): Their transformer hidden vectors h_i.
        generator (`torch.Generator` or a list of them): CPU generator for t and ε (draws are made on the CPU, then
            moved). A list holds one generator per sample, the rows being the samples' tokens in order, the same
            number per sample; each sample's draws then do not depend on the other samples in the batch.
        diffusion_batch_mul (`int`, defaults to 4): Noise draws per token.
    """
    if noise_scheduler.num_inference_steps != noise_scheduler.config.num_train_timesteps:
        raise ValueError("`noise_scheduler` must be on its full training schedule (do not call `set_timesteps`).")
    target = target_tokens.repeat(diffusion_batch_mul, 1)
    condition = hidden_states.repeat(diffusion_batch_mul, 1)
    num_rows, token_dim = target.shape
    num_timesteps = noise_scheduler.config.num_train_timesteps
    if isinstance(generator, list):
        # Per sample: its (diffusion_batch_mul, tokens) draws, laid out as `repeat` tiles the rows (copy-major).
        tokens_per_sample = len(target_tokens) // len(generator)
        shape = (diffusion_batch_mul, tokens_per_sample)
        timesteps = torch.stack([torch.randint(0, num_timesteps, shape, generator=g) for g in generator], dim=1)
        noise = torch.stack([torch.randn((*shape, token_dim), generator=g) for g in generator], dim=1)
        timesteps = timesteps.reshape(num_rows)
        noise = noise.reshape(num_rows, token_dim).to(target.device, target.dtype)
    else:
        timesteps = torch.randint(0, num_timesteps, (num_rows,), generator=generator)
        noise = randn_tensor(target.shape, generator=generator, device=target.device, dtype=target.dtype)
    timesteps = timesteps.to(target.device)
    noisy = noise_scheduler.add_noise(target, noise, timesteps)
    output = diff_head(noisy, timesteps, condition).sample.float()
    epsilon = output[:, :token_dim]
    loss = (noise.float() - epsilon).square().mean(dim=1)
    if output.shape[1] == 2 * token_dim:  # learned variance: add the VB term with a frozen mean (IDDPM "hybrid")
        frozen_output = torch.cat([epsilon.detach(), output[:, token_dim:]], dim=1)
        noisy, target = noisy.float(), target.float()
        _, model_mean, model_log_variance = noise_scheduler.p_mean_variance(frozen_output, noisy, timesteps)
        true_mean, true_log_variance = noise_scheduler.q_posterior_mean_variance(target, noisy, timesteps)
        kl = _normal_kl(true_mean, true_log_variance, model_mean, model_log_variance).mean(dim=1) / _LOG_2
        decoder_nll = -_discretized_gaussian_log_likelihood(target, model_mean, 0.5 * model_log_variance).mean(dim=1)
        loss = loss + torch.where(timesteps == 0, decoder_nll / _LOG_2, kl)
    return loss.mean()


def energy_score_loss(
    samples: torch.Tensor,
    target_tokens: torch.Tensor,
    alpha: float = 1.0,
    repulsion_weight: float = 1.0,
    token_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    The energy score of a one-step head's samples against the targets, averaged over the tokens in the loss.

    Per token, with m ≥ 2 samples x_1..x_m drawn for the same hidden vector and the target y:
    `(1/m) Σ_i ‖x_i − y‖^α − λ / (2m(m−1)) Σ_{i≠j} ‖x_i − x_j‖^α`, the unbiased estimate of the energy score
    `E‖X − y‖^α − ½ E‖X − X′‖^α` (strictly proper for α in (0, 2) and λ = 1: its expectation over y is smallest
    when the head's distribution is the data's). For m = 2 and λ = 1 it is half of EAR's
    `‖x_1 − y‖ + ‖x_2 − y‖ − ‖x_1 − x_2‖`. λ < 1 weakens the repulsion (EAR's training temperature).

    Args:
        samples (`torch.Tensor` of shape `(m, num_tokens, token_dim)`): m head samples per token.
        target_tokens (`torch.Tensor` of shape `(num_tokens, token_dim)`): The clean latent tokens y.
        alpha (`float`, defaults to 1.0): The exponent α, in (0, 2).
        repulsion_weight (`float`, defaults to 1.0): λ.
        token_weights (`torch.Tensor` of shape `(num_tokens,)`, *optional*): Weights of a masked mean (Eq. 2: 1 on
            the masked tokens, 0 elsewhere); a plain mean without them.

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact.training.losses import energy_score_loss

    >>> target = torch.zeros(1, 1)
    >>> energy_score_loss(torch.tensor([[[1.0]], [[3.0]]]), target)  # (1 + 3) / 2 − (2 + 2) / (2 · 2 · 1)
    tensor(1.)
    ```
    """
    if samples.ndim != 3 or samples.shape[0] < 2 or samples.shape[1:] != target_tokens.shape:
        raise ValueError(
            f"`samples` has shape {tuple(samples.shape)} for targets of shape {tuple(target_tokens.shape)}; expected "
            f"(m, {', '.join(map(str, target_tokens.shape))}) with m >= 2 samples per token."
        )
    if not 0.0 < alpha < 2.0:
        raise ValueError(f"`alpha` must be in (0, 2) for the energy score to be proper, got {alpha}.")
    num_samples = samples.shape[0]
    samples = samples.float()
    attraction = torch.linalg.vector_norm(samples - target_tokens.float(), dim=-1).pow(alpha).mean(dim=0)
    # Σ over ordered pairs i ≠ j is twice the sum over i < j.
    first, second = torch.triu_indices(num_samples, num_samples, offset=1, device=samples.device)
    pairwise = torch.linalg.vector_norm(samples[first] - samples[second], dim=-1).pow(alpha).sum(dim=0)
    repulsion = repulsion_weight * pairwise / (num_samples * (num_samples - 1))
    score = attraction - repulsion
    if token_weights is None:
        return score.mean()
    token_weights = token_weights.to(score.dtype)
    return (score * token_weights).sum() / token_weights.sum()


def _masked_forward(
    transformer: torch.nn.Module,
    tokens: torch.Tensor,
    generator: torch.Generator | list[torch.Generator],
    min_mask_ratio: float,
    mask_ratio: float | None,
    condition_drop_prob: float,
    condition: dict[str, torch.Tensor | None],
    maskable: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """
    The masking and transformer pass shared by both objectives: a ratio r (truncated normal on [q, 1], or
    `mask_ratio`), ⌈N·r⌉ random masked positions per sample (⌈G·r⌉ of the G `maskable` ones, the others always
    visible, when given), each sample's text replaced by the null condition with probability `condition_drop_prob`.
    Returns the hidden states `(B, N, D)`, the mask `(B, N)` and the transformer's inputs (so that a teacher can see
    exactly the same ones).
    """
    batch_size, num_tokens, _ = tokens.shape
    per_sample = isinstance(generator, list)
    if per_sample and len(generator) != batch_size:
        raise ValueError(f"`generator` is a list of {len(generator)} generators for a batch of {batch_size} samples.")
    if per_sample and mask_ratio is None:
        raise ValueError("With one generator per sample, pass `mask_ratio`, drawn once for the whole batch.")
    ratio = sample_mask_ratio(generator, min_mask_ratio) if mask_ratio is None else mask_ratio
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"`mask_ratio` must be in (0, 1], got {ratio}.")
    orders = random_orders(batch_size, num_tokens, generator=generator)
    num_candidates = num_tokens
    if maskable is not None:
        counts = maskable.sum(dim=-1).unique().tolist()
        if maskable.shape != (batch_size, num_tokens) or len(counts) != 1 or counts[0] == 0:
            raise ValueError(
                f"`maskable` must be a `(batch_size, num_tokens)` = {(batch_size, num_tokens)} boolean mask with the "
                f"same positive number of positions in every sample, got shape {tuple(maskable.shape)} and counts "
                f"{counts}."
            )
        # Each sample's random order restricted to its maskable positions, which come first (a stable sort).
        outside = (~maskable.cpu()).gather(1, orders).to(torch.int8)
        orders = orders.gather(1, torch.argsort(outside, dim=1, stable=True))
        num_candidates = counts[0]
    mask = mask_from_orders(orders, math.ceil(num_candidates * ratio)).to(tokens.device)
    drop_condition = None
    if condition.get("encoder_hidden_states") is not None:
        drop_condition = uniform_per_sample(batch_size, generator).to(tokens.device) < condition_drop_prob
    condition = {**condition, "drop_condition": drop_condition}
    return transformer(tokens, mask, **condition).sample, mask, {"hidden_states": tokens, "mask": mask, **condition}


def masked_generative_loss(
    transformer: torch.nn.Module,
    diff_head: torch.nn.Module,
    noise_scheduler: ImpactDiffHeadScheduler,
    tokens: torch.Tensor,
    generator: torch.Generator | list[torch.Generator],
    min_mask_ratio: float = 0.7,
    mask_ratio: float | None = None,
    diffusion_batch_mul: int = 4,
    encoder_hidden_states: torch.Tensor | None = None,
    encoder_attention_mask: torch.Tensor | None = None,
    pooled_projections: torch.Tensor | None = None,
    condition_drop_prob: float = 0.0,
    maskable: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    IMPACT's training loss for one batch (paper §3.1, Eq. 1–2).

    A ratio r is drawn once per batch (truncated normal on [q, 1], or `mask_ratio` if given), ⌈N·r⌉ random positions
    of every sample are masked and dropped from the encoder, and the head's loss is taken on the masked tokens only.
    Without `encoder_hidden_states` the model trains unconditionally (§3.1.2, null condition); with them, each
    sample's text is replaced by the null condition with probability `condition_drop_prob` (classifier-free guidance).

    Args:
        transformer: The [`ImpactTransformer`] (possibly wrapped for distributed training).
        diff_head: The [`ImpactDiffHead`] (possibly wrapped).
        noise_scheduler ([`ImpactDiffHeadScheduler`]): On its full training schedule.
        tokens (`torch.Tensor` of shape `(batch_size, num_tokens, token_dim)`): Clean latent tokens (patchified,
            already multiplied by the VAE scaling factor).
        generator (`torch.Generator` or a list of them): CPU generator for the ratio, positions, condition drops,
            timesteps and noise of this batch. A list holds one generator per sample, for draws that do not depend on
            how a batch is split across processes (then pass `mask_ratio`, drawn once for the whole batch). Dropout
            draws from torch's global RNG: seed it too for reproducible runs (the training script reseeds it per
            batch).
        min_mask_ratio (`float`, defaults to 0.7): q.
        mask_ratio (`float`, *optional*): A fixed ratio instead of the truncated normal.
        diffusion_batch_mul (`int`, defaults to 4): Noise draws per masked token.
        encoder_hidden_states, encoder_attention_mask, pooled_projections: The text condition, as for the transformer.
        condition_drop_prob (`float`, defaults to 0.0): Probability of the null condition per sample (paper: 0.1).
        maskable (`torch.BoolTensor` of shape `(batch_size, num_tokens)`, *optional*): Only these positions can be
            masked (the same number G in every sample, of which ⌈G·r⌉ are); the others are always visible, as the
            kept tokens of an inpainting call are (`splice_inpainting_gaps`).
    """
    condition = {
        "encoder_hidden_states": encoder_hidden_states,
        "encoder_attention_mask": encoder_attention_mask,
        "pooled_projections": pooled_projections,
    }
    hidden_states, mask, _ = _masked_forward(
        transformer, tokens, generator, min_mask_ratio, mask_ratio, condition_drop_prob, condition, maskable
    )
    # Eq. 2: only masked positions enter the loss, so the head runs on those rows alone.
    return diffusion_head_loss(
        diff_head,
        noise_scheduler,
        tokens[mask],
        hidden_states[mask],
        generator,
        diffusion_batch_mul=diffusion_batch_mul,
    )


DISTILLATION_LOSSES = ("cosine", "mse")


def distillation_projector(student_channels: int, teacher_channels: int, width: int = 2048) -> nn.Sequential:
    """
    REPA's projector (Yu et al. 2025): an MLP Linear–SiLU–Linear–SiLU–Linear from the student's hidden vectors to the
    teacher's. It is trained with the student and discarded afterwards (the pipeline does not contain it).

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact.training.losses import distillation_projector

    >>> distillation_projector(32, 48, width=64)(torch.randn(5, 32)).shape
    torch.Size([5, 48])
    ```
    """
    return nn.Sequential(
        nn.Linear(student_channels, width),
        nn.SiLU(),
        nn.Linear(width, width),
        nn.SiLU(),
        nn.Linear(width, teacher_channels),
    )


@contextlib.contextmanager
def _decoder_block_output(transformer: torch.nn.Module, layer: int | None):
    """The latent positions' output `(B, N, D)` of the transformer's decoder block `layer` (1-based) during the
    forward passes inside the context, in `captured["features"]`; nothing is captured for `layer=None`."""
    captured = {}
    if layer is None:
        yield captured
        return
    model = getattr(transformer, "module", transformer)  # DistributedDataParallel wraps the model
    num_tokens = model.num_tokens

    def keep_latent_positions(module, inputs, output):
        captured["features"] = output[:, -num_tokens:]  # the condition slots come first

    handle = model.decoder_blocks[layer - 1].register_forward_hook(keep_latent_positions)
    try:
        yield captured
    finally:
        handle.remove()


def representation_alignment_loss(
    student_features: torch.Tensor, teacher_features: torch.Tensor, projector: torch.nn.Module, kind: str = "cosine"
) -> torch.Tensor:
    """
    Representation distillation (AudioDEAR, in REPA's form): the projected student features against the frozen
    teacher's, per token, averaged: `1 − cos` (REPA's negative cosine similarity, shifted to be ≥ 0) or the mean
    squared error.

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact.training.losses import representation_alignment_loss

    >>> features = torch.randn(4, 8)
    >>> abs(float(representation_alignment_loss(features, 3 * features, torch.nn.Identity()))) < 1e-6  # cos = 1
    True
    ```
    """
    if kind not in DISTILLATION_LOSSES:
        raise ValueError(f"The distillation loss must be one of {DISTILLATION_LOSSES}, got {kind!r}.")
    projected = projector(student_features).float()
    teacher_features = teacher_features.float()
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(projected, teacher_features, dim=-1)).mean()
    return (projected - teacher_features).square().mean()


def masked_energy_loss(
    transformer: torch.nn.Module,
    energy_head: torch.nn.Module,
    tokens: torch.Tensor,
    generator: torch.Generator | list[torch.Generator],
    min_mask_ratio: float = 0.7,
    mask_ratio: float | None = None,
    num_samples: int = 2,
    alpha: float = 1.0,
    repulsion_weight: float = 1.0,
    encoder_hidden_states: torch.Tensor | None = None,
    encoder_attention_mask: torch.Tensor | None = None,
    pooled_projections: torch.Tensor | None = None,
    condition_drop_prob: float = 0.0,
    teacher: torch.nn.Module | None = None,
    projector: torch.nn.Module | None = None,
    distill_layer: int | None = None,
    distill_loss: str = "cosine",
    maskable: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """
    AudioDEAR's training losses for one batch: the masking of [`masked_generative_loss`], then the energy score of
    `num_samples` one-step head samples per masked token (`energy_score_loss`, the masked mean of Eq. 2) and, with a
    `teacher`, representation distillation on the masked tokens: the student's hidden vectors (those of decoder block
    `distill_layer`, or the transformer's output z for `None`), through `projector`, against the frozen teacher's
    output z for exactly the same input (tokens, mask, text and null-condition drops), the vectors its diffusion head
    was trained on.

    Args:
        transformer, energy_head: The student [`ImpactTransformer`] and [`ImpactEnergyHead`] (possibly wrapped).
        tokens, generator, min_mask_ratio, mask_ratio, condition_drop_prob, encoder_hidden_states,
        encoder_attention_mask, pooled_projections, maskable: As for [`masked_generative_loss`]; the generator also draws the
            head's noise, `(num_samples, N, noise_channels)` per sample.
        num_samples (`int`, defaults to 2): m ≥ 2 head samples per token (EAR: 2).
        alpha, repulsion_weight: α and λ of `energy_score_loss`.
        teacher (*optional*): The frozen teacher [`ImpactTransformer`], same token layout and text condition.
        projector (*optional*): Maps the student's features to the teacher's width (`distillation_projector`).
        distill_layer (`int`, *optional*): 1-based decoder block of the student whose output is aligned.
        distill_loss (`str`, defaults to `"cosine"`): `"cosine"` or `"mse"` (`representation_alignment_loss`).

    Returns:
        `dict`: `"energy"`, and `"distill"` with a teacher.
    """
    if (teacher is None) != (projector is None):
        raise ValueError("Pass `teacher` and `projector` together (distillation), or neither.")
    condition = {
        "encoder_hidden_states": encoder_hidden_states,
        "encoder_attention_mask": encoder_attention_mask,
        "pooled_projections": pooled_projections,
    }
    with _decoder_block_output(transformer, distill_layer) as captured:
        hidden_states, mask, inputs = _masked_forward(
            transformer, tokens, generator, min_mask_ratio, mask_ratio, condition_drop_prob, condition, maskable
        )
    noise_channels = getattr(energy_head, "module", energy_head).config.noise_channels
    batch_size, num_tokens, _ = tokens.shape
    noise = randn_tensor((batch_size, num_samples, num_tokens, noise_channels), generator=generator)
    noise = noise.to(tokens.device).transpose(0, 1)[:, mask]  # (m, masked tokens, noise_channels)
    condition_rows = hidden_states[mask]
    num_masked = condition_rows.shape[0]
    samples = energy_head(condition_rows.repeat(num_samples, 1), noise.reshape(num_samples * num_masked, -1)).sample
    losses = {
        "energy": energy_score_loss(
            samples.reshape(num_samples, num_masked, -1), tokens[mask], alpha=alpha, repulsion_weight=repulsion_weight
        )
    }
    if teacher is not None:
        with torch.no_grad():
            teacher_inputs = {
                key: value.to(teacher.dtype) if torch.is_tensor(value) and value.is_floating_point() else value
                for key, value in inputs.items()
            }
            teacher_features = teacher(**teacher_inputs).sample[mask]
        student_features = hidden_states if distill_layer is None else captured["features"]
        losses["distill"] = representation_alignment_loss(
            student_features[mask], teacher_features, projector, kind=distill_loss
        )
    return losses
