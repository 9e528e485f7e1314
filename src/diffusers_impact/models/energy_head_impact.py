# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""The AudioDEAR energy-scoring head: one forward pass maps Gaussian noise to a latent token, given its hidden vector."""

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .diff_head_impact import ImpactDiffHeadFinalLayer, ImpactDiffHeadResBlock, initialize_adaln_mlp, run_adaln_mlp


@dataclass
class ImpactEnergyHeadOutput(BaseOutput):
    """
    Output of [`ImpactEnergyHead`].

    Args:
        sample (`torch.Tensor` of shape `(num_tokens, out_channels)`): One generated latent token per row.
    """

    sample: torch.Tensor


class ImpactEnergyHead(ModelMixin, ConfigMixin):
    r"""
    The energy-scoring head of AudioDEAR: a one-step generator of latent tokens, trained with the energy score.

    AudioDEAR's abstract fixes Gaussian noise and one forward pass; its body is not public. The block structure is
    EAR's (Shao et al., ICML 2025), the closest published relative: the same AdaLN residual MLP as
    [`ImpactDiffHead`], with the roles of its two inputs swapped. The projected transformer hidden vector h_i is the
    residual stream, and the embedded noise vector is the AdaLN condition of every block and of the final layer, so
    the noise modulates each layer's features instead of being denoised. Modulation and output layers start at zero:
    a fresh head outputs exactly 0.

    Temperature τ at inference scales the noise (the head maps N(0, τ²I) instead of N(0, I); τ = 1 is what it was
    trained on, smaller τ concentrates the samples). EAR scales the AdaLN shifts instead; scaling the input keeps
    temperature a property of the sampler, not of the network's internals, and τ = 0 gives the head's one
    noise-free output.

    Args:
        out_channels (`int`, defaults to 128): Size of one latent token (VAE channels × patch_size²).
        model_channels (`int`, defaults to 1024): Width W of the MLP.
        condition_channels (`int`, defaults to 768): Size of the transformer hidden vector h_i.
        noise_channels (`int`, defaults to 64): Size of the Gaussian noise vector (EAR: 64).
        num_res_blocks (`int`, defaults to 6): Number of AdaLN residual blocks (EAR-B: 6).

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact import ImpactEnergyHead

    >>> head = ImpactEnergyHead(out_channels=16, model_channels=32, condition_channels=24, noise_channels=8,
    ...                         num_res_blocks=2)
    >>> hidden, noise = torch.randn(5, 24), torch.randn(5, 8)
    >>> head(hidden, noise).sample.shape  # one token for each of 5 hidden vectors, in one call
    torch.Size([5, 16])
    ```
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        out_channels: int = 128,
        model_channels: int = 1024,
        condition_channels: int = 768,
        noise_channels: int = 64,
        num_res_blocks: int = 6,
    ):
        super().__init__()
        self.cond_proj = nn.Linear(condition_channels, model_channels)
        self.noise_embed = nn.Linear(noise_channels, model_channels)
        self.res_blocks = nn.ModuleList([ImpactDiffHeadResBlock(model_channels) for _ in range(num_res_blocks)])
        self.final_layer = ImpactDiffHeadFinalLayer(model_channels, out_channels)
        self.gradient_checkpointing = False
        self._initialize_weights()

    def _initialize_weights(self):
        initialize_adaln_mlp(self, self.res_blocks, self.final_layer)  # as the diffusion head (MAR's init)

    def forward(
        self,
        condition: torch.Tensor,
        noise: torch.Tensor,
        temperature: float = 1.0,
        return_dict: bool = True,
    ) -> ImpactEnergyHeadOutput | tuple[torch.Tensor]:
        r"""
        Args:
            condition (`torch.Tensor` of shape `(num_tokens, condition_channels)`): Transformer hidden vectors h_i
                (after guidance, which a one-step head takes on h, see [`ImpactPipeline`]).
            noise (`torch.Tensor` of shape `(num_tokens, noise_channels)`): Standard Gaussian noise, one row per token.
            temperature (`float`, defaults to 1.0): τ ≥ 0; the noise is multiplied by it.
            return_dict (`bool`, defaults to `True`): Return an [`ImpactEnergyHeadOutput`] instead of a tuple.
        """
        if noise.shape != (condition.shape[0], self.config.noise_channels):
            raise ValueError(
                f"`noise` has shape {tuple(noise.shape)}; expected ({condition.shape[0]}, "
                f"{self.config.noise_channels}): one row of `noise_channels` values per row of `condition`."
            )
        adaln_condition = self.noise_embed(noise * temperature)
        output = run_adaln_mlp(self, self.cond_proj(condition), adaln_condition)
        if not return_dict:
            return (output,)
        return ImpactEnergyHeadOutput(sample=output)
