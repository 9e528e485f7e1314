# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""The IMPACT diffusion head: MAR's `SimpleMLPAdaLN`, a small AdaLN MLP that denoises one latent token at a time."""

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.embeddings import Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn


@dataclass
class ImpactDiffHeadOutput(BaseOutput):
    """
    Output of [`ImpactDiffHead`].

    Args:
        sample (`torch.Tensor` of shape `(num_tokens, out_channels)`):
            The predicted noise ε (first `in_channels` values) followed, when `learn_sigma=True`, by the
            learned-range variance interpolation value v ∈ [-1, 1] (last `in_channels` values).
    """

    sample: torch.Tensor


def _modulate(hidden_states: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return hidden_states * (1 + scale) + shift


class ImpactDiffHeadResBlock(nn.Module):
    """AdaLN residual MLP block: h + gate ⊙ MLP(LN(h) ⊙ (1 + scale) + shift), (shift, scale, gate) from the condition."""

    def __init__(self, channels: int):
        super().__init__()
        self.in_ln = nn.LayerNorm(channels, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(channels, channels), nn.SiLU(), nn.Linear(channels, channels))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 3 * channels))

    def forward(self, hidden_states: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.adaLN_modulation(condition).chunk(3, dim=-1)
        return hidden_states + gate * self.mlp(_modulate(self.in_ln(hidden_states), shift, scale))


class ImpactDiffHeadFinalLayer(nn.Module):
    """Final AdaLN layer: linear(LN_no_affine(h) ⊙ (1 + scale) + shift)."""

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(channels, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(channels, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 2 * channels))

    def forward(self, hidden_states: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(condition).chunk(2, dim=-1)
        return self.linear(_modulate(self.norm_final(hidden_states), shift, scale))


def initialize_adaln_mlp(model: nn.Module, res_blocks: nn.ModuleList, final_layer: ImpactDiffHeadFinalLayer) -> None:
    """MAR's head init, shared by both heads: xavier-uniform linears, zeroed modulations and output (a fresh head
    outputs exactly 0)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    zeroed = [block.adaLN_modulation[-1] for block in res_blocks] + [
        final_layer.adaLN_modulation[-1],
        final_layer.linear,
    ]
    for layer in zeroed:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


def run_adaln_mlp(model: ModelMixin, hidden_states: torch.Tensor, adaln_condition: torch.Tensor) -> torch.Tensor:
    """The residual blocks (gradient-checkpointed when enabled) and the final layer of a head (`model`)."""
    for block in model.res_blocks:
        if torch.is_grad_enabled() and model.gradient_checkpointing:
            hidden_states = model._gradient_checkpointing_func(block, hidden_states, adaln_condition)
        else:
            hidden_states = block(hidden_states, adaln_condition)
    return model.final_layer(hidden_states, adaln_condition)


class ImpactTimestepEmbedder(nn.Module):
    """Sinusoidal [cos, sin] embedding of the diffusion timestep (DiT/MAR convention) followed by a SiLU MLP."""

    def __init__(self, channels: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequencies = Timesteps(frequency_embedding_size, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, channels), nn.SiLU(), nn.Linear(channels, channels)
        )

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        frequencies = self.frequencies(timesteps).to(self.mlp[0].weight.dtype)
        return self.mlp(frequencies)


class ImpactDiffHead(ModelMixin, ConfigMixin, PeftAdapterMixin):
    r"""
    The IMPACT diffusion head (paper App. D.4), MAR's `SimpleMLPAdaLN`.

    It denoises each latent token independently: the noisy token x_t is projected to `model_channels`, the
    timestep embedding and the projected transformer hidden vector h_i are summed into the AdaLN condition, and a
    stack of AdaLN residual MLP blocks followed by a final AdaLN layer predicts ε (and, with `learn_sigma`, the
    learned-range variance value v). Modulation and output layers start at zero, so a fresh head outputs exactly 0.

    Parameter names equal MAR's `diffloss.net.*` keys, so a MAR state dict converts by stripping that prefix.

    Args:
        in_channels (`int`, defaults to 128): Size of one latent token (VAE channels × patch_size²).
        model_channels (`int`, defaults to 1024): Width W of the MLP.
        condition_channels (`int`, defaults to 768): Size of the transformer hidden vector h_i.
        num_res_blocks (`int`, defaults to 3): Number of AdaLN residual blocks (depth d).
        learn_sigma (`bool`, defaults to `True`): Also predict the learned-range variance (output `2 * in_channels`).

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact import ImpactDiffHead

    >>> head = ImpactDiffHead(in_channels=16, model_channels=32, condition_channels=24, num_res_blocks=2)
    >>> noisy_tokens, hidden = torch.randn(5, 16), torch.randn(5, 24)
    >>> head(noisy_tokens, torch.tensor(999), hidden).sample.shape  # ε and v for 5 tokens
    torch.Size([5, 32])
    ```
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 128,
        model_channels: int = 1024,
        condition_channels: int = 768,
        num_res_blocks: int = 3,
        learn_sigma: bool = True,
    ):
        super().__init__()
        out_channels = 2 * in_channels if learn_sigma else in_channels
        self.time_embed = ImpactTimestepEmbedder(model_channels)
        self.cond_embed = nn.Linear(condition_channels, model_channels)
        self.input_proj = nn.Linear(in_channels, model_channels)
        self.res_blocks = nn.ModuleList([ImpactDiffHeadResBlock(model_channels) for _ in range(num_res_blocks)])
        self.final_layer = ImpactDiffHeadFinalLayer(model_channels, out_channels)
        self.gradient_checkpointing = False
        self._initialize_weights()

    def _initialize_weights(self):
        # MAR's init: xavier-uniform linears, N(0, 0.02) timestep MLP, zeroed modulations and output.
        initialize_adaln_mlp(self, self.res_blocks, self.final_layer)
        nn.init.normal_(self.time_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_embed.mlp[2].weight, std=0.02)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        condition: torch.Tensor,
        return_dict: bool = True,
    ) -> ImpactDiffHeadOutput | tuple[torch.Tensor]:
        r"""
        Args:
            sample (`torch.Tensor` of shape `(num_tokens, in_channels)`): Noisy latent tokens x_t.
            timestep (`torch.Tensor` or `int`): Original (not respaced) diffusion step in [0, 1000), a scalar shared
                by all tokens or one value per token.
            condition (`torch.Tensor` of shape `(num_tokens, condition_channels)`): Transformer hidden vectors h_i.
            return_dict (`bool`, defaults to `True`): Return an [`ImpactDiffHeadOutput`] instead of a tuple.
        """
        # One embedding row per token, also for a shared timestep: MAR does so, and embedding a single row then
        # broadcasting rounds differently (~4e-7), which the first sampling step amplifies by 1/√ᾱ ≈ 2e4.
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
        adaln_condition = self.time_embed(timestep) + self.cond_embed(condition)
        output = run_adaln_mlp(self, self.input_proj(sample), adaln_condition)
        if not return_dict:
            return (output,)
        return ImpactDiffHeadOutput(sample=output)
