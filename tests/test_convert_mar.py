"""MAR → IMPACT checkpoint conversion (`diffusers_impact.convert_mar`) against a MAR-format checkpoint built here.

The checkpoint follows MAR's state-dict layout (shared/research/mar.md §2, §3): random tensors under MAR's key names.
The converted models are compared with references of MAR's MAE forward (mar.md §5 steps 5–6) and of its
SimpleMLPAdaLN head (§3), written below from those descriptions.
"""

import argparse
import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from diffusers_impact import ImpactDiffHead, ImpactPipeline, ImpactTransformer
from diffusers_impact.convert_mar import ConversionReport, convert_mar_to_impact, infer_mar_config, load_mar_checkpoint


# MAR-format test configuration: widths De = Dd, token size C, S tokens, buffer P, head width W / depth d.
DE, DD, HEADS, C, S, P, W, D_HEAD, CLASSES, DEPTH = 32, 32, 4, 16, 16, 8, 48, 3, 10, 2
EPS = 1e-6
SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "training" / "convert_mar_checkpoint.py"


def mar_state_dict(seed=0, encoder_depth=DEPTH, decoder_depth=DEPTH, head_depth=D_HEAD) -> dict[str, torch.Tensor]:
    """Random tensors under MAR's key names and shapes (LayerNorm weights around 1, Linear weights ~ 1/sqrt(fan_in))."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0, mean=0.0):
        return torch.randn(*shape, generator=generator) * scale + mean

    def linear(prefix, out_features, in_features):
        return {
            f"{prefix}.weight": randn(out_features, in_features, scale=in_features**-0.5),
            f"{prefix}.bias": randn(out_features, scale=0.1),
        }

    def layer_norm(prefix, width):
        return {f"{prefix}.weight": randn(width, scale=0.2, mean=1.0), f"{prefix}.bias": randn(width, scale=0.1)}

    def block(prefix, width):
        return {
            **layer_norm(f"{prefix}.norm1", width),
            **linear(f"{prefix}.attn.qkv", 3 * width, width),
            **linear(f"{prefix}.attn.proj", width, width),
            **layer_norm(f"{prefix}.norm2", width),
            **linear(f"{prefix}.mlp.fc1", 4 * width, width),
            **linear(f"{prefix}.mlp.fc2", width, 4 * width),
        }

    sd = {
        "fake_latent": randn(1, DE, scale=0.5),
        "encoder_pos_embed_learned": randn(1, P + S, DE, scale=0.5),
        "mask_token": randn(1, 1, DD, scale=0.5),
        "decoder_pos_embed_learned": randn(1, P + S, DD, scale=0.5),
        "diffusion_pos_embed_learned": randn(1, S, DD, scale=0.5),
        "class_emb.weight": randn(CLASSES, DE),
        **linear("z_proj", DE, C),
        **layer_norm("z_proj_ln", DE),
    }
    for i in range(encoder_depth):
        sd.update(block(f"encoder_blocks.{i}", DE))
    sd.update(layer_norm("encoder_norm", DE))
    sd.update(linear("decoder_embed", DD, DE))
    for i in range(decoder_depth):
        sd.update(block(f"decoder_blocks.{i}", DD))
    sd.update(layer_norm("decoder_norm", DD))
    head = {
        **linear("time_embed.mlp.0", W, 256),
        **linear("time_embed.mlp.2", W, W),
        **linear("cond_embed", W, DD),
        **linear("input_proj", W, C),
    }
    for i in range(head_depth):
        head.update(layer_norm(f"res_blocks.{i}.in_ln", W))
        head.update(linear(f"res_blocks.{i}.mlp.0", W, W))
        head.update(linear(f"res_blocks.{i}.mlp.2", W, W))
        head.update(linear(f"res_blocks.{i}.adaLN_modulation.1", 3 * W, W))
    head.update(linear("final_layer.linear", 2 * C, W))
    head.update(linear("final_layer.adaLN_modulation.1", 2 * W, W))
    sd.update({f"diffloss.net.{name}": value for name, value in head.items()})
    return sd


def impact_models(
    hidden_size=DE,
    encoder_layers=DEPTH,
    decoder_layers=DEPTH,
    head_depth=D_HEAD,
    latent_channels=16,
    latent_length=4,
    latent_width=4,
    max_text_length=P,
    head_width=W,
    seed=1,
):
    """An ImpactTransformer / ImpactDiffHead pair; the defaults make every MAR tensor fit (patch 1: C = 16, S = 16)."""
    torch.manual_seed(seed)
    transformer = ImpactTransformer(
        latent_channels=latent_channels,
        latent_length=latent_length,
        latent_width=latent_width,
        patch_size=1,
        hidden_size=hidden_size,
        num_encoder_layers=encoder_layers,
        num_decoder_layers=decoder_layers,
        num_attention_heads=HEADS,
        text_embed_dim=hidden_size,
        max_text_length=max_text_length,
        pooled_text_embed_dim=None,
        dropout=0.0,
    ).eval()
    diff_head = ImpactDiffHead(
        in_channels=latent_channels,
        model_channels=head_width,
        condition_channels=hidden_size,
        num_res_blocks=head_depth,
    ).eval()
    return transformer, diff_head


def snapshot(*modules) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.{name}": value.clone()
        for prefix, module in zip(("transformer", "diff_head"), modules)
        for name, value in module.state_dict().items()
    }


def current(transformer, diff_head) -> dict[str, torch.Tensor]:
    return {
        **{f"transformer.{name}": value for name, value in transformer.state_dict().items()},
        **{f"diff_head.{name}": value for name, value in diff_head.state_dict().items()},
    }


@pytest.fixture
def checkpoint(tmp_path):
    """A file laid out as MAR's `save_model` writes it, with distinct `model` and `model_ema` weights."""
    path = tmp_path / "checkpoint-last.pth"
    args = argparse.Namespace(model="mar_base", diffloss_d=D_HEAD, diffloss_w=W, buffer_size=P, vae_embed_dim=C)
    torch.save({"model": mar_state_dict(seed=0), "model_ema": mar_state_dict(seed=1), "epoch": 3, "args": args}, path)
    return path


# ----------------------------------------------------------------------------------------------------------------
# Loading and config inference


def test_load_picks_model_ema_by_default_and_model_on_request(checkpoint):
    ema, args = load_mar_checkpoint(checkpoint)
    raw, _ = load_mar_checkpoint(checkpoint, use_ema=False)
    expected_ema, expected_raw = mar_state_dict(seed=1), mar_state_dict(seed=0)
    assert ema.keys() == expected_ema.keys() and raw.keys() == expected_raw.keys()
    assert all(torch.equal(ema[key], expected_ema[key]) for key in expected_ema)
    assert all(torch.equal(raw[key], expected_raw[key]) for key in expected_raw)
    assert not torch.equal(ema["z_proj.weight"], raw["z_proj.weight"])
    assert args == {"model": "mar_base", "diffloss_d": D_HEAD, "diffloss_w": W, "buffer_size": P, "vae_embed_dim": C}


def test_load_bare_state_dict_and_clear_errors(tmp_path):
    bare = tmp_path / "bare.pth"
    torch.save({f"module.{key}": value for key, value in mar_state_dict().items()}, bare)  # as saved from DDP
    state_dict, args = load_mar_checkpoint(bare)
    assert args == {} and torch.equal(state_dict["z_proj.weight"], mar_state_dict()["z_proj.weight"])

    only_model = tmp_path / "only_model.pth"
    torch.save({"model": mar_state_dict(), "epoch": 1}, only_model)
    with pytest.raises(KeyError, match="use_ema=False"):
        load_mar_checkpoint(only_model)
    assert load_mar_checkpoint(only_model, use_ema=False)[0].keys() == mar_state_dict().keys()

    other = tmp_path / "other.pth"
    torch.save({"state_dict": mar_state_dict(), "epoch": 1}, other)
    with pytest.raises(KeyError, match="neither a MAR checkpoint"):
        load_mar_checkpoint(other)


def test_infer_mar_config():
    config = infer_mar_config(mar_state_dict(encoder_depth=3, decoder_depth=1, head_depth=2))
    assert config == {
        "encoder_embed_dim": DE,
        "encoder_depth": 3,
        "decoder_embed_dim": DD,
        "decoder_depth": 1,
        "mlp_ratio": 4.0,
        "token_embed_dim": C,
        "seq_len": S,
        "buffer_size": P,
        "diffloss_w": W,
        "diffloss_d": 2,
        "class_num": CLASSES,
    }
    with pytest.raises(KeyError, match="z_proj.weight"):
        infer_mar_config({"class_emb.weight": torch.zeros(CLASSES, DE)})


# ----------------------------------------------------------------------------------------------------------------
# Matching shapes: every tensor copied exactly


def expected_sources(mar: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What each IMPACT tensor must equal after converting `mar` into `impact_models()` (written out by hand)."""
    expected = {
        "transformer.null_condition": mar["fake_latent"],
        "transformer.encoder_pos_embed": mar["encoder_pos_embed_learned"],
        "transformer.decoder_pos_embed": mar["decoder_pos_embed_learned"],
        "transformer.diffusion_pos_embed": mar["diffusion_pos_embed_learned"],
        "transformer.mask_token": mar["mask_token"],
    }
    for ours, theirs in [
        ("latent_proj", "z_proj"),
        ("encoder_input_norm", "z_proj_ln"),
        ("encoder_norm", "encoder_norm"),
        ("decoder_embed", "decoder_embed"),
        ("decoder_norm", "decoder_norm"),
    ]:
        for kind in ("weight", "bias"):
            expected[f"transformer.{ours}.{kind}"] = mar[f"{theirs}.{kind}"]
    for stack in ("encoder_blocks", "decoder_blocks"):
        for i in range(DEPTH):
            ours, theirs = f"transformer.{stack}.{i}.", f"{stack}.{i}."
            for kind in ("weight", "bias"):
                qkv = mar[f"{theirs}attn.qkv.{kind}"]
                expected[f"{ours}attn1.to_q.{kind}"] = qkv[0:DE]
                expected[f"{ours}attn1.to_k.{kind}"] = qkv[DE : 2 * DE]
                expected[f"{ours}attn1.to_v.{kind}"] = qkv[2 * DE : 3 * DE]
                expected[f"{ours}attn1.to_out.0.{kind}"] = mar[f"{theirs}attn.proj.{kind}"]
                expected[f"{ours}norm1.{kind}"] = mar[f"{theirs}norm1.{kind}"]
                expected[f"{ours}norm3.{kind}"] = mar[f"{theirs}norm2.{kind}"]
                expected[f"{ours}ff.net.0.proj.{kind}"] = mar[f"{theirs}mlp.fc1.{kind}"]
                expected[f"{ours}ff.net.2.{kind}"] = mar[f"{theirs}mlp.fc2.{kind}"]
    for key, value in mar.items():
        if key.startswith("diffloss.net."):
            expected["diff_head." + key.removeprefix("diffloss.net.")] = value
    return expected


def test_every_compatible_tensor_is_copied_exactly():
    mar = mar_state_dict()
    transformer, diff_head = impact_models()
    before = snapshot(transformer, diff_head)
    report = convert_mar_to_impact(mar, transformer, diff_head)
    after = current(transformer, diff_head)
    expected = expected_sources(mar)

    assert sorted(report.copied) == sorted(expected)
    for name, value in expected.items():
        assert torch.equal(after[name], value), name
        assert not torch.equal(before[name], value), name  # the copy changed something
    # The fused qkv, row block by row block: q, k, v of every head.
    qkv = mar["decoder_blocks.1.attn.qkv.weight"]
    block = transformer.decoder_blocks[1].attn1
    head_dim = DE // HEADS
    for part, projection in enumerate((block.to_q, block.to_k, block.to_v)):
        for head in range(HEADS):
            rows = slice(part * DE + head * head_dim, part * DE + (head + 1) * head_dim)
            assert torch.equal(projection.weight[head * head_dim : (head + 1) * head_dim], qkv[rows])
    # Only the text projection has no MAR counterpart; only MAR's class embedding is left over.
    assert report.kept_initialised_reasons == {
        "transformer.text_proj.weight": "no MAR counterpart",
        "transformer.text_proj.bias": "no MAR counterpart",
    }
    assert torch.equal(after["transformer.text_proj.weight"], before["transformer.text_proj.weight"])
    assert report.unused == ["class_emb.weight"]
    assert report.unused_parameters == CLASSES * DE
    assert report.copied_parameters == sum(after[name].numel() for name in expected)
    assert report.kept_initialised_parameters == DE * DE + DE
    assert report.warnings == []


def test_report_summary():
    transformer, diff_head = impact_models()
    report = convert_mar_to_impact(mar_state_dict(), transformer, diff_head)
    text = str(report)
    assert f"copied:             {len(report.copied)} tensors, {report.copied_parameters:,} parameters" in text
    assert f"kept initialised:     2 tensors, {DE * DE + DE:,} parameters" in text
    assert f"unused MAR keys:      1 tensors, {CLASSES * DE:,} parameters" in text
    assert "- transformer.text_proj.weight (no MAR counterpart)" in text and "- class_emb.weight" in text
    assert "fake_latent" in text and "starting point" in text
    assert isinstance(report, ConversionReport)


def test_attention_head_check_uses_mar_model_name():
    transformer, diff_head = impact_models()  # 4 heads
    report = convert_mar_to_impact(mar_state_dict(), transformer, diff_head, mar_args={"model": "mar_base"})
    assert len(report.warnings) == 1 and "12 attention heads" in report.warnings[0]
    assert "WARNING" in str(report)
    report = convert_mar_to_impact(mar_state_dict(), transformer, diff_head, mar_args={"model": "custom"})
    assert report.warnings == []


def test_position_embeddings_on_a_non_square_token_grid_stay_initialised():
    """Same token count but an 8 × 2 grid instead of MAR's 4 × 4 raster: positions mean other neighbourhoods."""
    transformer, diff_head = impact_models(latent_length=8, latent_width=2)
    initial = {name: p.clone() for name, p in transformer.named_parameters() if name.endswith("pos_embed")}
    report = convert_mar_to_impact(mar_state_dict(), transformer, diff_head)
    for name, value in initial.items():
        assert f"transformer.{name}" not in report.copied
        assert any(entry.startswith(f"transformer.{name} (MAR's positions") for entry in report.kept_initialised)
        assert torch.equal(getattr(transformer, name), value)
    assert "transformer.mask_token" in report.copied  # width-only tensors still copy


# ----------------------------------------------------------------------------------------------------------------
# Converted models compute MAR's forward


def layer_norm(x, sd, prefix):
    return F.layer_norm(x, x.shape[-1:], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps=EPS)


def linear(x, sd, prefix):
    return x @ sd[f"{prefix}.weight"].T + sd[f"{prefix}.bias"]


def timm_block(x, sd, prefix, num_heads):
    """Pre-LN ViT block with a fused qkv projection: x + proj(attn(norm1(x))), then x + fc2(gelu(fc1(norm2(x))))."""
    batch_size, length, width = x.shape
    qkv = linear(layer_norm(x, sd, f"{prefix}.norm1"), sd, f"{prefix}.attn.qkv")
    q, k, v = qkv.reshape(batch_size, length, 3, num_heads, width // num_heads).permute(2, 0, 3, 1, 4)
    attention = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch_size, length, width)
    x = x + linear(attention, sd, f"{prefix}.attn.proj")
    hidden = F.gelu(linear(layer_norm(x, sd, f"{prefix}.norm2"), sd, f"{prefix}.mlp.fc1"))
    return x + linear(hidden, sd, f"{prefix}.mlp.fc2")


def mar_mae_reference(sd, tokens, mask, class_vector, num_heads=HEADS):
    """MAR's `forward_mae_encoder` + `forward_mae_decoder` (mar.md §5 steps 5–6) for tokens (B, S, C), mask (B, S)."""
    batch_size, num_tokens, _ = tokens.shape
    buffer_size = sd["encoder_pos_embed_learned"].shape[1] - num_tokens
    x = linear(tokens, sd, "z_proj")
    x = torch.cat([class_vector[:, None, :].expand(-1, buffer_size, -1), x], dim=1)  # P copies of the class vector
    x = layer_norm(x + sd["encoder_pos_embed_learned"], sd, "z_proj_ln")
    keep = torch.cat([torch.zeros(batch_size, buffer_size, dtype=torch.bool), mask], dim=1).logical_not()
    x = x[keep].reshape(batch_size, -1, x.shape[-1])  # masked positions dropped, positional order kept
    for i in range(DEPTH):
        x = timm_block(x, sd, f"encoder_blocks.{i}", num_heads)
    x = linear(layer_norm(x, sd, "encoder_norm"), sd, "decoder_embed")
    full = sd["mask_token"].expand(batch_size, buffer_size + num_tokens, -1).clone()
    full[keep] = x.reshape(-1, x.shape[-1])
    x = full + sd["decoder_pos_embed_learned"]
    for i in range(DEPTH):
        x = timm_block(x, sd, f"decoder_blocks.{i}", num_heads)
    x = layer_norm(x, sd, "decoder_norm")
    return x[:, buffer_size:] + sd["diffusion_pos_embed_learned"]


def mar_head_reference(sd, x, t, c):
    """MAR's SimpleMLPAdaLN (mar.md §3) from the `diffloss.net.*` tensors."""
    net = {key.removeprefix("diffloss.net."): value for key, value in sd.items() if key.startswith("diffloss.net.")}
    frequencies = torch.exp(-math.log(10000) * torch.arange(128, dtype=torch.float32) / 128)
    angles = t.float()[:, None] * frequencies[None]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # cos first
    y = linear(F.silu(linear(embedding, net, "time_embed.mlp.0")), net, "time_embed.mlp.2") + linear(
        c, net, "cond_embed"
    )
    h = linear(x, net, "input_proj")
    for i in range(D_HEAD):
        shift, scale, gate = linear(F.silu(y), net, f"res_blocks.{i}.adaLN_modulation.1").chunk(3, dim=-1)
        modulated = layer_norm(h, net, f"res_blocks.{i}.in_ln") * (1 + scale) + shift
        h = h + gate * linear(F.silu(linear(modulated, net, f"res_blocks.{i}.mlp.0")), net, f"res_blocks.{i}.mlp.2")
    shift, scale = linear(F.silu(y), net, "final_layer.adaLN_modulation.1").chunk(2, dim=-1)
    return linear(F.layer_norm(h, h.shape[-1:], eps=EPS) * (1 + scale) + shift, net, "final_layer.linear")


@pytest.mark.parametrize("num_masked", [0, 5, 12, 16])
def test_converted_transformer_computes_mar_mae_forward(num_masked):
    mar = mar_state_dict()
    transformer, diff_head = impact_models()
    convert_mar_to_impact(mar, transformer, diff_head)
    with torch.no_grad():  # the text projection passes the class vector through unchanged
        transformer.text_proj.weight.copy_(torch.eye(DE))
        transformer.text_proj.bias.zero_()

    batch_size = 3
    generator = torch.Generator().manual_seed(5)
    tokens = torch.randn(batch_size, S, C, generator=generator)
    orders = torch.stack([torch.randperm(S, generator=generator) for _ in range(batch_size)])
    mask = torch.zeros(batch_size, S, dtype=torch.bool).scatter_(1, orders[:, :num_masked], True)
    class_vector = mar["class_emb.weight"][torch.tensor([1, 7, 3])]
    with torch.no_grad():
        reference = mar_mae_reference(mar, tokens, mask, class_vector)
        ours = transformer(
            tokens, mask, encoder_hidden_states=class_vector[:, None].expand(-1, P, -1).contiguous()
        ).sample
    assert reference.abs().max() > 0.5  # a non-degenerate output
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_converted_head_computes_mar_head():
    mar = mar_state_dict()
    transformer, diff_head = impact_models()
    convert_mar_to_impact(mar, transformer, diff_head)
    head_keys = {
        key.removeprefix("diffloss.net."): value for key, value in mar.items() if key.startswith("diffloss.net.")
    }
    assert diff_head.state_dict().keys() == head_keys.keys()

    generator = torch.Generator().manual_seed(6)
    x, c = torch.randn(7, C, generator=generator), torch.randn(7, DD, generator=generator)
    t = torch.tensor([0, 1, 10, 250, 500, 998, 999])
    with torch.no_grad():
        reference = mar_head_reference(mar, x, t, c)
        ours = diff_head(x, t, c).sample
    assert reference.shape == (7, 2 * C) and reference.abs().max() > 0.5
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------------------
# Mismatched shapes: partial copies, reported, no crash


def test_mismatched_depths_and_token_shapes_are_reported():
    mar = mar_state_dict()  # 2 + 2 blocks, head depth 3, C = 16, S = 16
    # 3 encoder / 1 decoder blocks, head depth 2, tokens of 8 channels (C = 8), 12 tokens (S = 12), 12 text slots
    # (12 + 12 = MAR's 8 + 16 slots: same length, different split).
    transformer, diff_head = impact_models(
        encoder_layers=3,
        decoder_layers=1,
        head_depth=2,
        latent_channels=8,
        latent_length=4,
        latent_width=3,
        max_text_length=12,
    )
    before = snapshot(transformer, diff_head)
    report = convert_mar_to_impact(mar, transformer, diff_head)
    after = current(transformer, diff_head)
    kept = report.kept_initialised_reasons

    for name in [
        "transformer.encoder_blocks.1.attn1.to_v.weight",
        "transformer.decoder_blocks.0.ff.net.2.bias",
        "transformer.latent_proj.bias",
        "transformer.null_condition",
        "diff_head.input_proj.bias",
        "diff_head.res_blocks.1.adaLN_modulation.1.weight",
        "diff_head.final_layer.adaLN_modulation.1.weight",
        "diff_head.cond_embed.weight",
    ]:
        assert name in report.copied, name
    assert torch.equal(
        after["transformer.encoder_blocks.1.attn1.to_v.weight"], mar["encoder_blocks.1.attn.qkv.weight"][2 * DE :]
    )
    assert torch.equal(after["diff_head.res_blocks.1.mlp.0.weight"], mar["diffloss.net.res_blocks.1.mlp.0.weight"])

    assert kept["transformer.encoder_blocks.2.attn1.to_q.weight"] == "MAR has only 2 encoder blocks"
    assert "shape (32, 8) ≠ MAR z_proj.weight (32, 16)" in kept["transformer.latent_proj.weight"]
    assert "≠ MAR diffusion_pos_embed_learned" in kept["transformer.diffusion_pos_embed"]
    assert (
        "16 image tokens after 8 buffer slots; these are a 4×3 audio grid after 12"
        in kept["transformer.encoder_pos_embed"]
    )
    assert "condition slots" in kept["transformer.decoder_pos_embed"]
    assert "≠ MAR diffloss.net.input_proj.weight" in kept["diff_head.input_proj.weight"]
    assert "≠ MAR diffloss.net.final_layer.linear.weight" in kept["diff_head.final_layer.linear.weight"]
    assert "≠ MAR diffloss.net.final_layer.linear.bias" in kept["diff_head.final_layer.linear.bias"]
    for name in kept:
        assert torch.equal(after[name], before[name]), name
    assert set(report.copied) | set(kept) == set(after)
    assert not set(report.copied) & set(kept)

    unused = set(report.unused)
    assert {
        "z_proj.weight",
        "encoder_pos_embed_learned",
        "decoder_pos_embed_learned",
        "diffusion_pos_embed_learned",
        "diffloss.net.input_proj.weight",
        "diffloss.net.final_layer.linear.weight",
        "class_emb.weight",
    } <= unused
    assert {key for key in mar if key.startswith("decoder_blocks.1.")} <= unused
    assert {key for key in mar if key.startswith("diffloss.net.res_blocks.2.")} <= unused
    assert not {key for key in mar if key.startswith(("encoder_blocks.", "decoder_blocks.0."))} & unused
    assert report.unused_parameters == sum(mar[key].numel() for key in report.unused)
    assert report.kept_initialised_parameters == sum(after[name].numel() for name in kept)


def test_width_mismatch_keeps_everything_initialised_without_crashing():
    mar = mar_state_dict()
    transformer, diff_head = impact_models(hidden_size=64, head_width=64)  # MAR: width 32, head width 48
    before = snapshot(transformer, diff_head)
    report = convert_mar_to_impact(mar, transformer, diff_head)
    after = current(transformer, diff_head)
    # Only the head's output bias (2C values) does not depend on a width.
    assert report.copied == ["diff_head.final_layer.linear.bias"] and report.copied_parameters == 2 * C
    assert sorted(report.unused) == sorted(set(mar) - {"diffloss.net.final_layer.linear.bias"})
    assert sorted(report.kept_initialised_reasons) == sorted(set(after) - {"diff_head.final_layer.linear.bias"})
    assert all(torch.equal(after[name], before[name]) for name in report.kept_initialised_reasons)
    kept = report.kept_initialised_reasons
    assert kept["transformer.encoder_blocks.0.norm1.weight"] == "shape (64,) ≠ MAR encoder_blocks.0.norm1.weight (32,)"


# ----------------------------------------------------------------------------------------------------------------
# Command-line script


def test_script_converts_a_pipeline_folder(tmp_path, checkpoint, capsys):
    from diffusers_impact.testing_utils import tiny_impact_components

    components = tiny_impact_components(with_clap=False)
    transformer, diff_head = impact_models()
    components.update(transformer=transformer, diff_head=diff_head)
    ImpactPipeline(**components).save_pretrained(tmp_path / "pipeline")

    spec = importlib.util.spec_from_file_location("convert_mar_checkpoint", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(
        [
            "--mar_checkpoint",
            str(checkpoint),
            "--pipeline",
            str(tmp_path / "pipeline"),
            "--output_dir",
            str(tmp_path / "out"),
            "--use_model_weights",
        ]
    )
    printed = capsys.readouterr().out
    assert "copied:" in printed and "class_emb.weight" in printed and "12 attention heads" in printed

    converted = ImpactPipeline.from_pretrained(tmp_path / "out")
    raw = mar_state_dict(seed=0)  # --use_model_weights: "model", not "model_ema"
    assert torch.equal(
        converted.transformer.encoder_blocks[0].attn1.to_k.weight, raw["encoder_blocks.0.attn.qkv.weight"][DE : 2 * DE]
    )
    assert torch.equal(converted.diff_head.final_layer.linear.weight, raw["diffloss.net.final_layer.linear.weight"])
    assert torch.equal(converted.transformer.text_proj.weight, transformer.text_proj.weight)  # kept as initialised
