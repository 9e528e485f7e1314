# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
Initialise IMPACT from a MAR checkpoint (Li et al., 2024, github.com/LTH14/mar): the ImageNet MAR transformer and
diffusion head have IMPACT's architecture, so every tensor whose shape does not depend on the image setup is copied.

MAR's checkpoint layout (`{"model", "model_ema", "optimizer", "epoch", "scaler", "args"}`) and its key names were read
from MAR's code; no MAR code is used here. Name mapping (MAR → IMPACT):

| MAR | [`ImpactTransformer`] / [`ImpactDiffHead`] |
|---|---|
| `z_proj`, `z_proj_ln` | `latent_proj`, `encoder_input_norm` |
| `encoder_pos_embed_learned`, `decoder_pos_embed_learned`, `diffusion_pos_embed_learned` | `encoder_pos_embed`, `decoder_pos_embed`, `diffusion_pos_embed` |
| `mask_token`, `decoder_embed`, `encoder_norm`, `decoder_norm` | same names |
| `fake_latent` | `null_condition` |
| `{encoder,decoder}_blocks.i.attn.qkv` (rows: q, k, v) | `{encoder,decoder}_blocks.i.attn1.to_q` / `to_k` / `to_v` |
| `….attn.proj`, `….norm1`, `….norm2`, `….mlp.fc1`, `….mlp.fc2` | `….attn1.to_out.0`, `….norm1`, `….norm3`, `….ff.net.0.proj`, `….ff.net.2` |
| `diffloss.net.*` | the head's parameters, same names |
| `class_emb` (ImageNet classes) | unused |

With this mapping, equal shapes and the same number of attention heads, the converted transformer computes MAR's MAE
encoder/decoder exactly when its condition tokens are MAR's buffer (the class vector repeated `buffer_size` times).
"""

import argparse
import re
from dataclasses import dataclass, field

import torch

from .models import ImpactDiffHead, ImpactTransformer


# Attention heads are not stored in a state dict; MAR's factories (models/mar.py) fix them per model name.
MAR_NUM_ATTENTION_HEADS = {"mar_base": 12, "mar_large": 16, "mar_huge": 16}

_TRANSFORMER_RENAMES = {
    "fake_latent": "null_condition",
    "encoder_pos_embed_learned": "encoder_pos_embed",
    "decoder_pos_embed_learned": "decoder_pos_embed",
    "diffusion_pos_embed_learned": "diffusion_pos_embed",
    "mask_token": "mask_token",
    "z_proj.weight": "latent_proj.weight",
    "z_proj.bias": "latent_proj.bias",
    "z_proj_ln.weight": "encoder_input_norm.weight",
    "z_proj_ln.bias": "encoder_input_norm.bias",
    "encoder_norm.weight": "encoder_norm.weight",
    "encoder_norm.bias": "encoder_norm.bias",
    "decoder_embed.weight": "decoder_embed.weight",
    "decoder_embed.bias": "decoder_embed.bias",
    "decoder_norm.weight": "decoder_norm.weight",
    "decoder_norm.bias": "decoder_norm.bias",
}
# timm `Block` → diffusers `BasicTransformerBlock` (the fused qkv is handled separately).
_BLOCK_RENAMES = {
    "attn.proj": "attn1.to_out.0",
    "norm1": "norm1",
    "norm2": "norm3",
    "mlp.fc1": "ff.net.0.proj",
    "mlp.fc2": "ff.net.2",
}
_BLOCK_KEY = re.compile(r"^(encoder_blocks|decoder_blocks)\.(\d+)\.(.+)\.(weight|bias)$")
_HEAD_PREFIX = "diffloss.net."
_HEAD_BLOCK_KEY = re.compile(r"^res_blocks\.(\d+)\.")


@dataclass
class ConversionReport:
    """
    What [`convert_mar_to_impact`] did.

    Args:
        copied (`list[str]`): IMPACT tensors overwritten with MAR values (`transformer.` / `diff_head.` prefixed).
        kept_initialised (`list[str]`): IMPACT tensors left as they were, each as `"name (reason)"`.
        unused (`list[str]`): MAR keys that were not copied anywhere.
        warnings (`list[str]`): Problems the tensor shapes cannot reveal (e.g. a different number of attention heads).
        copied_parameters / kept_initialised_parameters / unused_parameters (`int`): Element counts of each list.
    """

    copied: list[str] = field(default_factory=list)
    kept_initialised: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    copied_parameters: int = 0
    kept_initialised_parameters: int = 0
    unused_parameters: int = 0

    @property
    def kept_initialised_reasons(self) -> dict[str, str]:
        """`kept_initialised` as `{name: reason}`."""
        return dict(entry[:-1].split(" (", 1) for entry in self.kept_initialised)

    def __str__(self) -> str:
        lines = [
            "MAR → IMPACT conversion",
            f"  copied:           {len(self.copied):5d} tensors, {self.copied_parameters:,} parameters",
            f"  kept initialised: {len(self.kept_initialised):5d} tensors, {self.kept_initialised_parameters:,} parameters",
        ]
        lines += [f"    - {entry}" for entry in self.kept_initialised]
        lines.append(f"  unused MAR keys:  {len(self.unused):5d} tensors, {self.unused_parameters:,} parameters")
        lines += [f"    - {key}" for key in self.unused]
        if any(name.endswith("null_condition") for name in self.copied):
            lines.append(
                "  note: null_condition was copied from MAR's fake_latent, which MAR broadcasts into all buffer slots; "
                "IMPACT uses it as a single condition token, so it is a starting point, not an exact equivalent."
            )
        lines += [f"  WARNING: {warning}" for warning in self.warnings]
        return "\n".join(lines)


def load_mar_checkpoint(path: str, use_ema: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """
    Load the weights of a MAR checkpoint (as written by MAR's `util/misc.save_model`) onto the CPU.

    Args:
        path (`str`): The `.pth` file, e.g. MAR's released `mar_base.pth`.
        use_ema (`bool`, defaults to `True`): Take the EMA weights (`"model_ema"`), as MAR's demo and evaluation do;
            `False` takes the raw training weights (`"model"`). A file holding a bare state dict is returned as is.

    Returns:
        `tuple[dict[str, torch.Tensor], dict]`: The state dict and MAR's training arguments (`vars(args)`; `{}`
        when the file has none).
    """
    # MAR stores its argparse.Namespace under "args"; allow it (for this load only) in the weights-only unpickler.
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} does not hold a dict but a {type(checkpoint).__name__}.")
    args = checkpoint.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else dict(args) if isinstance(args, dict) else {}
    key = "model_ema" if use_ema else "model"
    if key in checkpoint:
        state_dict = checkpoint[key]
    elif checkpoint and all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
        state_dict = checkpoint
    elif "model" in checkpoint or "model_ema" in checkpoint:
        other = "model" if use_ema else "model_ema"
        raise KeyError(f"{path} has no '{key}' weights, only '{other}'; pass use_ema={not use_ema} to use them.")
    else:
        raise KeyError(
            f"{path} is neither a MAR checkpoint (no 'model_ema' or 'model' entry) nor a bare state dict; "
            f"its entries are {sorted(checkpoint)}."
        )
    if state_dict and all(name.startswith("module.") for name in state_dict):  # saved from a DDP wrapper
        state_dict = {name.removeprefix("module."): value for name, value in state_dict.items()}
    return dict(state_dict), args


def _depth(mar_state_dict: dict[str, torch.Tensor], prefix: str) -> int:
    """Number of blocks `prefix{i}.*` in the state dict (max index + 1)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = [int(match.group(1)) for key in mar_state_dict if (match := pattern.match(key))]
    return max(indices) + 1 if indices else 0


def _partial_config(mar_state_dict: dict[str, torch.Tensor]) -> dict:
    """Block counts and sequence length of a (possibly partial) MAR state dict."""
    diffusion_pos_embed = mar_state_dict.get("diffusion_pos_embed_learned")
    encoder_pos_embed = mar_state_dict.get("encoder_pos_embed_learned")
    seq_len = diffusion_pos_embed.shape[1] if diffusion_pos_embed is not None else None
    return {
        "encoder_depth": _depth(mar_state_dict, "encoder_blocks."),
        "decoder_depth": _depth(mar_state_dict, "decoder_blocks."),
        "diffloss_d": _depth(mar_state_dict, _HEAD_PREFIX + "res_blocks."),
        "seq_len": seq_len,
        "buffer_size": encoder_pos_embed.shape[1] - seq_len if encoder_pos_embed is not None and seq_len else None,
    }


def infer_mar_config(mar_state_dict: dict[str, torch.Tensor]) -> dict:
    """
    Read MAR's architecture from its state dict.

    Returns a dict with `encoder_embed_dim`, `encoder_depth`, `decoder_embed_dim`, `decoder_depth`, `mlp_ratio`,
    `token_embed_dim` (C), `seq_len` (S), `buffer_size` (P), `diffloss_w` (W), `diffloss_d` (d) and `class_num`
    (`None` without `class_emb`). The number of attention heads cannot be inferred from weights: MAR fixes it per model
    (`mar_base` 12, `mar_large` 16, `mar_huge` 16, see `MAR_NUM_ATTENTION_HEADS`).
    """
    required = [
        "z_proj.weight",
        "decoder_embed.weight",
        "encoder_pos_embed_learned",
        "diffusion_pos_embed_learned",
        _HEAD_PREFIX + "input_proj.weight",
    ]
    missing = [key for key in required if key not in mar_state_dict]
    if missing:
        raise KeyError(f"Not a MAR state dict: missing {missing}.")

    encoder_embed_dim, token_embed_dim = mar_state_dict["z_proj.weight"].shape
    seq_len = mar_state_dict["diffusion_pos_embed_learned"].shape[1]
    fc1 = mar_state_dict.get("encoder_blocks.0.mlp.fc1.weight")
    class_emb = mar_state_dict.get("class_emb.weight")
    return {
        "encoder_embed_dim": encoder_embed_dim,
        "encoder_depth": _depth(mar_state_dict, "encoder_blocks."),
        "decoder_embed_dim": mar_state_dict["decoder_embed.weight"].shape[0],
        "decoder_depth": _depth(mar_state_dict, "decoder_blocks."),
        "mlp_ratio": fc1.shape[0] / encoder_embed_dim if fc1 is not None else None,
        "token_embed_dim": token_embed_dim,
        "seq_len": seq_len,
        "buffer_size": mar_state_dict["encoder_pos_embed_learned"].shape[1] - seq_len,
        "diffloss_w": mar_state_dict[_HEAD_PREFIX + "input_proj.weight"].shape[0],
        "diffloss_d": _depth(mar_state_dict, _HEAD_PREFIX + "res_blocks."),
        "class_num": class_emb.shape[0] if class_emb is not None else None,
    }


def _transformer_sources(mar_key: str, tensor: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """The ImpactTransformer tensors that a MAR key provides: `[(our name, value)]`, empty if none."""
    if mar_key in _TRANSFORMER_RENAMES:
        return [(_TRANSFORMER_RENAMES[mar_key], tensor)]
    match = _BLOCK_KEY.match(mar_key)
    if match is None:
        return []
    stack, index, module, kind = match.groups()
    prefix = f"{stack}.{index}."
    if module == "attn.qkv":
        if tensor.shape[0] % 3:
            return []
        # timm's fused projection: rows [0, D) are q, [D, 2D) k, [2D, 3D) v.
        query, key, value = tensor.chunk(3, dim=0)
        return [(f"{prefix}attn1.to_{name}.{kind}", part) for name, part in zip("qkv", (query, key, value))]
    if module in _BLOCK_RENAMES:
        return [(f"{prefix}{_BLOCK_RENAMES[module]}.{kind}", tensor)]
    return []


def _missing_reason(name: str, component: str, mar_config: dict) -> str:
    """Why an IMPACT tensor has no MAR source."""
    if component == "transformer":
        if name.startswith(("text_proj.", "pooled_text_proj.")):
            return "no MAR counterpart"
        match = re.match(r"^(encoder|decoder)_blocks\.(\d+)\.", name)
        if match and int(match.group(2)) >= mar_config[f"{match.group(1)}_depth"]:
            return f"MAR has only {mar_config[f'{match.group(1)}_depth']} {match.group(1)} blocks"
    else:
        match = _HEAD_BLOCK_KEY.match(name)
        if match and int(match.group(1)) >= mar_config["diffloss_d"]:
            return f"MAR's head has only {mar_config['diffloss_d']} res_blocks"
    return "not in the MAR state dict"


def convert_mar_to_impact(
    mar_state_dict: dict[str, torch.Tensor],
    transformer: ImpactTransformer,
    diff_head: ImpactDiffHead,
    mar_args: dict | None = None,
) -> ConversionReport:
    r"""
    Copy a MAR state dict into an [`ImpactTransformer`] and an [`ImpactDiffHead`], in place.

    Every MAR tensor is copied where its IMPACT counterpart exists with the same shape (after splitting the fused
    qkv projection into `to_q`, `to_k`, `to_v`). Nothing else is touched, and nothing raises on a mismatch:

    * Different depths: the first `min(depths)` blocks of each stack (and `res_blocks` of the head) are copied; extra
      IMPACT blocks are kept as initialised, extra MAR blocks are reported unused.
    * Shape-dependent tensors are kept as initialised when the audio setup differs from MAR's image setup:
      `latent_proj.weight` (token size), the position embeddings (condition slots + tokens), the diffusion position
      embedding (tokens), and the head's `input_proj.weight`, `final_layer.linear` and `cond_embed.weight`.
      The encoder / decoder position embeddings are only copied when also the split between condition slots and
      tokens is MAR's (`max_text_length` [+ 1 pooled] = `buffer_size`, tokens = `seq_len`).
    * A different width leaves the blocks as initialised (reported, not raised).
    * `text_proj` / `pooled_text_proj` have no MAR counterpart; MAR's `class_emb` is unused.
    * `null_condition` receives MAR's `fake_latent`. MAR broadcasts that vector into all `buffer_size` condition
      slots, IMPACT uses it as one token, so it is a starting point rather than an exact equivalent.

    Position embeddings are copied only onto MAR's own layout (a square raster of the same number of tokens, and for
    the encoder / decoder the same number of condition slots as MAR's buffer); an audio grid keeps its initialisation.
    Given `mar_args` (MAR's training arguments, as returned by [`load_mar_checkpoint`]), a number of attention heads
    other than MAR's model's ends up in `report.warnings` (shapes cannot reveal it).

    Args:
        mar_state_dict (`dict[str, torch.Tensor]`): MAR weights, e.g. from [`load_mar_checkpoint`].
        transformer ([`ImpactTransformer`]): Receives the MAE encoder / decoder weights.
        diff_head ([`ImpactDiffHead`]): Receives `diffloss.net.*`.
        mar_args (`dict`, *optional*): MAR's training arguments (only used for the attention-head check).

    Returns:
        [`ConversionReport`]: What was copied, kept as initialised, and left unused.

    Example (a few MAR-format tensors; for a real checkpoint use `load_mar_checkpoint("mar_base.pth")`):

    ```py
    >>> import torch
    >>> from diffusers_impact import ImpactDiffHead, ImpactTransformer
    >>> from diffusers_impact.convert_mar import convert_mar_to_impact

    >>> transformer = ImpactTransformer(
    ...     latent_channels=16, latent_length=4, latent_width=4, patch_size=1, hidden_size=32, num_encoder_layers=1,
    ...     num_decoder_layers=1, num_attention_heads=4, text_embed_dim=32, max_text_length=8,
    ...     pooled_text_embed_dim=None,
    ... )
    >>> diff_head = ImpactDiffHead(in_channels=16, model_channels=48, condition_channels=32, num_res_blocks=1)
    >>> mar_state_dict = {
    ...     "z_proj.weight": torch.randn(32, 16),  # token size C = 16, width 32
    ...     "encoder_blocks.0.attn.qkv.weight": torch.randn(96, 32),  # fused [q; k; v]
    ...     "class_emb.weight": torch.randn(10, 32),  # ImageNet classes: no IMPACT counterpart
    ... }
    >>> report = convert_mar_to_impact(mar_state_dict, transformer, diff_head)
    >>> report.copied
    ['transformer.latent_proj.weight', 'transformer.encoder_blocks.0.attn1.to_q.weight', 'transformer.encoder_blocks.0.attn1.to_k.weight', 'transformer.encoder_blocks.0.attn1.to_v.weight']
    >>> report.unused
    ['class_emb.weight']
    >>> torch.equal(transformer.encoder_blocks[0].attn1.to_k.weight, mar_state_dict["encoder_blocks.0.attn.qkv.weight"][32:64])
    True
    ```
    """
    report = ConversionReport()
    targets = {
        "transformer": transformer.state_dict(keep_vars=True),
        "diff_head": diff_head.state_dict(keep_vars=True),
    }
    sources: dict[str, dict[str, tuple[str, torch.Tensor]]] = {"transformer": {}, "diff_head": {}}
    for mar_key, tensor in mar_state_dict.items():
        if mar_key.startswith(_HEAD_PREFIX):
            sources["diff_head"][mar_key.removeprefix(_HEAD_PREFIX)] = (mar_key, tensor)
        else:
            for name, value in _transformer_sources(mar_key, tensor):
                sources["transformer"][name] = (mar_key, value)

    mar_config = _partial_config(mar_state_dict)
    num_condition_slots = transformer.encoder_pos_embed.shape[1] - transformer.num_tokens
    grid = (
        transformer.config.latent_length // transformer.config.patch_size,
        transformer.config.latent_width // transformer.config.patch_size,
    )

    def same_layout(name: str) -> bool:
        """Position embeddings carry over only onto MAR's layout: the same square raster (and condition slots)."""
        same_tokens = grid[0] == grid[1] and mar_config["seq_len"] == transformer.num_tokens
        return same_tokens and (name == "diffusion_pos_embed" or mar_config["buffer_size"] == num_condition_slots)

    used_keys = set()
    with torch.no_grad():
        for component, target in targets.items():
            for name, parameter in target.items():
                full_name = f"{component}.{name}"
                if name not in sources[component]:
                    reason = _missing_reason(name, component, mar_config)
                    report.kept_initialised.append(f"{full_name} ({reason})")
                    report.kept_initialised_parameters += parameter.numel()
                    continue
                mar_key, value = sources[component][name]
                reason = None
                if tuple(value.shape) != tuple(parameter.shape):
                    reason = f"shape {tuple(parameter.shape)} ≠ MAR {mar_key} {tuple(value.shape)}"
                elif name.endswith("pos_embed") and not same_layout(name):
                    reason = (
                        f"MAR's positions are a square raster of {mar_config['seq_len']} image tokens after "
                        f"{mar_config['buffer_size']} buffer slots; these are a {grid[0]}×{grid[1]} audio grid after "
                        f"{num_condition_slots} condition slots"
                    )
                if reason is not None:
                    report.kept_initialised.append(f"{full_name} ({reason})")
                    report.kept_initialised_parameters += parameter.numel()
                    continue
                parameter.copy_(value)
                report.copied.append(full_name)
                report.copied_parameters += parameter.numel()
                used_keys.add(mar_key)

    for mar_key, tensor in mar_state_dict.items():
        if mar_key not in used_keys:
            report.unused.append(mar_key)
            report.unused_parameters += tensor.numel()

    model_name = (mar_args or {}).get("model")
    expected_heads = MAR_NUM_ATTENTION_HEADS.get(model_name)
    if expected_heads is not None and transformer.config.num_attention_heads != expected_heads:
        report.warnings.append(
            f"MAR's {model_name} uses {expected_heads} attention heads, the transformer "
            f"{transformer.config.num_attention_heads}: the copied blocks compute something else."
        )
    return report
