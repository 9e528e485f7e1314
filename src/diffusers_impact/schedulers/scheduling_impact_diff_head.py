# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""MAR's respaced ancestral (DDPM) sampler with learned-range variance, run by IMPACT's diffusion head (paper Eq. 3)."""

import math
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor


@dataclass
class ImpactDiffHeadSchedulerOutput(BaseOutput):
    """
    Output of [`ImpactDiffHeadScheduler.step`].

    Args:
        prev_sample (`torch.Tensor`): The sample x_{t−1} of the previous (kept) timestep.
        pred_original_sample (`torch.Tensor`): The predicted clean sample x̂_0.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def _cosine_betas(num_train_timesteps: int) -> np.ndarray:
    # Nichol & Dhariwal cosine schedule: ᾱ(u) = cos²((u + 0.008)/1.008 · π/2), β clipped at 0.999 (float64, as MAR).
    def alpha_bar(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    steps = range(num_train_timesteps)
    return np.array(
        [min(1 - alpha_bar((i + 1) / num_train_timesteps) / alpha_bar(i / num_train_timesteps), 0.999) for i in steps]
    )


class ImpactDiffHeadScheduler(SchedulerMixin, ConfigMixin):
    r"""
    The per-token diffusion sampler of IMPACT (paper §3.2.3, Eq. 3), reproducing MAR's `p_sample_loop` exactly.

    A cosine β schedule over `num_train_timesteps` steps is respaced to `num_inference_steps` kept timesteps
    τ_k = round(k · (T − 1)/(K − 1)) (MAR's `space_timesteps`), with β'_k = 1 − ᾱ[τ_k]/ᾱ[τ_{k−1}]. Each step is
    ancestral: x̂_0 from ε, the posterior mean, and noise with the learned-range variance
    log σ² = frac · log β'_k + (1 − frac) · log β̃'_k (frac = (v + 1)/2) when the model output carries v
    (`2 ×` the sample's channels along dim 1), else the posterior variance β̃'_k. The head is called with the
    original timestep τ_k. All tables are computed in float64 and applied as float32, like MAR.

    `temperature` scales the injected noise only (MAR), not the initial sample.

    The configuration keys match [`~diffusers.DDPMScheduler`]'s, so any diffusers scheduler can replace this one with
    the same noise schedule, e.g. `DDIMScheduler.from_config(pipe.head_scheduler.config)`.

    Args:
        num_train_timesteps (`int`, defaults to 1000): Diffusion steps the head was trained with.
        beta_schedule (`str`, defaults to `"squaredcos_cap_v2"`): Only the cosine schedule (MAR's) is implemented.
        prediction_type (`str`, defaults to `"epsilon"`): Only ε-prediction (MAR's) is implemented.
        timestep_spacing (`str`, defaults to `"linspace"`): Only MAR's evenly rounded spacing is implemented.
        clip_sample (`bool`, defaults to `False`): Must stay `False` (latents are unbounded); kept so that
            schedulers created with `from_config` do not clip.

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact import ImpactDiffHeadScheduler

    >>> scheduler = ImpactDiffHeadScheduler()
    >>> scheduler.set_timesteps(100)
    >>> scheduler.timesteps[:4].tolist(), scheduler.timesteps[-2:].tolist()
    ([999, 989, 979, 969], [10, 0])
    >>> sample = torch.randn(2, 16)
    >>> model_output = torch.zeros(2, 32)  # ε = 0 and v = 0 for every value
    >>> scheduler.step(model_output, 999, sample, generator=torch.manual_seed(0)).prev_sample.shape
    torch.Size([2, 16])
    ```
    """

    _compatibles = [
        "DDPMScheduler",
        "DDIMScheduler",
        "DPMSolverMultistepScheduler",
        "EulerAncestralDiscreteScheduler",
        "EulerDiscreteScheduler",
        "UniPCMultistepScheduler",
    ]
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "squaredcos_cap_v2",
        prediction_type: str = "epsilon",
        timestep_spacing: str = "linspace",
        clip_sample: bool = False,
    ):
        unsupported = {
            "beta_schedule": (beta_schedule, "squaredcos_cap_v2"),
            "prediction_type": (prediction_type, "epsilon"),
            "timestep_spacing": (timestep_spacing, "linspace"),
            "clip_sample": (clip_sample, False),
        }
        for name, (value, supported) in unsupported.items():
            if value != supported:
                raise ValueError(f"ImpactDiffHeadScheduler supports only {name}={supported!r}, got {value!r}.")
        # These values are the noise schedule the head was trained with, not preferences: mark none of them as a
        # default, so that `OtherScheduler.from_config(this.config)` carries all of them over.
        self.register_to_config(_use_default_values=[])
        self.train_betas = _cosine_betas(num_train_timesteps)
        alphas_cumprod = np.cumprod(1.0 - self.train_betas)
        self.alphas_cumprod = torch.from_numpy(alphas_cumprod)
        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.set_timesteps(num_train_timesteps)

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None):
        """
        Respace the schedule to `num_inference_steps` kept timesteps (MAR's `space_timesteps(T, "K")`).

        Args:
            num_inference_steps (`int`): Number of sampling steps K, 1 ≤ K ≤ `num_train_timesteps`.
            device (`str` or `torch.device`, *optional*): Device of `timesteps`.
        """
        num_train_timesteps = self.config.num_train_timesteps
        if not 1 <= num_inference_steps <= num_train_timesteps:
            raise ValueError(
                f"`num_inference_steps` must be in [1, {num_train_timesteps}], got {num_inference_steps}."
            )
        stride = (num_train_timesteps - 1) / (num_inference_steps - 1) if num_inference_steps > 1 else 0.0
        kept = sorted({round(k * stride) for k in range(num_inference_steps)})
        alphas_cumprod = self.alphas_cumprod.numpy()[kept]
        alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
        betas = 1.0 - alphas_cumprod / alphas_cumprod_prev
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        # log β̃ with its first entry (0 at k = 0) replaced by the second, as MAR's posterior_log_variance_clipped.
        clipped = np.append(posterior_variance[1], posterior_variance[1:]) if len(kept) > 1 else posterior_variance
        tables = {
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1.0),
            "posterior_mean_coef1": betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod),
            "log_betas": np.log(betas),
            "posterior_log_variance_clipped": np.log(np.maximum(clipped, 1e-20)),
        }
        self._table_names = list(tables)
        self._step_table = torch.from_numpy(np.stack(list(tables.values())))  # (tables, kept timesteps), float64
        self._kept_timesteps = torch.tensor(kept, dtype=torch.long)
        self.num_inference_steps = len(kept)
        self.timesteps = torch.tensor(kept[::-1], dtype=torch.long, device=device)

    def _coefficients(self, timesteps: torch.Tensor, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every table at `timesteps` (a scalar or one per row of `like`), cast to `like`'s dtype as MAR does."""
        timesteps = torch.as_tensor(timesteps).reshape(-1).cpu()
        step_indices = torch.searchsorted(self._kept_timesteps, timesteps)
        if not bool((self._kept_timesteps[step_indices.clamp(max=len(self._kept_timesteps) - 1)] == timesteps).all()):
            raise ValueError(f"Timesteps {timesteps.tolist()} are not all in this scheduler's timesteps.")
        values = self._step_table[:, step_indices].to(like.device, like.dtype)  # one gather, one transfer
        shape = (-1, *([1] * (like.ndim - 1)))
        return {name: row.view(shape) for name, row in zip(self._table_names, values)}

    @staticmethod
    def _posterior(coefficients, original_sample, sample):
        mean = coefficients["posterior_mean_coef1"] * original_sample + coefficients["posterior_mean_coef2"] * sample
        return mean, coefficients["posterior_log_variance_clipped"]

    def p_mean_variance(
        self, model_output: torch.Tensor, sample: torch.Tensor, timesteps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        The model's reverse distribution p(x_{t−1} | x_t) (MAR's `p_mean_variance`, clip_denoised=False).

        Args:
            model_output (`torch.Tensor`): ε, or ε followed by the learned-range value v along dim 1.
            sample (`torch.Tensor`): x_t, shape `(batch, channels, ...)`.
            timesteps (`torch.Tensor`): Kept timesteps, a scalar or one per row.

        Returns:
            `(pred_original_sample, mean, log_variance)`. With v the log-variance interpolates between log β_t and the
            clipped log posterior variance log β̃_t (learned range, Nichol & Dhariwal); without, it is log β̃_t.
        """
        coefficients = self._coefficients(timesteps, sample)
        if model_output.shape[1] == 2 * sample.shape[1]:
            epsilon, variance_value = model_output.split(sample.shape[1], dim=1)
        else:
            epsilon, variance_value = model_output, None
        pred_original_sample = (
            coefficients["sqrt_recip_alphas_cumprod"] * sample - coefficients["sqrt_recipm1_alphas_cumprod"] * epsilon
        )
        mean, posterior_log_variance = self._posterior(coefficients, pred_original_sample, sample)
        if variance_value is None:
            log_variance = posterior_log_variance.expand_as(sample)
        else:
            fraction = (variance_value + 1) / 2
            log_variance = fraction * coefficients["log_betas"] + (1 - fraction) * posterior_log_variance
        return pred_original_sample, mean, log_variance

    def q_posterior_mean_variance(
        self, original_sample: torch.Tensor, sample: torch.Tensor, timesteps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and clipped log-variance of the forward-process posterior q(x_{t−1} | x_t, x_0)."""
        return self._posterior(self._coefficients(timesteps, sample), original_sample, sample)

    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """Identity: ancestral DDPM sampling needs no input scaling (kept for scheduler interchangeability)."""
        return sample

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        temperature: float = 1.0,
        return_dict: bool = True,
    ) -> ImpactDiffHeadSchedulerOutput | tuple:
        """
        One ancestral step from `timestep` to the previous kept timestep (MAR's `p_sample`).

        Args:
            model_output (`torch.Tensor`): ε, or ε followed by the learned-range value v along dim 1 (twice the
                sample's size there).
            timestep (`int` or `torch.Tensor`): The current kept (original-scale) timestep τ_k.
            sample (`torch.Tensor`): The current sample x_{τ_k}, shape `(batch, ...)`.
            generator (`torch.Generator` or a list of one per batch row, *optional*): Source of the step noise.
            temperature (`float`, defaults to 1.0): Multiplies the injected noise.
            return_dict (`bool`, defaults to `True`): Return an [`ImpactDiffHeadSchedulerOutput`] instead of a tuple.
        """
        pred_original_sample, prev_sample, log_variance = self.p_mean_variance(model_output, sample, timestep)
        if int(timestep) != int(self._kept_timesteps[0]):  # no noise at the last step
            noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            prev_sample = prev_sample + torch.exp(0.5 * log_variance) * noise * temperature
        if not return_dict:
            return (prev_sample, pred_original_sample)
        return ImpactDiffHeadSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.LongTensor
    ) -> torch.Tensor:
        """Forward process x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε on the full training schedule (one timestep per row)."""
        # Both coefficients in float64 before the cast: √(1 − ᾱ) near t = 0 loses its digits in float32 (as in MAR).
        alphas_cumprod = self.alphas_cumprod[timesteps.cpu()].view(-1, *([1] * (original_samples.ndim - 1)))
        signal_scale = alphas_cumprod.sqrt().to(original_samples.device, original_samples.dtype)
        noise_scale = (1 - alphas_cumprod).sqrt().to(original_samples.device, original_samples.dtype)
        return signal_scale * original_samples + noise_scale * noise

    def __len__(self):
        return self.config.num_train_timesteps
