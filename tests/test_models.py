"""Behaviour of ImpactTransformer and ImpactDiffHead (paper App. D.3, D.4; MAR's MAE encoder and SimpleMLPAdaLN)."""

import pytest
import torch

from diffusers_impact import ImpactDiffHead, ImpactTransformer
from diffusers_impact.configs import IMPACT_TRANSFORMER_CONFIGS


TEXT_DIM, POOLED_DIM, MAX_TEXT = 12, 6, 20


def small_transformer(pooled=True, **overrides) -> ImpactTransformer:
    torch.manual_seed(0)
    config = {
        "latent_channels": 8,
        "latent_length": 16,
        "latent_width": 8,
        "patch_size": 4,
        "hidden_size": 32,
        "num_encoder_layers": 2,
        "num_decoder_layers": 2,
        "num_attention_heads": 4,
        "text_embed_dim": TEXT_DIM,
        "max_text_length": MAX_TEXT,
        "pooled_text_embed_dim": POOLED_DIM if pooled else None,
        "dropout": 0.0,
    }
    config.update(overrides)
    return ImpactTransformer(**config).eval()


def random_mask(batch_size, num_tokens, num_masked, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    orders = torch.stack([torch.randperm(num_tokens, generator=generator) for _ in range(batch_size)])
    return torch.zeros(batch_size, num_tokens, dtype=torch.bool).scatter_(1, orders[:, :num_masked], True)


def condition(batch_size, text_length, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return {
        "encoder_hidden_states": torch.randn(batch_size, text_length, TEXT_DIM, generator=generator),
        "encoder_attention_mask": torch.ones(batch_size, text_length, dtype=torch.bool),
        "pooled_projections": torch.randn(batch_size, POOLED_DIM, generator=generator),
    }


@pytest.mark.parametrize("size, expected", [("base", 193e6), ("large", 427e6)])
def test_parameter_count_matches_paper_table_1(size, expected):
    """Flan-T5-large (1024) + CLAP (512) inputs and the default head give 193M (base) and 427M (large) ± 1%."""
    config = IMPACT_TRANSFORMER_CONFIGS[size]
    with torch.device("meta"):
        transformer = ImpactTransformer(**config, text_embed_dim=1024, pooled_text_embed_dim=512)
        head = ImpactDiffHead(condition_channels=config["hidden_size"])
    total = sum(p.numel() for p in transformer.parameters()) + sum(p.numel() for p in head.parameters())
    assert abs(total / expected - 1) < 0.01, total
    assert transformer.num_tokens == 256  # 10.24 s: 256 latent frames × 16 bins, patch 4


def test_patchify_is_time_major_and_exactly_inverted():
    model = small_transformer()
    latents = torch.randn(2, 8, 16, 8)
    tokens = model.patchify(latents)
    assert tokens.shape == (2, (16 // 4) * (8 // 4), 8 * 16)
    # Token 1 is time block 0, frequency block 1; its value at feature c·p² + i·p + j is latents[c, i, 4 + j].
    assert torch.equal(tokens[0, 1].view(8, 4, 4), latents[0, :, 0:4, 4:8])
    assert torch.equal(tokens[1, 2].view(8, 4, 4), latents[1, :, 4:8, 0:4])
    assert torch.equal(model.unpatchify(tokens), latents)
    with pytest.raises(ValueError, match="latents of shape"):
        model.patchify(torch.randn(2, 8, 12, 8))


def test_masked_token_values_do_not_change_the_output():
    """Masked tokens are dropped from the encoder, not zeroed: their values cannot reach h."""
    model = small_transformer()
    tokens = torch.randn(3, model.num_tokens, 128)
    mask = random_mask(3, model.num_tokens, num_masked=5)
    with torch.no_grad():
        reference = model(tokens, mask, **condition(3, 7)).sample
        altered = torch.where(mask.unsqueeze(-1), torch.randn_like(tokens) * 100, tokens)
        output = model(altered, mask, **condition(3, 7)).sample
        visible_changed = tokens.clone()
        visible_changed[~mask] += 1.0
        changed = model(visible_changed, mask, **condition(3, 7)).sample
    assert output.shape == (3, model.num_tokens, 32)
    torch.testing.assert_close(output, reference, rtol=0, atol=1e-6)
    assert (changed - reference).abs().max() > 1e-3  # visible tokens do matter


def test_text_padding_does_not_change_the_output():
    """A prompt gives the same h whether its T5 sequence is padded to 10 or to 20 tokens."""
    model = small_transformer()
    tokens = torch.randn(2, model.num_tokens, 128)
    mask = random_mask(2, model.num_tokens, num_masked=6)
    short = condition(2, 4)
    padded = {name: value.clone() for name, value in short.items()}
    for length in (10, MAX_TEXT):
        padded["encoder_hidden_states"] = torch.cat(
            [short["encoder_hidden_states"], torch.randn(2, length - 4, TEXT_DIM) * 50], dim=1
        )
        padded["encoder_attention_mask"] = torch.cat(
            [short["encoder_attention_mask"], torch.zeros(2, length - 4, dtype=torch.bool)], dim=1
        )
        with torch.no_grad():
            torch.testing.assert_close(
                model(tokens, mask, **padded).sample, model(tokens, mask, **short).sample, rtol=0, atol=1e-5
            )


def test_text_and_pooled_condition_change_the_output_and_null_condition_ignores_them():
    model = small_transformer()
    tokens = torch.randn(2, model.num_tokens, 128)
    mask = random_mask(2, model.num_tokens, num_masked=8)
    first, second = condition(2, 5, seed=1), condition(2, 5, seed=2)
    other_pooled = dict(first, pooled_projections=second["pooled_projections"])
    drop = torch.tensor([True, False])
    with torch.no_grad():
        out_first = model(tokens, mask, **first).sample
        out_second = model(tokens, mask, **second).sample
        out_other_pooled = model(tokens, mask, **other_pooled).sample
        dropped_first = model(tokens, mask, **first, drop_condition=drop).sample
        dropped_second = model(tokens, mask, **second, drop_condition=drop).sample
        unconditional = model(tokens, mask).sample  # no text at all (unconditional pre-training)
    assert (out_first - out_second).abs().max() > 1e-3
    assert (out_first - out_other_pooled).abs().max() > 1e-3
    # Dropped samples see only the null condition: independent of the text, equal to the text-free forward.
    torch.testing.assert_close(dropped_first[0], dropped_second[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(dropped_first[0], unconditional[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(dropped_first[1], out_first[1], rtol=0, atol=1e-5)
    assert (unconditional[0] - out_first[0]).abs().max() > 1e-3


def test_a_fully_masked_text_leaves_the_pooled_embedding_as_the_condition():
    """With every text token masked out (train_impact.py --text_token_dropout), the pooled slot is the whole condition."""
    model = small_transformer()
    tokens = torch.randn(2, model.num_tokens, 128)
    mask = random_mask(2, model.num_tokens, num_masked=8)
    first, second = condition(2, 5, seed=1), condition(2, 5, seed=2)
    no_tokens = torch.zeros(2, 5, dtype=torch.bool)
    pooled_only = dict(first, encoder_attention_mask=no_tokens)
    other_tokens = dict(second, encoder_attention_mask=no_tokens, pooled_projections=first["pooled_projections"])
    other_pooled = dict(pooled_only, pooled_projections=second["pooled_projections"])
    with torch.no_grad():
        out_pooled_only = model(tokens, mask, **pooled_only).sample
        torch.testing.assert_close(model(tokens, mask, **other_tokens).sample, out_pooled_only, rtol=0, atol=1e-6)
        assert (model(tokens, mask, **other_pooled).sample - out_pooled_only).abs().max() > 1e-3
        assert (model(tokens, mask, **first).sample - out_pooled_only).abs().max() > 1e-3  # the tokens count when kept
        assert torch.isfinite(out_pooled_only).all()


def test_all_masked_and_none_masked():
    model = small_transformer(pooled=False)
    tokens = torch.randn(2, model.num_tokens, 128)
    text = {"encoder_hidden_states": torch.randn(2, 3, TEXT_DIM)}
    with torch.no_grad():
        all_masked = model(tokens, torch.ones(2, model.num_tokens, dtype=torch.bool), **text).sample
        none_masked = model(tokens, torch.zeros(2, model.num_tokens, dtype=torch.bool), **text).sample
    assert torch.isfinite(all_masked).all() and torch.isfinite(none_masked).all()
    # With every token masked the latent rows differ only by their position embeddings, not by token values.
    with torch.no_grad():
        torch.testing.assert_close(
            model(torch.randn_like(tokens), torch.ones(2, model.num_tokens, dtype=torch.bool), **text).sample,
            all_masked,
            rtol=0,
            atol=1e-6,
        )


def test_bad_inputs_raise_clear_errors():
    model = small_transformer()
    tokens = torch.randn(2, model.num_tokens, 128)
    uneven = torch.zeros(2, model.num_tokens, dtype=torch.bool)
    uneven[0, :3] = True
    with pytest.raises(ValueError, match="same number of tokens"):
        model(tokens, uneven, **condition(2, 4))
    mask = random_mask(2, model.num_tokens, 3)
    with pytest.raises(ValueError, match="pooled_projections"):
        model(tokens, mask, encoder_hidden_states=torch.randn(2, 4, TEXT_DIM))
    with pytest.raises(ValueError, match="at most 20"):
        model(tokens, mask, **condition(2, MAX_TEXT + 1))
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        model(tokens, mask, **dict(condition(2, 4), encoder_hidden_states=torch.randn(2, 4, TEXT_DIM + 1)))
    with pytest.raises(ValueError, match="latent tokens"):
        model(tokens[:, :-1], mask[:, :-1], **condition(2, 4))
    with pytest.raises(ValueError, match="multiples of patch_size"):
        ImpactTransformer(latent_length=10, patch_size=4)


def test_gradient_checkpointing_gives_the_same_gradients():
    model = small_transformer()
    tokens = torch.randn(2, model.num_tokens, 128)
    mask = random_mask(2, model.num_tokens, 6)
    cond = condition(2, 5)

    def gradients():
        model.zero_grad()
        model(tokens, mask, **cond).sample.square().mean().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = gradients()
    model.enable_gradient_checkpointing()
    checkpointed = gradients()
    assert len(plain) == len(checkpointed) > 0
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_save_and_load_round_trip(tmp_path):
    model = small_transformer()
    head = ImpactDiffHead(in_channels=128, model_channels=64, condition_channels=32, num_res_blocks=2)
    model.save_pretrained(tmp_path / "transformer")
    head.save_pretrained(tmp_path / "head")
    loaded = ImpactTransformer.from_pretrained(tmp_path / "transformer").eval()
    loaded_head = ImpactDiffHead.from_pretrained(tmp_path / "head")
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(model.config) and public(loaded_head.config) == public(head.config)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    tokens, mask = torch.randn(1, model.num_tokens, 128), random_mask(1, model.num_tokens, 4)
    with torch.no_grad():
        # Equal weights, but the loaded tensors sit at other memory addresses, where the CPU kernels may round differently.
        torch.testing.assert_close(
            loaded(tokens, mask, **condition(1, 3)).sample,
            model(tokens, mask, **condition(1, 3)).sample,
            rtol=1e-5,
            atol=1e-5,
        )
    torch.manual_seed(0)
    x, t, c = torch.randn(5, 128), torch.randint(0, 1000, (5,)), torch.randn(5, 32)
    torch.nn.init.normal_(head.final_layer.linear.weight)  # a fresh head outputs exactly zero: make it say something
    head.save_pretrained(tmp_path / "head")
    loaded_head = ImpactDiffHead.from_pretrained(tmp_path / "head")
    with torch.no_grad():
        torch.testing.assert_close(loaded_head(x, t, c).sample, head(x, t, c).sample, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------- diffusion head
def test_fresh_head_outputs_exactly_zero():
    head = ImpactDiffHead(in_channels=16, model_channels=32, condition_channels=24, num_res_blocks=3)
    output = head(torch.randn(7, 16), torch.randint(0, 1000, (7,)), torch.randn(7, 24)).sample
    assert output.shape == (7, 32)  # ε and the learned-range value v
    assert torch.equal(output, torch.zeros_like(output))
    assert (
        ImpactDiffHead(
            in_channels=16, learn_sigma=False, model_channels=8, condition_channels=4
        ).final_layer.linear.out_features
        == 16
    )


def test_head_state_dict_uses_mar_diffloss_names():
    """MAR's `diffloss.net.*` keys convert by stripping the prefix (mar.md §3)."""
    head = ImpactDiffHead(in_channels=16, model_channels=32, condition_channels=24, num_res_blocks=2)
    expected = {
        "time_embed.mlp.0.weight": (32, 256),
        "time_embed.mlp.2.weight": (32, 32),
        "cond_embed.weight": (32, 24),
        "input_proj.weight": (32, 16),
        "res_blocks.1.in_ln.weight": (32,),
        "res_blocks.1.mlp.0.weight": (32, 32),
        "res_blocks.1.mlp.2.weight": (32, 32),
        "res_blocks.1.adaLN_modulation.1.weight": (96, 32),
        "final_layer.linear.weight": (32, 32),
        "final_layer.adaLN_modulation.1.weight": (64, 32),
    }
    shapes = {name: tuple(value.shape) for name, value in head.state_dict().items()}
    for name, shape in expected.items():
        assert shapes[name] == shape
    assert not any("norm_final" in name for name in shapes)  # final LayerNorm has no affine parameters
    assert len(shapes) == 4 + 2 + 2 + 2 * 8 + 4


def _randomise(module, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return module


def test_head_matches_a_reference_of_mar_simple_mlp_adaln():
    """Forward pass against the math of mar.md §3 written out by hand."""
    head = _randomise(ImpactDiffHead(in_channels=4, model_channels=16, condition_channels=8, num_res_blocks=2))
    x, t, c = torch.randn(5, 4), torch.tensor([0, 3, 500, 999, 10]), torch.randn(5, 8)
    layer_norm = torch.nn.functional.layer_norm
    silu = torch.nn.functional.silu
    state = head.state_dict()

    def linear(name, value):
        return value @ state[f"{name}.weight"].T + state[f"{name}.bias"]

    frequencies = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(128) / 128)
    arguments = t[:, None].float() * frequencies[None]
    embedding = torch.cat([torch.cos(arguments), torch.sin(arguments)], dim=-1)  # cos first, then sin
    y = linear("time_embed.mlp.2", silu(linear("time_embed.mlp.0", embedding))) + linear("cond_embed", c)
    h = linear("input_proj", x)
    for i in range(2):
        shift, scale, gate = linear(f"res_blocks.{i}.adaLN_modulation.1", silu(y)).chunk(3, dim=-1)
        normed = layer_norm(h, (16,), state[f"res_blocks.{i}.in_ln.weight"], state[f"res_blocks.{i}.in_ln.bias"], 1e-6)
        inner = linear(f"res_blocks.{i}.mlp.2", silu(linear(f"res_blocks.{i}.mlp.0", normed * (1 + scale) + shift)))
        h = h + gate * inner
    shift, scale = linear("final_layer.adaLN_modulation.1", silu(y)).chunk(2, dim=-1)
    expected = linear("final_layer.linear", layer_norm(h, (16,), eps=1e-6) * (1 + scale) + shift)
    torch.testing.assert_close(head(x, t, c).sample, expected, rtol=1e-5, atol=1e-5)
    # A scalar timestep is broadcast to every token.
    torch.testing.assert_close(head(x, 7, c).sample, head(x, torch.full((5,), 7), c).sample, rtol=0, atol=1e-6)


def test_left_padding_values_do_not_change_the_output():
    """Padding may sit on either side of the text: only the key mask decides which tokens count."""
    model = small_transformer(pooled=False)
    tokens = torch.randn(2, model.num_tokens, 128)
    mask = random_mask(2, model.num_tokens, num_masked=6)
    text, attention_mask = torch.randn(2, 3, TEXT_DIM), torch.tensor([[0, 0, 1, 1, 1]] * 2)
    with torch.no_grad():
        outputs = [
            model(
                tokens, mask, encoder_hidden_states=torch.cat([pad, text], 1), encoder_attention_mask=attention_mask
            ).sample
            for pad in (torch.zeros(2, 2, TEXT_DIM), torch.randn(2, 2, TEXT_DIM) * 50)
        ]
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-5)
