"""LoRA adapters on ImpactPipeline through diffusers' PEFT machinery (issue 18): on/off equality, save/load bit for bit,
several adapters with weights, fusing, the offline Hub-cache layout, and refusals (another base model, pickles)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers import load_example
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file, save_file

from diffusers_impact import ImpactPipeline
from diffusers_impact.loaders.lora_pipeline_impact import (
    BASE_MODEL_METADATA_KEY,
    DEFAULT_HEAD_LORA_TARGET_MODULES,
    DEFAULT_LORA_TARGET_MODULES,
    base_model_fingerprint,
)
from diffusers_impact.testing_utils import tiny_impact_pipeline


CALL = {"num_inference_steps": 3, "num_diffusion_steps": 4, "guidance_scale": 3.0}
WEIGHTS = "pytorch_lora_weights.safetensors"


def generate(pipeline, seed=0):
    return pipeline("a dog barking", generator=torch.Generator().manual_seed(seed), **CALL).audios


def add_random_adapter(pipeline, name, seed, component="transformer", target_modules=DEFAULT_LORA_TARGET_MODULES):
    """An adapter with random A and B (PEFT initialises B to zero, which would change nothing)."""
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=target_modules, init_lora_weights=False)
    model = getattr(pipeline, component)
    model.add_adapter(config, adapter_name=name)
    with torch.no_grad():
        for parameter_name, parameter in model.named_parameters():
            if f"lora_B.{name}" in parameter_name:
                parameter.normal_(std=0.5)
    return config


def add_random_head_adapter(pipeline, name, seed):
    return add_random_adapter(pipeline, name, seed, "diff_head", DEFAULT_HEAD_LORA_TARGET_MODULES)


def save_adapter(pipeline, name, config, folder, head_config=None):
    head_layers = get_peft_model_state_dict(pipeline.diff_head, adapter_name=name) if head_config else None
    ImpactPipeline.save_lora_weights(
        folder,
        transformer_lora_layers=get_peft_model_state_dict(pipeline.transformer, adapter_name=name),
        transformer_lora_adapter_metadata=config.to_dict(),
        base_model_fingerprint=base_model_fingerprint(pipeline.transformer),
        diff_head_lora_layers=head_layers,
        diff_head_lora_adapter_metadata=head_config.to_dict() if head_config else None,
    )
    return folder


@pytest.fixture
def lora_pipe():
    pipeline = tiny_impact_pipeline()
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_an_adapter_changes_the_output_and_disabling_or_unloading_it_gives_the_base_model_exactly(lora_pipe):
    base = generate(lora_pipe)
    add_random_adapter(lora_pipe, "a", seed=1)
    adapted = generate(lora_pipe)
    assert not np.allclose(adapted, base)
    lora_pipe.disable_lora()
    np.testing.assert_array_equal(generate(lora_pipe), base)
    lora_pipe.enable_lora()
    np.testing.assert_array_equal(generate(lora_pipe), adapted)
    lora_pipe.unload_lora_weights()
    np.testing.assert_array_equal(generate(lora_pipe), base)


def test_saved_adapters_load_back_bit_for_bit_with_their_base_fingerprint(lora_pipe, tmp_path):
    config = add_random_adapter(lora_pipe, "bells", seed=1)
    adapted = generate(lora_pipe)
    save_adapter(lora_pipe, "bells", config, tmp_path)
    assert (tmp_path / WEIGHTS).is_file() and len(list(tmp_path.iterdir())) == 1
    from safetensors import safe_open

    with safe_open(tmp_path / WEIGHTS, "pt") as handle:
        assert handle.metadata()[BASE_MODEL_METADATA_KEY] == base_model_fingerprint(lora_pipe.transformer)
    fresh = tiny_impact_pipeline()
    fresh.set_progress_bar_config(disable=True)
    fresh.load_lora_weights(tmp_path, adapter_name="bells")
    np.testing.assert_array_equal(generate(fresh), adapted)
    saved = load_file(tmp_path / WEIGHTS)
    assert all(key.startswith("transformer.") and "lora" in key for key in saved)


def test_several_adapters_mix_with_weights(lora_pipe, tmp_path):
    base = generate(lora_pipe)
    config_a = add_random_adapter(lora_pipe, "a", seed=1)
    config_b = add_random_adapter(lora_pipe, "b", seed=2)
    save_adapter(lora_pipe, "a", config_a, tmp_path / "a")
    save_adapter(lora_pipe, "b", config_b, tmp_path / "b")
    lora_pipe.unload_lora_weights()
    lora_pipe.load_lora_weights(tmp_path / "a", adapter_name="a")
    alone_a = generate(lora_pipe)
    lora_pipe.load_lora_weights(tmp_path / "b", adapter_name="b")
    lora_pipe.set_adapters(["a", "b"], [0.7, 0.3])
    mixed = generate(lora_pipe)
    assert not np.allclose(mixed, alone_a) and not np.allclose(mixed, base)
    lora_pipe.set_adapters(["a", "b"], [1.0, 0.0])
    np.testing.assert_allclose(generate(lora_pipe), alone_a, rtol=1e-5, atol=1e-6)
    lora_pipe.set_adapters(["a", "b"], [0.0, 0.0])
    np.testing.assert_allclose(generate(lora_pipe), base, rtol=1e-5, atol=1e-6)


def test_fusing_merges_the_adapter_and_unfusing_restores_the_base(lora_pipe):
    base = generate(lora_pipe)
    add_random_adapter(lora_pipe, "a", seed=1)
    adapted = generate(lora_pipe)
    fingerprint = base_model_fingerprint(lora_pipe.transformer)
    lora_pipe.fuse_lora(lora_scale=1.0)
    assert base_model_fingerprint(lora_pipe.transformer) == fingerprint  # fusing changes linear layers only
    np.testing.assert_allclose(generate(lora_pipe), adapted, rtol=1e-4, atol=1e-5)
    lora_pipe.unfuse_lora()
    lora_pipe.disable_lora()
    np.testing.assert_allclose(generate(lora_pipe), base, rtol=1e-4, atol=1e-5)
    lora_pipe.enable_lora()
    lora_pipe.fuse_lora()
    lora_pipe.unload_lora_weights()  # the adapter's layers go, its fused weights stay (diffusers' way to bake it in)
    assert not lora_pipe.get_list_adapters()
    np.testing.assert_allclose(generate(lora_pipe), adapted, rtol=1e-4, atol=1e-5)


def test_an_adapter_of_the_transformer_and_the_head_saves_loads_and_switches_as_one(lora_pipe, tmp_path):
    base = generate(lora_pipe)
    config = add_random_adapter(lora_pipe, "a", seed=1)
    transformer_only = generate(lora_pipe)
    head_config = add_random_head_adapter(lora_pipe, "a", seed=2)
    adapted = generate(lora_pipe)
    assert not np.allclose(adapted, transformer_only)  # the head's part changes the tokens sampled
    save_adapter(lora_pipe, "a", config, tmp_path, head_config)
    saved = load_file(tmp_path / WEIGHTS)
    assert {key.split(".")[0] for key in saved} == {"transformer", "diff_head"}

    fresh = tiny_impact_pipeline()
    fresh.set_progress_bar_config(disable=True)
    fresh.load_lora_weights(tmp_path)  # no name: one default name for both parts
    assert fresh.get_list_adapters() == {"transformer": ["default_0"], "diff_head": ["default_0"]}
    np.testing.assert_array_equal(generate(fresh), adapted)
    fresh.disable_lora()
    np.testing.assert_array_equal(generate(fresh), base)
    fresh.enable_lora()
    fresh.set_adapters(["default_0"], [0.0])
    np.testing.assert_allclose(generate(fresh), base, rtol=1e-5, atol=1e-6)
    fresh.set_adapters(["default_0"], [1.0])
    fresh.fuse_lora()
    np.testing.assert_allclose(generate(fresh), adapted, rtol=1e-4, atol=1e-5)
    fresh.unfuse_lora()  # W + BA − BA: the base weights up to rounding
    fresh.unload_lora_weights()
    assert not fresh.get_list_adapters()
    np.testing.assert_allclose(generate(fresh), base, rtol=1e-4, atol=1e-5)


def test_a_head_adapter_mixes_with_a_transformer_only_adapter(lora_pipe, tmp_path):
    config_a, head_config_a = add_random_adapter(lora_pipe, "a", seed=1), add_random_head_adapter(lora_pipe, "a", 2)
    config_b = add_random_adapter(lora_pipe, "b", seed=3)
    save_adapter(lora_pipe, "a", config_a, tmp_path / "a", head_config_a)
    save_adapter(lora_pipe, "b", config_b, tmp_path / "b")
    lora_pipe.unload_lora_weights()
    lora_pipe.load_lora_weights(tmp_path / "a", adapter_name="a")
    alone_a = generate(lora_pipe)
    lora_pipe.load_lora_weights(tmp_path / "b", adapter_name="b")
    lora_pipe.set_adapters(["a", "b"], [0.6, 0.4])
    assert not np.allclose(generate(lora_pipe), alone_a)
    lora_pipe.set_adapters(["a", "b"], [1.0, 0.0])
    np.testing.assert_allclose(generate(lora_pipe), alone_a, rtol=1e-5, atol=1e-6)


def test_a_head_adapter_is_refused_by_an_energy_head_pipeline(lora_pipe, tmp_path):
    config, head_config = add_random_adapter(lora_pipe, "a", seed=1), add_random_head_adapter(lora_pipe, "a", 2)
    save_adapter(lora_pipe, "a", config, tmp_path, head_config)
    energy = tiny_impact_pipeline(head="energy")
    with pytest.raises(ValueError, match="adapts a diffusion head, but this pipeline has a energy head"):
        energy.load_lora_weights(tmp_path)


def test_an_adapter_for_another_base_model_is_refused(lora_pipe, tmp_path):
    config = add_random_adapter(lora_pipe, "a", seed=1)
    save_adapter(lora_pipe, "a", config, tmp_path)
    other = tiny_impact_pipeline(seed=1)  # same architecture, other weights
    with pytest.raises(ValueError, match="trained on another base model"):
        other.load_lora_weights(tmp_path)
    assert not other.get_list_adapters()


def test_pickled_or_foreign_adapters_are_refused(lora_pipe, tmp_path):
    with pytest.raises(ValueError, match="safetensors only"):
        lora_pipe.load_lora_weights(tmp_path, weight_name="pytorch_lora_weights.bin")
    with pytest.raises(ValueError, match="safetensors only"):
        lora_pipe.load_lora_weights(tmp_path, use_safetensors=False)
    (tmp_path / "pytorch_lora_weights.bin").write_bytes(b"not a safetensors file")
    with pytest.raises(OSError):  # only a .bin: nothing is unpickled
        lora_pipe.load_lora_weights(tmp_path)
    save_file({"text_encoder.layer.lora_A.weight": torch.zeros(2, 2)}, tmp_path / WEIGHTS)
    with pytest.raises(ValueError, match=r"LoRA weights for \['text_encoder'\]"):
        lora_pipe.load_lora_weights(tmp_path)
    save_file({"transformer.proj.weight": torch.zeros(2, 2)}, tmp_path / WEIGHTS)
    with pytest.raises(ValueError, match="is not a LoRA adapter"):
        lora_pipe.load_lora_weights(tmp_path)


def test_an_adapter_loads_by_hub_id_from_the_offline_cache(lora_pipe, tmp_path):
    """The Hub cache layout an earlier online download leaves, read with HF_HUB_OFFLINE=1 in a fresh process."""
    from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache

    config = add_random_adapter(lora_pipe, "a", seed=1)
    expected = generate(lora_pipe)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_folder = tmp_path / "home" / "hub" / "models--someuser--impact-lora"
    snapshot = save_adapter(lora_pipe, "a", config, repo_folder / "snapshots" / commit)
    (repo_folder / "refs").mkdir()
    (repo_folder / "refs" / "main").write_text(commit)
    entries = {WEIGHTS: TreeCacheEntry(size=(snapshot / WEIGHTS).stat().st_size, blob_id="0" * 40)}
    write_tree_cache(str(repo_folder), commit, entries)
    np.save(tmp_path / "expected.npy", expected)
    script = f"""
        import numpy as np, torch
        from diffusers_impact.testing_utils import tiny_impact_pipeline
        pipe = tiny_impact_pipeline()
        pipe.set_progress_bar_config(disable=True)
        pipe.load_lora_weights("someuser/impact-lora", adapter_name="a")
        audio = pipe("a dog barking", generator=torch.Generator().manual_seed(0), **{CALL!r}).audios
        np.testing.assert_array_equal(audio, np.load({str(tmp_path / "expected.npy")!r}))
        print("OK")
    """
    env = dict(os.environ, HF_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_the_committed_robot_voice_adapter_belongs_to_the_default_model_and_changes_only_with_it():
    """The adapter in examples/default_model/lora/ loads into the embedded default model (its fingerprint matches)
    and changes what the trigger caption gives; unloaded, the model is the base again."""
    from pathlib import Path

    from diffusers_impact.pretrained import load_default_pipeline

    folder = Path(__file__).resolve().parent.parent / "examples" / "default_model" / "lora" / "robot_voice_adapter"
    pipe = load_default_pipeline()
    pipe.set_progress_bar_config(disable=True)
    call = {"generator": torch.Generator().manual_seed(0), "output_type": "latent"}
    base = pipe("a robot voice speaking", **call).audios
    pipe.load_lora_weights(folder)
    assert sorted(pipe.get_list_adapters()) == ["diff_head", "transformer"]
    call["generator"] = torch.Generator().manual_seed(0)
    assert not torch.allclose(pipe("a robot voice speaking", **call).audios, base)
    pipe.unload_lora_weights()
    call["generator"] = torch.Generator().manual_seed(0)
    torch.testing.assert_close(pipe("a robot voice speaking", **call).audios, base)


def test_the_committed_robot_voice_card_is_what_its_recipe_writes(tmp_path):
    """examples/default_model/lora/train_lora_demo.py writes the adapter's card from its arguments and results; the
    committed card is that card for the committed results.json (so `--install` gives the committed folder)."""
    import json

    from diffusers_impact.loaders import base_model_fingerprint
    from diffusers_impact.pretrained import load_default_pipeline

    recipe = load_example("train_lora_demo")
    results = json.loads((recipe.INSTALLED / "results.json").read_text())
    fingerprint = base_model_fingerprint(load_default_pipeline().transformer)
    recipe.write_adapter_card(tmp_path, recipe.parse_args(["--output_dir", str(tmp_path)]), results, fingerprint)
    card = (tmp_path / "README.md").read_text()
    assert card == (recipe.INSTALLED / "README.md").read_text()
    assert f"Base model fingerprint: `{fingerprint}`" in card
    before, after = (results[when]["trigger"]["correct"] for when in ("before", "after"))
    assert before == 0 and after >= 8  # issue 18: the base model never gives the new sound, the adapter ≥ 8/10
    assert f"| the trigger caption, seeds 0–9 | {before}/10 | {after}/10 |" in card and "/tmp" not in card
