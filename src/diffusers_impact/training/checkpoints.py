# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
Training checkpoints as safetensors and JSON files only: resuming reads no pickle, so a checkpoint cannot run code.

A checkpoint folder `checkpoint-<step>` holds `checkpoint_files(...)`: the trained models' weights, the EMA weights and
AdamW's moments as safetensors; the counters and the optimizer, learning-rate scheduler, grad scaler and EMA settings
as JSON. It is written into a temporary folder that is renamed when complete, so a crash during a save never harms
the last good checkpoint; `read_resume_checkpoint(..., "latest")` skips damaged ones, naming the file.
"""

import json
import os
import re
import shutil
from collections import defaultdict
from pathlib import Path

import torch
from diffusers.training_utils import EMAModel
from diffusers.utils import logging
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


logger = logging.get_logger(__name__)
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
# The models a diffusion-head run trains (an energy-head run: transformer, energy_head and, distilling, projector).
DIFFUSION_MODELS = ("transformer", "diff_head")


def checkpoint_files(model_names=DIFFUSION_MODELS) -> tuple[str, ...]:
    """A checkpoint's files for the trained models `model_names`: tensors as safetensors, everything else as JSON
    (see `checkpoint_contents`)."""
    return (
        "training_state.json",
        *(f"{name}.safetensors" for name in model_names),
        "ema.safetensors",
        "optimizer.safetensors",
    )


CHECKPOINT_FILES = checkpoint_files()


class DamagedCheckpointError(RuntimeError):
    """A checkpoint file is missing or cannot be read."""


def checkpoints_newest_first(output_dir: Path) -> list[Path]:
    steps = [int(m.group(1)) for p in output_dir.glob("checkpoint-*") if (m := CHECKPOINT_PATTERN.match(p.name))]
    return [output_dir / f"checkpoint-{step}" for step in sorted(steps, reverse=True)]


def named_trained_parameters(models: dict[str, torch.nn.Module]) -> dict[str, torch.nn.Parameter]:
    """The trained parameters (those that require gradients: a LoRA adapter's only, in a LoRA run) in the EMA's order,
    named `<model>.<parameter>`."""
    return {
        f"{key}.{name}": value
        for key, model in models.items()
        for name, value in model.named_parameters()
        if value.requires_grad
    }


def checkpoint_contents(state: dict, models: dict, optimizer, lr_scheduler, ema: EMAModel, scaler) -> dict[str, dict]:
    """The files of a checkpoint (`checkpoint_files(models)`): their tensors (`.safetensors`) or JSON values (`.json`)."""
    optimizer_state, ema_state = optimizer.state_dict(), ema.state_dict()
    adamw_tensors = optimizer_state["state"]  # parameter index → its step count and moments
    return {
        "training_state.json": {
            **state,
            "optimizer_param_groups": optimizer_state["param_groups"],
            "lr_scheduler": lr_scheduler.state_dict(),
            "grad_scaler": None if scaler is None else scaler.state_dict(),
            "ema": {key: value for key, value in ema_state.items() if key != "shadow_params"},
        },
        **{f"{key}.safetensors": model.state_dict() for key, model in models.items()},
        "ema.safetensors": dict(zip(named_trained_parameters(models), ema_state["shadow_params"])),
        "optimizer.safetensors": {
            f"{index}.{name}": tensor for index, tensors in adamw_tensors.items() for name, tensor in tensors.items()
        },
    }


def save_checkpoint(accelerator, output_dir: Path, contents: dict, step: int, total_limit: int | None) -> Path:
    """
    Writes `checkpoint_contents` into a temporary folder renamed into place, so a crash mid-save never harms the last
    good checkpoint; then deletes the oldest checkpoints beyond `total_limit`.
    """
    final, temporary = output_dir / f"checkpoint-{step}", output_dir / f".checkpoint-{step}.tmp"
    if accelerator.is_main_process:
        if temporary.exists():
            shutil.rmtree(temporary)
        temporary.mkdir()
        for name, content in contents.items():
            if name.endswith(".json"):
                (temporary / name).write_text(json.dumps(content))
            else:
                save_file(content, temporary / name)
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
        if total_limit is not None:
            for old in checkpoints_newest_first(output_dir)[total_limit:]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def read_checkpoint(folder: Path, model_names=DIFFUSION_MODELS) -> dict[str, dict]:
    """
    Every file of a checkpoint of the models `model_names`, read but not applied; `DamagedCheckpointError` names a
    missing or unreadable one (a checkpoint of other models lacks theirs). Only safetensors and JSON are read, so a
    hostile checkpoint cannot run code (nothing is unpickled).
    """
    if not folder.is_dir():
        raise DamagedCheckpointError(f"{folder} is not a folder")
    contents = {}
    for name in checkpoint_files(model_names):
        path = folder / name
        if not path.is_file():
            raise DamagedCheckpointError(f"{path} is missing")
        try:
            contents[name] = json.loads(path.read_text()) if name.endswith(".json") else load_file(path)
        except (OSError, ValueError, SafetensorError) as error:  # ValueError: bad JSON or UTF-8
            raise DamagedCheckpointError(f"{path} cannot be read ({type(error).__name__}: {error})") from error
    return contents


def read_resume_checkpoint(
    output_dir: Path, resume: str, model_names=DIFFUSION_MODELS
) -> tuple[Path, dict[str, dict]]:
    """The checkpoint `--resume_from_checkpoint` names and its files; `latest` skips damaged ones, saying why."""
    if resume != "latest":
        try:
            return Path(resume), read_checkpoint(Path(resume), model_names)
        except DamagedCheckpointError as error:
            raise DamagedCheckpointError(
                f"--resume_from_checkpoint {resume}: {error}. Resume from another checkpoint ('latest' resumes from "
                "the newest intact one)."
            ) from error
    for checkpoint in checkpoints_newest_first(output_dir):
        try:
            return checkpoint, read_checkpoint(checkpoint, model_names)
        except DamagedCheckpointError as error:
            logger.warning(f"Skipping the damaged {checkpoint}: {error}.")
    raise FileNotFoundError(
        f"--resume_from_checkpoint latest: no intact checkpoint-* folder in {output_dir}. Train without "
        "--resume_from_checkpoint to start afresh."
    )


def restore_checkpoint(contents: dict, models: dict, optimizer, lr_scheduler, ema: EMAModel, scaler) -> dict:
    """Loads `checkpoint_contents` back; returns the counters (`global_step`, `batch_counter`)."""
    training_state = contents["training_state.json"]
    for key, model in models.items():
        model.load_state_dict(contents[f"{key}.safetensors"])
    shadow_params = [contents["ema.safetensors"][name] for name in named_trained_parameters(models)]
    ema.load_state_dict({**training_state["ema"], "shadow_params": shadow_params})
    adamw_tensors = defaultdict(dict)
    for key, tensor in contents["optimizer.safetensors"].items():
        index, name = key.split(".", 1)
        adamw_tensors[int(index)][name] = tensor
    optimizer.load_state_dict({"state": dict(adamw_tensors), "param_groups": training_state["optimizer_param_groups"]})
    lr_scheduler.load_state_dict(training_state["lr_scheduler"])
    if scaler is not None:
        scaler.load_state_dict(training_state["grad_scaler"])
    return {key: training_state[key] for key in ("global_step", "batch_counter")}
