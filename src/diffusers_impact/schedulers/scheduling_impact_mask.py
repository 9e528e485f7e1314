# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Iterative mask-based parallel decoding schedule of IMPACT (paper §3.2, App. A, D.1, D.2)."""

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor


GUIDANCE_SCHEDULES = ("cosine", "linear", "constant")


def random_orders(
    batch_size: int,
    num_tokens: int,
    generator: torch.Generator | list[torch.Generator] | None = None,
    device: str | torch.device | None = None,
) -> torch.LongTensor:
    """One uniformly random order of the `num_tokens` positions per sample (a list of generators: one per sample)."""
    keys = randn_tensor((batch_size, num_tokens), generator=generator, device=torch.device(device or "cpu"))
    return torch.argsort(keys, dim=1).to(device)


def mask_from_orders(orders: torch.LongTensor, num_masked: int) -> torch.BoolTensor:
    """`True` at the first `num_masked` positions of each sample's order (the positions that are masked)."""
    mask = torch.zeros(orders.shape, dtype=torch.bool, device=orders.device)
    return mask.scatter_(1, orders[:, :num_masked], True)


@dataclass
class ImpactMaskSchedulerOutput(BaseOutput):
    """
    Output of [`ImpactMaskScheduler.step`].

    Args:
        prev_sample (`torch.Tensor` of shape `(batch_size, num_tokens, token_dim)`):
            The latent tokens with this iteration's predictions written in.
        mask (`torch.BoolTensor` of shape `(batch_size, num_tokens)`):
            `True` where a token is still masked after this iteration.
    """

    prev_sample: torch.Tensor
    mask: torch.Tensor


class ImpactMaskScheduler(SchedulerMixin, ConfigMixin):
    r"""
    Decides, for each of T decoding iterations, which latent tokens are generated and how strong the classifier-free
    guidance is.

    * Mask schedule (§3.2.2, MAR's clamp): before iteration t the tokens left masked after it number
      μ(t) = ⌊cos(π/2 · (t+1)/T) · N⌋, clamped to [1, n_masked − 1] so that every iteration predicts at least one
      token; the last iteration predicts all that remain. Iterations that would predict nothing (T > N) are skipped.
    * Random positions (§3.2.1, App. D.1): each sample draws one random order of the N positions from the caller's
      generator; tokens are generated from the end of the order towards its start, so the masks are nested,
      M(t+1) ⊆ M(t).
    * Given tokens (audio input: inpainting, continuation, variations): with `set_timesteps(...,
      num_tokens_to_generate=M)` and `sample_orders(..., given=...)` the schedule runs over the M tokens to generate,
      and the given ones stay visible from the first iteration.
    * Guidance (App. A, Eq. 5): β(t) = 1 + ζ(t)(β_max − 1) with ζ(t) = cos(π/2 · t/T) (`"cosine"`, the paper's
      default); MAR's `"linear"` (ζ = (N − μ(t))/N) and `"constant"` (ζ = 1) schedules are options.

    Args:
        guidance_schedule (`str`, defaults to `"cosine"`): One of `"cosine"`, `"linear"`, `"constant"`.

    Example:

    ```py
    >>> from diffusers_impact import ImpactMaskScheduler

    >>> scheduler = ImpactMaskScheduler()
    >>> scheduler.set_timesteps(4, num_tokens=16)
    >>> scheduler.num_tokens_to_predict  # tokens generated at each iteration
    [2, 3, 5, 6]
    >>> [round(scheduler.guidance_scale_at(i, 5.0), 3) for i in range(4)]
    [5.0, 4.696, 3.828, 2.531]
    ```
    """

    order = 1

    @register_to_config
    def __init__(self, guidance_schedule: str = "cosine"):
        if guidance_schedule not in GUIDANCE_SCHEDULES:
            raise ValueError(f"`guidance_schedule` must be one of {GUIDANCE_SCHEDULES}, got {guidance_schedule!r}.")
        self.timesteps = None
        self.num_inference_steps = None
        self.num_tokens = None
        self.num_tokens_to_generate = None

    def set_timesteps(
        self,
        num_inference_steps: int,
        num_tokens: int,
        device: str | torch.device | None = None,
        num_tokens_to_generate: int | None = None,
    ):
        """
        Compute the decoding schedule.

        Args:
            num_inference_steps (`int`): Number of decoding iterations T (any T ≥ 1; empty iterations are skipped).
            num_tokens (`int`): Number of latent tokens N.
            device (`str` or `torch.device`, *optional*): Device of `timesteps`.
            num_tokens_to_generate (`int`, *optional*): How many of the N tokens are masked at the start (default all
                N); the others are given (audio input: inpainting, continuation, variations). The schedule then runs
                over these M tokens, μ(t) = ⌊cos(π/2 · (t+1)/T) · M⌋, so that T iterations are spent on what is
                generated.
        """
        num_masked = num_tokens if num_tokens_to_generate is None else num_tokens_to_generate
        if num_inference_steps < 1 or num_tokens < 1 or not 1 <= num_masked <= num_tokens:
            raise ValueError(
                f"`num_inference_steps` ({num_inference_steps}) and `num_tokens` ({num_tokens}) must be positive, and "
                f"`num_tokens_to_generate` ({num_tokens_to_generate}) in [1, num_tokens]."
            )
        self.num_tokens_to_generate = total = num_masked
        kept_iterations, masked_before, masked_after, scheduled_after = [], [], [], []
        for iteration in range(num_inference_steps):
            # §3.2.2: μ(t) = ⌊cos(π/2·(t+1)/T)·N⌋ with MAR's clamp to [1, n_masked − 1].
            scheduled = max(
                1,
                min(
                    num_masked - 1,
                    math.floor(total * math.cos(math.pi / 2 * (iteration + 1) / num_inference_steps)),
                ),
            )
            after = 0 if iteration == num_inference_steps - 1 else scheduled
            if after < num_masked:  # skip iterations with nothing to predict (possible when T > N)
                kept_iterations.append(iteration)
                masked_before.append(num_masked)
                masked_after.append(after)
                scheduled_after.append(scheduled)
                num_masked = after
        self.num_inference_steps = num_inference_steps
        self.num_tokens = num_tokens
        self.timesteps = torch.tensor(kept_iterations, dtype=torch.long, device=device)
        self.num_masked_before = masked_before
        self.num_masked_after = masked_after
        self._scheduled_masked_after = scheduled_after

    @property
    def num_tokens_to_predict(self) -> list[int]:
        """Tokens generated at each kept iteration."""
        return [before - after for before, after in zip(self.num_masked_before, self.num_masked_after)]

    def guidance_scale_at(
        self, step_index: int, max_guidance_scale: float, guidance_schedule: str | None = None
    ) -> float:
        """
        Guidance scale β(t) of the `step_index`-th kept iteration (App. A, Eq. 5).

        Args:
            step_index (`int`): Index into `timesteps`.
            max_guidance_scale (`float`): β_max, the pipeline's `guidance_scale`.
            guidance_schedule (`str`, *optional*): Overrides the configured schedule for this call.
        """
        schedule = guidance_schedule or self.config.guidance_schedule
        if schedule == "cosine":  # ζ(t) = cos(π/2 · t/T)
            weight = math.cos(math.pi / 2 * int(self.timesteps[step_index]) / self.num_inference_steps)
        elif schedule == "linear":  # MAR: fraction already generated after this iteration, by the clamped schedule
            total = self.num_tokens_to_generate
            weight = (total - self._scheduled_masked_after[step_index]) / total
        elif schedule == "constant":
            weight = 1.0
        else:
            raise ValueError(f"`guidance_schedule` must be one of {GUIDANCE_SCHEDULES}, got {schedule!r}.")
        return 1.0 + weight * (max_guidance_scale - 1.0)

    def sample_orders(
        self,
        batch_size: int,
        generator: torch.Generator | list[torch.Generator] | None = None,
        device: str | torch.device | None = None,
        given: torch.BoolTensor | None = None,
    ) -> torch.LongTensor:
        """
        One uniformly random order of the N positions per sample (App. D.1), drawn from `generator` (a list gives
        every sample its own generator).

        `given` (`(batch_size, N)`, `True` at the tokens that are not generated) puts those positions after the masked
        ones, so that the first `num_tokens_to_generate` of each order are exactly the tokens to generate, in a uniformly
        random order. Each row must have `N − num_tokens_to_generate` given tokens. Without it the draw is unchanged.
        """
        if given is None:
            return random_orders(batch_size, self.num_tokens, generator=generator, device=device)
        num_given = self.num_tokens - self.num_tokens_to_generate
        if given.shape != (batch_size, self.num_tokens) or not (given.sum(dim=1) == num_given).all():
            raise ValueError(
                f"`given` must have shape ({batch_size}, {self.num_tokens}) with {num_given} given tokens per row "
                f"(N − num_tokens_to_generate), got shape {tuple(given.shape)} with {given.sum(dim=1).tolist()}."
            )
        keys = randn_tensor((batch_size, self.num_tokens), generator=generator, device=torch.device(device or "cpu"))
        keys = keys.masked_fill(given.to(keys.device), math.inf)  # given tokens sort last
        return torch.argsort(keys, dim=1, stable=True).to(device)

    def positions_to_predict(self, step_index: int, orders: torch.LongTensor) -> torch.LongTensor:
        """Positions `(batch_size, n)` generated at the `step_index`-th iteration: the tail of the still-masked part."""
        return orders[:, self.num_masked_after[step_index] : self.num_masked_before[step_index]]

    def mask_before(self, step_index: int, orders: torch.LongTensor) -> torch.BoolTensor:
        """`True` at the positions still masked before the `step_index`-th iteration."""
        return mask_from_orders(orders, self.num_masked_before[step_index])

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        orders: torch.LongTensor,
        return_dict: bool = True,
    ) -> ImpactMaskSchedulerOutput | tuple:
        """
        Write this iteration's generated tokens into the sequence.

        Args:
            model_output (`torch.Tensor` of shape `(batch_size, n, token_dim)`): The tokens sampled by the diffusion
                head for [`~ImpactMaskScheduler.positions_to_predict`].
            timestep (`int` or `torch.Tensor`): The current entry of `timesteps`.
            sample (`torch.Tensor` of shape `(batch_size, num_tokens, token_dim)`): The latent tokens so far.
            orders (`torch.LongTensor`): The orders from [`~ImpactMaskScheduler.sample_orders`].
            return_dict (`bool`, defaults to `True`): Return an [`ImpactMaskSchedulerOutput`] instead of a tuple.
        """
        step_index = int((self.timesteps == int(timestep)).nonzero()[0])
        positions = self.positions_to_predict(step_index, orders)
        if model_output.shape[:2] != positions.shape:
            raise ValueError(
                f"Expected {tuple(positions.shape)} generated tokens, got {tuple(model_output.shape[:2])}."
            )
        index = positions.unsqueeze(-1).expand(-1, -1, sample.shape[-1])
        prev_sample = sample.scatter(1, index, model_output.to(sample.dtype))
        mask = mask_from_orders(orders, self.num_masked_after[step_index])
        if not return_dict:
            return (prev_sample, mask)
        return ImpactMaskSchedulerOutput(prev_sample=prev_sample, mask=mask)

    def __len__(self):
        return self.num_inference_steps or 0
