# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""The IMPACT transformer-based latent encoder (paper App. D.3): an MAE-style encoder/decoder over audio latent tokens."""

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn


@dataclass
class ImpactTransformerOutput(BaseOutput):
    """
    Output of [`ImpactTransformer`].

    Args:
        sample (`torch.Tensor` of shape `(batch_size, num_tokens, hidden_size)`):
            The hidden vector h_i of every latent position, the condition of the diffusion head.
    """

    sample: torch.Tensor


class ImpactTransformer(ModelMixin, ConfigMixin, PeftAdapterMixin):
    r"""
    The IMPACT transformer-based latent encoder (paper §3.1, App. D.3, Eq. 1, 7, 8), laid out as MAR's MAE encoder.

    AudioLDM VAE latents `(batch, latent_channels, latent_length, latent_width)` are cut into `patch_size`²
    patches, giving `num_tokens` latent tokens of `latent_channels * patch_size**2` values (time-major raster order).
    The text condition (a token sequence such as Flan-T5's and, optionally, a pooled sentence embedding such as
    CLAP's) is projected to `hidden_size` and placed in front of the latent tokens.

    * Encoder (Eq. 7): condition tokens + the *visible* latent tokens only (masked ones are dropped), plus learned
      position embeddings, LayerNorm, `num_encoder_layers` pre-LN transformer blocks, LayerNorm.
    * Decoder (Eq. 8): a learned mask token is re-inserted at every masked position, position embeddings are added,
      `num_decoder_layers` blocks, LayerNorm; the condition rows are dropped and a diffusion position embedding is
      added, giving h for the N latent positions.

    Padding tokens of the text sequence are excluded from attention (key mask), so a prompt's result does not depend
    on how far it was padded. A learned null condition replaces the text for classifier-free guidance and for
    unconditional pre-training; it occupies the first condition slot alone.

    Args:
        latent_channels (`int`, defaults to 8): Channels of the VAE latent.
        latent_length (`int`, defaults to 256): Latent frames (time axis) of the longest audio, 10.24 s for AudioLDM.
        latent_width (`int`, defaults to 16): Latent frequency bins.
        patch_size (`int`, defaults to 4): Patch size p on both axes.
        hidden_size (`int`, defaults to 768): Model width D.
        num_encoder_layers (`int`, defaults to 12): Blocks of the first sub-encoder (Enc_φ1).
        num_decoder_layers (`int`, defaults to 12): Blocks of the second sub-encoder (Enc_φ2).
        num_attention_heads (`int`, defaults to 12): Attention heads of every block.
        mlp_ratio (`float`, defaults to 4.0): Feed-forward width as a multiple of `hidden_size`.
        text_embed_dim (`int`, defaults to 1024): Width of the text encoder's token embeddings (Flan-T5-large: 1024).
        max_text_length (`int`, defaults to 77): Longest text token sequence (position embeddings reserved for it).
        pooled_text_embed_dim (`int`, *optional*, defaults to 512): Width of the pooled sentence embedding (CLAP:
            512); `None` for a model without one.
        dropout (`float`, defaults to 0.1): Dropout after attention and inside / after the MLP (training only).

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact import ImpactTransformer

    >>> model = ImpactTransformer(
    ...     latent_length=16, latent_width=8, patch_size=4, hidden_size=32, num_encoder_layers=1,
    ...     num_decoder_layers=1, num_attention_heads=2, text_embed_dim=12, max_text_length=6,
    ...     pooled_text_embed_dim=None,
    ... )
    >>> tokens = model.patchify(torch.randn(2, 8, 16, 8))  # (2, 8 tokens, 128 values)
    >>> mask = torch.zeros(2, 8, dtype=torch.bool)
    >>> mask[:, 3:] = True  # the last five tokens are masked
    >>> text, text_mask = torch.randn(2, 6, 12), torch.ones(2, 6, dtype=torch.bool)
    >>> model(tokens, mask, encoder_hidden_states=text, encoder_attention_mask=text_mask).sample.shape
    torch.Size([2, 8, 32])
    ```
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["BasicTransformerBlock"]

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 8,
        latent_length: int = 256,
        latent_width: int = 16,
        patch_size: int = 4,
        hidden_size: int = 768,
        num_encoder_layers: int = 12,
        num_decoder_layers: int = 12,
        num_attention_heads: int = 12,
        mlp_ratio: float = 4.0,
        text_embed_dim: int = 1024,
        max_text_length: int = 77,
        pooled_text_embed_dim: int | None = 512,
        dropout: float = 0.1,
    ):
        super().__init__()
        if latent_length % patch_size or latent_width % patch_size:
            raise ValueError(
                f"latent_length ({latent_length}) and latent_width ({latent_width}) must be multiples of "
                f"patch_size ({patch_size})."
            )
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_attention_heads})."
            )
        token_dim = latent_channels * patch_size**2
        num_condition_slots = max_text_length + (1 if pooled_text_embed_dim else 0)
        sequence_slots = num_condition_slots + self.num_tokens

        # Condition inputs (§4.2: CLAP and Flan-T5 embeddings projected to D) and the learned null condition.
        self.text_proj = nn.Linear(text_embed_dim, hidden_size)
        self.pooled_text_proj = nn.Linear(pooled_text_embed_dim, hidden_size) if pooled_text_embed_dim else None
        self.null_condition = nn.Parameter(torch.zeros(1, hidden_size))

        # Enc_φ1 (Eq. 7), MAR's MAE encoder.
        self.latent_proj = nn.Linear(token_dim, hidden_size)
        self.encoder_pos_embed = nn.Parameter(torch.zeros(1, sequence_slots, hidden_size))
        self.encoder_input_norm = nn.LayerNorm(hidden_size, eps=1e-6)
        self.encoder_blocks = nn.ModuleList(
            [self._make_block(hidden_size, num_attention_heads, mlp_ratio, dropout) for _ in range(num_encoder_layers)]
        )
        self.encoder_norm = nn.LayerNorm(hidden_size, eps=1e-6)

        # Enc_φ2 (Eq. 8), MAR's MAE decoder.
        self.decoder_embed = nn.Linear(hidden_size, hidden_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, hidden_size))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, sequence_slots, hidden_size))
        self.decoder_blocks = nn.ModuleList(
            [self._make_block(hidden_size, num_attention_heads, mlp_ratio, dropout) for _ in range(num_decoder_layers)]
        )
        self.decoder_norm = nn.LayerNorm(hidden_size, eps=1e-6)
        self.diffusion_pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, hidden_size))

        self.gradient_checkpointing = False
        self._initialize_weights()

    @staticmethod
    def _make_block(hidden_size, num_attention_heads, mlp_ratio, dropout) -> BasicTransformerBlock:
        # Pre-LN block with exact GELU and LayerNorm eps 1e-6: the same computation as MAR's timm `Block`.
        return BasicTransformerBlock(
            hidden_size,
            num_attention_heads,
            hidden_size // num_attention_heads,
            dropout=dropout,
            activation_fn="gelu",
            attention_bias=True,
            norm_eps=1e-6,
            final_dropout=True,
            ff_inner_dim=int(hidden_size * mlp_ratio),
        )

    def _initialize_weights(self):
        # MAR's init: N(0, 0.02) embeddings and tokens, xavier-uniform linears, unit LayerNorms.
        for parameter in (self.null_condition, self.mask_token, self.encoder_pos_embed, self.decoder_pos_embed):
            nn.init.normal_(parameter, std=0.02)
        nn.init.normal_(self.diffusion_pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def num_tokens(self) -> int:
        """Number N of latent tokens of the longest audio."""
        p = self.config.patch_size
        return (self.config.latent_length // p) * (self.config.latent_width // p)

    def patchify(self, latents: torch.Tensor) -> torch.Tensor:
        """`(B, C, T, F)` VAE latents → `(B, T/p · F/p, C·p²)` tokens in time-major raster order (MAR's layout)."""
        batch_size, channels, length, width = latents.shape
        p = self.config.patch_size
        if (channels, length, width) != (
            self.config.latent_channels,
            self.config.latent_length,
            self.config.latent_width,
        ):
            raise ValueError(
                f"Expected latents of shape (batch, {self.config.latent_channels}, {self.config.latent_length}, "
                f"{self.config.latent_width}), got {tuple(latents.shape)}."
            )
        tokens = latents.reshape(batch_size, channels, length // p, p, width // p, p)
        tokens = tokens.permute(0, 2, 4, 1, 3, 5)
        return tokens.reshape(batch_size, (length // p) * (width // p), channels * p * p)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """Exact inverse of [`~ImpactTransformer.patchify`]."""
        p = self.config.patch_size
        channels, length, width = self.config.latent_channels, self.config.latent_length, self.config.latent_width
        latents = tokens.reshape(tokens.shape[0], length // p, width // p, channels, p, p)
        latents = latents.permute(0, 3, 1, 4, 2, 5)
        return latents.reshape(tokens.shape[0], channels, length, width)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        pooled_projections: torch.Tensor | None = None,
        drop_condition: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> ImpactTransformerOutput | tuple[torch.Tensor]:
        r"""
        Args:
            hidden_states (`torch.Tensor` of shape `(batch_size, num_tokens, latent_channels * patch_size**2)`):
                Latent tokens (see [`~ImpactTransformer.patchify`]). Values at masked positions are ignored.
            mask (`torch.BoolTensor` of shape `(batch_size, num_tokens)`):
                `True` where a token is masked (to be generated). Every sample must mask the same number of tokens.
            encoder_hidden_states (`torch.Tensor` of shape `(batch_size, text_length, text_embed_dim)`, *optional*):
                Text token embeddings. `None` runs the model unconditionally (null condition for every sample).
            encoder_attention_mask (`torch.Tensor` of shape `(batch_size, text_length)`, *optional*):
                1 for real text tokens, 0 for padding. Defaults to all ones.
            pooled_projections (`torch.Tensor` of shape `(batch_size, pooled_text_embed_dim)`, *optional*):
                Pooled sentence embedding (CLAP); required when the model was configured with one.
            drop_condition (`torch.BoolTensor` of shape `(batch_size,)`, *optional*):
                `True` for samples that get the null condition instead of their text (classifier-free guidance).
            return_dict (`bool`, defaults to `True`): Return an [`ImpactTransformerOutput`] instead of a tuple.
        """
        batch_size, num_tokens, _ = hidden_states.shape
        if num_tokens != self.num_tokens or mask.shape != (batch_size, num_tokens):
            raise ValueError(
                f"Expected {self.num_tokens} latent tokens and a mask of shape ({batch_size}, {self.num_tokens}); "
                f"got tokens {tuple(hidden_states.shape)} and mask {tuple(mask.shape)}."
            )
        mask = mask.bool()
        num_visible_per_sample = (~mask).sum(dim=1)
        num_visible = int(num_visible_per_sample[0])
        if not bool((num_visible_per_sample == num_visible).all()):
            raise ValueError("Every sample of the batch must mask the same number of tokens.")
        condition = self._embed_condition(
            encoder_hidden_states, encoder_attention_mask, pooled_projections, drop_condition, batch_size
        )
        condition_tokens, condition_slots, condition_key_mask = condition
        num_condition = condition_tokens.shape[1]
        latent_slots = self.encoder_pos_embed.shape[1] - self.num_tokens  # latent position j is slot latent_slots + j

        # Enc_φ1 (Eq. 7): visible latent tokens only, in positional order; masked ones are dropped, not zeroed.
        visible_positions = torch.argsort(mask.to(torch.int8), dim=1, stable=True)[:, :num_visible]
        visible_tokens = torch.gather(
            hidden_states, 1, visible_positions.unsqueeze(-1).expand(-1, -1, hidden_states.shape[-1])
        )
        encoder_slots = torch.cat([condition_slots, latent_slots + visible_positions], dim=1)
        sequence = torch.cat([condition_tokens, self.latent_proj(visible_tokens)], dim=1)
        sequence = self.encoder_input_norm(sequence + self.encoder_pos_embed[0][encoder_slots])

        attention_mask = None
        if condition_key_mask is not None and not bool(condition_key_mask.all()):
            visible_key_mask = torch.ones(batch_size, num_visible, dtype=torch.bool, device=mask.device)
            attention_mask = torch.cat([condition_key_mask, visible_key_mask], dim=1)[:, None, :]
        sequence = self._run_blocks(self.encoder_blocks, sequence, attention_mask)
        sequence = self.decoder_embed(self.encoder_norm(sequence))

        # Enc_φ2 (Eq. 8): the mask token re-inserted at every masked position, then the full sequence.
        latent_sequence = self.mask_token.to(sequence.dtype).expand(batch_size, num_tokens, -1).clone()
        latent_sequence.scatter_(
            1, visible_positions.unsqueeze(-1).expand(-1, -1, sequence.shape[-1]), sequence[:, num_condition:]
        )
        decoder_slots = torch.cat(
            [condition_slots, latent_slots + torch.arange(num_tokens, device=mask.device).expand(batch_size, -1)],
            dim=1,
        )
        sequence = (
            torch.cat([sequence[:, :num_condition], latent_sequence], dim=1) + self.decoder_pos_embed[0][decoder_slots]
        )
        if attention_mask is not None:
            all_latents = torch.ones(batch_size, 1, num_tokens, dtype=torch.bool, device=mask.device)
            attention_mask = torch.cat([attention_mask[:, :, :num_condition], all_latents], dim=2)
        sequence = self.decoder_norm(self._run_blocks(self.decoder_blocks, sequence, attention_mask))
        output = sequence[:, num_condition:] + self.diffusion_pos_embed

        if not return_dict:
            return (output,)
        return ImpactTransformerOutput(sample=output)

    def _embed_condition(
        self, encoder_hidden_states, encoder_attention_mask, pooled_projections, drop_condition, batch_size
    ):
        """Validate the condition inputs; return its tokens `(B, L, D)`, position slots `(B, L)` and key mask (or `None`)."""
        device = self.null_condition.device
        if encoder_hidden_states is None:
            if pooled_projections is not None:
                raise ValueError("`pooled_projections` was given without `encoder_hidden_states`.")
            tokens = self.null_condition.expand(batch_size, 1, -1)
            return tokens, torch.zeros(batch_size, 1, dtype=torch.long, device=device), None
        if (
            encoder_hidden_states.shape[0] != batch_size
            or encoder_hidden_states.shape[-1] != self.config.text_embed_dim
        ):
            raise ValueError(
                f"`encoder_hidden_states` must have shape ({batch_size}, text_length, {self.config.text_embed_dim}), "
                f"got {tuple(encoder_hidden_states.shape)}."
            )
        text_length = encoder_hidden_states.shape[1]
        if text_length > self.config.max_text_length:
            raise ValueError(
                f"The text has {text_length} tokens; this model takes at most {self.config.max_text_length}."
            )
        if encoder_attention_mask is None:
            encoder_attention_mask = torch.ones(batch_size, text_length, dtype=torch.bool, device=device)
        elif encoder_attention_mask.shape != (batch_size, text_length):
            raise ValueError(
                f"`encoder_attention_mask` must have shape ({batch_size}, {text_length}), got {tuple(encoder_attention_mask.shape)}."
            )
        if self.pooled_text_proj is not None:
            if pooled_projections is None or pooled_projections.shape != (
                batch_size,
                self.config.pooled_text_embed_dim,
            ):
                got = None if pooled_projections is None else tuple(pooled_projections.shape)
                raise ValueError(
                    f"This model takes a pooled text embedding: `pooled_projections` must have shape "
                    f"({batch_size}, {self.config.pooled_text_embed_dim}), got {got}."
                )
        elif pooled_projections is not None:
            raise ValueError(
                "This model was configured without a pooled text embedding (`pooled_text_embed_dim=None`)."
            )
        if drop_condition is None:
            drop_condition = torch.zeros(batch_size, dtype=torch.bool, device=device)
        return self._embed_condition_tokens(
            encoder_hidden_states, encoder_attention_mask, pooled_projections, drop_condition.bool()
        )

    def _embed_condition_tokens(self, encoder_hidden_states, encoder_attention_mask, pooled_projections, drop):
        """Condition tokens `(B, L, D)`, their position slots `(B, L)` and key mask `(B, L)`."""
        batch_size, device = encoder_hidden_states.shape[0], encoder_hidden_states.device
        tokens = [self.text_proj(encoder_hidden_states)]
        slots = [torch.arange(encoder_hidden_states.shape[1], device=device)]
        key_mask = [encoder_attention_mask.bool()]
        if self.pooled_text_proj is not None:
            # The pooled (CLAP) vector owns the slot after the longest text, whatever the padding length.
            tokens.insert(0, self.pooled_text_proj(pooled_projections).unsqueeze(1))
            slots.insert(0, torch.full((1,), self.config.max_text_length, device=device))
            key_mask.insert(0, torch.ones(batch_size, 1, dtype=torch.bool, device=device))
        tokens, slots, key_mask = torch.cat(tokens, dim=1), torch.cat(slots), torch.cat(key_mask, dim=1)
        # Null condition (classifier-free guidance, §3.1.2): it takes the first slot alone, the rest is masked out.
        drop_rows = drop.view(batch_size, 1, 1)
        first_token = torch.where(
            drop_rows, self.null_condition.to(tokens.dtype).expand(batch_size, 1, -1), tokens[:, :1]
        )
        tokens = torch.cat([first_token, tokens[:, 1:]], dim=1)
        key_mask = torch.cat(
            [key_mask[:, :1] | drop.view(batch_size, 1), key_mask[:, 1:] & ~drop.view(batch_size, 1)], dim=1
        )
        slots = slots.expand(batch_size, -1).clone()
        slots[:, 0] = torch.where(drop, 0, slots[:, 0])  # the null condition's slot
        return tokens, slots, key_mask

    def _run_blocks(self, blocks: nn.ModuleList, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None):
        for block in blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states = self._gradient_checkpointing_func(block, hidden_states, attention_mask)
            else:
                hidden_states = block(hidden_states, attention_mask=attention_mask)
        return hidden_states
