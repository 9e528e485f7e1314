"""Loading never runs code from a file: pickle payloads in place of pipeline weights or a MAR checkpoint are refused.

(The evaluation networks' checkpoints and the training checkpoints have their own tests in test_evaluation_models.py
and test_training.py.)
"""

import argparse
import pickle

import pytest
import torch
from helpers import Payload

from diffusers_impact import ImpactPipeline
from diffusers_impact.convert_mar import load_mar_checkpoint
from diffusers_impact.testing_utils import tiny_impact_pipeline


def test_the_payload_runs_when_unpickled_without_restrictions(tmp_path):
    """The payload is real: `weights_only=False` would run it."""
    marker = tmp_path / "code-ran"
    torch.save(Payload(marker), tmp_path / "payload.pt")
    torch.load(tmp_path / "payload.pt", weights_only=False)
    assert marker.is_file()


@pytest.mark.parametrize("component", ["transformer", "diff_head", "vae"])
def test_a_pickled_weights_file_in_a_pipeline_folder_is_refused(component, tmp_path):
    folder, marker = tmp_path / "pipeline", tmp_path / "code-ran"
    tiny_impact_pipeline().save_pretrained(folder)
    (folder / component / "diffusion_pytorch_model.safetensors").unlink()
    torch.save({"weight": Payload(marker)}, folder / component / "diffusion_pytorch_model.bin")
    with pytest.raises((pickle.UnpicklingError, OSError, RuntimeError, ValueError)):
        ImpactPipeline.from_pretrained(folder)
    assert not marker.exists()


def test_a_hostile_mar_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"model": {"weight": torch.ones(1)}, "args": Payload(marker)}, tmp_path / "mar.pth")
    with pytest.raises(pickle.UnpicklingError):
        load_mar_checkpoint(str(tmp_path / "mar.pth"))
    assert not marker.exists()
    # The Namespace that MAR's real checkpoints hold is allowed for that load only, not for every later one.
    assert argparse.Namespace not in torch.serialization.get_safe_globals()
