"""Loading and sharing: generic `DiffusionPipeline.from_pretrained` (diffusers' remote-code mechanism), the Hub code
path from an offline cache, the loader files' check, the model card and `push_to_hub`."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from diffusers_impact import ImpactPipeline
from diffusers_impact.diffusers_registration import ACCEPTED_LOADER_CODES, LOADER_CODE, LOADER_FILE
from diffusers_impact.pipelines import pipeline_impact
from diffusers_impact.testing_utils import tiny_impact_pipeline


CALL = {"num_inference_steps": 3, "num_diffusion_steps": 5, "guidance_scale": 3.0}
REPO_ID = "someuser/impact-tiny"


def generate(pipeline):
    return pipeline("a dog barking", generator=torch.Generator().manual_seed(0), **CALL).audios


def offline_hub_cache(pipeline, home):
    """The Hub cache an earlier online `from_pretrained(REPO_ID)` leaves: snapshot, ref and cached file listing."""
    from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_folder = home / "hub" / f"models--{REPO_ID.replace('/', '--')}"
    snapshot = repo_folder / "snapshots" / commit
    pipeline.save_pretrained(snapshot)
    (repo_folder / "refs").mkdir()
    (repo_folder / "refs" / "main").write_text(commit)
    files = [path for path in snapshot.rglob("*") if path.is_file()]
    entries = {
        str(path.relative_to(snapshot)): TreeCacheEntry(size=path.stat().st_size, blob_id="0" * 40) for path in files
    }
    write_tree_cache(str(repo_folder), commit, entries)
    return snapshot


def run_fresh_process(script: str, tmp_path, offline: bool = False) -> subprocess.CompletedProcess:
    """Run `script` in a new interpreter with its own Hugging Face home (where diffusers copies remote code)."""
    env = dict(os.environ, HF_HOME=str(tmp_path / "home"))
    env.pop("HF_HUB_CACHE", None)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=300
    )


GENERIC_LOAD = """
    import sys
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline

    try:
        DiffusionPipeline.from_pretrained({source!r})
    except ValueError as error:
        assert "trust_remote_code=True" in str(error), error
    else:
        raise AssertionError("loaded custom code without trust_remote_code")
    assert "diffusers_impact" not in sys.modules, "importing diffusers_impact is the remote code's job"

    pipe = DiffusionPipeline.from_pretrained({source!r}, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    audio = pipe("a dog barking", generator=torch.Generator().manual_seed(0), **{call!r}).audios
    np.testing.assert_allclose(audio, np.load({expected!r}), rtol=1e-4, atol=1e-5)
    print("LOADED", type(pipe).__name__, type(pipe.transformer).__name__, type(pipe.scheduler).__name__)
"""


def test_generic_diffusion_pipeline_loads_a_saved_folder_in_a_fresh_process(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "pipe")
    np.save(tmp_path / "expected.npy", generate(pipe))
    script = GENERIC_LOAD.format(source=str(tmp_path / "pipe"), call=CALL, expected=str(tmp_path / "expected.npy"))
    result = run_fresh_process(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOADED ImpactPipeline ImpactTransformer ImpactMaskScheduler" in result.stdout


def test_generic_diffusion_pipeline_loads_a_hub_repo_from_the_offline_cache(pipe, tmp_path):
    """By its cached snapshot: given a repo id, diffusers 0.42 asks the Hub for the commit of any repo with remote
    code, even offline (huggingface/diffusers#7946); online, the repo id works as is."""
    offline_hub_cache(pipe, tmp_path / "home")
    np.save(tmp_path / "expected.npy", generate(pipe))
    script = GENERIC_LOAD.format(source="SNAPSHOT", call=CALL, expected=str(tmp_path / "expected.npy"))
    script = script.replace("'SNAPSHOT'", f"snapshot_download({REPO_ID!r})").replace(
        "import torch\n", "import torch\n    from huggingface_hub import snapshot_download\n"
    )
    result = run_fresh_process(script, tmp_path, offline=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOADED ImpactPipeline ImpactTransformer ImpactMaskScheduler" in result.stdout


def test_impact_pipeline_loads_a_hub_repo_from_the_offline_cache_without_trust_remote_code(pipe, tmp_path):
    offline_hub_cache(pipe, tmp_path / "home")
    np.save(tmp_path / "expected.npy", generate(pipe))
    script = f"""
        import numpy as np
        import torch
        from diffusers_impact import ImpactPipeline
        pipe = ImpactPipeline.from_pretrained({REPO_ID!r})
        pipe.set_progress_bar_config(disable=True)
        audio = pipe("a dog barking", generator=torch.Generator().manual_seed(0), **{CALL!r}).audios
        np.testing.assert_allclose(audio, np.load({str(tmp_path / "expected.npy")!r}), rtol=1e-4, atol=1e-5)
        print("LOADED", type(pipe.transformer).__name__)
    """
    result = run_fresh_process(script, tmp_path, offline=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOADED ImpactTransformer" in result.stdout


def test_save_pretrained_writes_the_loader_files_and_names_the_class_as_remote_code(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    model_index = json.loads((tmp_path / "model_index.json").read_text())
    assert model_index["_class_name"] == ["diffusers_impact", "ImpactPipeline"]
    assert model_index["transformer"] == ["diffusers_impact", "ImpactTransformer"]
    ours = {"", "transformer", "diff_head", "scheduler", "head_scheduler"}
    assert {path.parent.name if path.parent != tmp_path else "" for path in tmp_path.rglob(LOADER_FILE)} == ours
    assert all(path.read_text() == LOADER_CODE for path in tmp_path.rglob(LOADER_FILE))
    assert not (tmp_path / "vae" / LOADER_FILE).exists()  # a diffusers class: nothing to import from us


@pytest.mark.parametrize("tampered", [LOADER_FILE, f"transformer/{LOADER_FILE}"])
def test_a_changed_loader_file_is_refused_without_running_it(pipe, tmp_path, tampered):
    pipe.save_pretrained(tmp_path)
    marker = tmp_path / "ran"
    (tmp_path / tampered).write_text(f"open({str(marker)!r}, 'w').close()\n" + LOADER_CODE)
    with pytest.raises(ValueError, match=rf"{tampered}.*trust_remote_code=True"):
        ImpactPipeline.from_pretrained(tmp_path)
    assert not marker.exists()


def test_a_folder_saved_before_the_loader_files_still_loads(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    for path in tmp_path.rglob(LOADER_FILE):
        path.unlink()
    model_index = json.loads((tmp_path / "model_index.json").read_text())
    model_index["_class_name"] = "ImpactPipeline"
    (tmp_path / "model_index.json").write_text(json.dumps(model_index))
    loaded = ImpactPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(generate(loaded), generate(pipe), rtol=1e-4, atol=1e-5)


def test_generic_diffusion_pipeline_loads_an_energy_pipeline_in_a_fresh_process(tmp_path):
    energy_pipe = tiny_impact_pipeline(head="energy")
    energy_pipe.set_progress_bar_config(disable=True)
    offline_hub_cache(energy_pipe, tmp_path / "home")
    call = {"num_inference_steps": 3, "guidance_scale": 3.0}
    expected = energy_pipe("a dog barking", generator=torch.Generator().manual_seed(0), **call).audios
    np.save(tmp_path / "expected.npy", expected)
    script = GENERIC_LOAD.format(source="SNAPSHOT", call=call, expected=str(tmp_path / "expected.npy"))
    script = script.replace("'SNAPSHOT'", f"snapshot_download({REPO_ID!r})").replace(
        "import torch\n", "import torch\n    from huggingface_hub import snapshot_download\n"
    )
    script += "    print('HEAD', type(pipe.energy_head).__name__)\n"
    result = run_fresh_process(script, tmp_path, offline=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "HEAD ImpactEnergyHead" in result.stdout


def test_loader_files_written_before_the_energy_head_are_still_accepted(pipe, tmp_path):
    previous = ACCEPTED_LOADER_CODES[1]
    assert "ImpactEnergyHead" not in previous and previous != LOADER_CODE
    pipe.save_pretrained(tmp_path / "old")
    for path in (tmp_path / "old").rglob(LOADER_FILE):
        path.write_text(previous)
    loaded = ImpactPipeline.from_pretrained(tmp_path / "old")
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(generate(loaded), generate(pipe))


def test_an_unsupported_diffusers_version_is_a_clear_import_error(tmp_path):
    script = """
        import diffusers
        diffusers.__version__ = "0.43.0"
        try:
            import diffusers_impact.diffusers_registration
        except ImportError as error:
            print("REFUSED", error)
    """
    result = run_fresh_process(script, tmp_path)
    assert "REFUSED" in result.stdout and "diffusers 0.43.0" in result.stdout
    assert "pip install 'diffusers>=0.42.1,<0.43'" in result.stdout


def test_model_card_uses_diffusers_metadata_and_the_models_settings(pipe):
    pipe.register_to_config(recommended_call_settings={"num_inference_steps": 8, "num_diffusion_steps": [50, 5]})
    card = pipe.create_model_card(REPO_ID, license="apache-2.0", evaluation="| a | b |")
    assert card.data.library_name == "diffusers" and card.data.pipeline_tag == "text-to-audio"
    assert card.data.license == "apache-2.0" and "text-to-audio" in card.data.tags
    assert f'ImpactPipeline.from_pretrained("{REPO_ID}")' in card.text
    assert f'DiffusionPipeline.from_pretrained("{REPO_ID}",\ntrust_remote_code=True)' in card.text
    assert "`num_inference_steps=8`, `num_diffusion_steps=[50, 5]`, `guidance_scale=5.0`" in card.text
    assert "| `transformer` | `ImpactTransformer` |" in card.text and "## Evaluation\n\n| a | b |" in card.text
    assert "## Evaluation" not in pipe.create_model_card(REPO_ID).text


def test_push_to_hub_uploads_the_pipeline_with_our_model_card(pipe, monkeypatch, tmp_path):
    from huggingface_hub.errors import EntryNotFoundError

    uploaded = {}

    class Repo:
        repo_id = REPO_ID

    def fake_upload(repo_id, folder_path, **kwargs):
        shutil.copytree(folder_path, tmp_path / "uploaded")
        uploaded.update(repo_id=repo_id, **kwargs)
        return "commit-url"

    def no_card(*args, **kwargs):
        raise EntryNotFoundError("no README.md on the Hub yet")

    monkeypatch.setattr(pipeline_impact, "create_repo", lambda repo_id, **kwargs: Repo())
    monkeypatch.setattr(pipeline_impact.ModelCard, "load", no_card)
    monkeypatch.setattr(pipeline_impact, "upload_folder", fake_upload)
    assert pipe.push_to_hub("impact-tiny", commit_message="tiny") == "commit-url"
    assert uploaded["repo_id"] == REPO_ID and uploaded["commit_message"] == "tiny"
    card = (tmp_path / "uploaded" / "README.md").read_text()
    assert "pipeline_tag: text-to-audio" in card and "library_name: diffusers" in card
    assert f'ImpactPipeline.from_pretrained("{REPO_ID}")' in card
    assert (tmp_path / "uploaded" / LOADER_FILE).read_text() == LOADER_CODE
    loaded = ImpactPipeline.from_pretrained(tmp_path / "uploaded")
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(generate(loaded), generate(pipe), rtol=1e-4, atol=1e-5)
