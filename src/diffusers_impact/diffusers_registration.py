# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
How this package plugs into diffusers' pipeline loader (imported by the pipeline module).

1. diffusers' `LOADABLE_CLASSES` learns the library name "diffusers_impact", so that `save_pretrained` writes it (not
   a private module path) into model_index.json, and `DiffusionPipeline.download` accepts a Hub repo saved before
   the loader files below existed. diffusers resolves the loading methods through the base classes found on the
   library module, hence `ModelMixin` and `SchedulerMixin` are importable from this package too. The patch touches
   a private table of diffusers, so it is made for the diffusers versions `setup.py` allows and refuses others.
2. Loader files for generic loading: `ImpactPipeline.save_pretrained` names the pipeline class as diffusers' remote
   code does (`"_class_name": ["diffusers_impact", "ImpactPipeline"]`) and writes `LOADER_CODE` as
   `diffusers_impact.py` into the folder and into each folder of a component of this package. Then
   `DiffusionPipeline.from_pretrained(folder_or_repo, trust_remote_code=True)` loads it in a process that never
   imported this package. The file defines nothing: it imports the installed package.
"""

import json
import os

import diffusers
from diffusers.pipelines.pipeline_loading_utils import LOADABLE_CLASSES
from packaging import version


LIBRARY_NAME = "diffusers_impact"
LOADER_FILE = f"{LIBRARY_NAME}.py"
_LOADER_HEADER = """\
# Written by diffusers_impact's `save_pretrained`. It defines nothing: it lets
# `DiffusionPipeline.from_pretrained(..., trust_remote_code=True)` find the classes that model_index.json names in the
# installed package (`pip install diffusers_impact`). `ImpactPipeline.from_pretrained` accepts this file as it is and
# refuses a folder where it differs.
"""
LOADER_CODE = (
    _LOADER_HEADER
    + """\
from diffusers_impact import (
    GriffinLimVocoder,
    ImpactDiffHead,
    ImpactDiffHeadScheduler,
    ImpactEnergyHead,
    ImpactMaskScheduler,
    ImpactPipeline,
    ImpactTransformer,
)
"""
)
# What earlier versions wrote (before `ImpactEnergyHead`): folders saved then, the embedded default model's among them,
# still load. Their classes are all in the current package, so these files import nothing else.
ACCEPTED_LOADER_CODES = (
    LOADER_CODE,
    LOADER_CODE.replace("    ImpactEnergyHead,\n", ""),
)

_DIFFUSERS_VERSION = version.parse(diffusers.__version__)
if not (version.parse("0.42.1") <= _DIFFUSERS_VERSION and _DIFFUSERS_VERSION.release[:2] == (0, 42)):
    raise ImportError(
        f"diffusers_impact registers its classes with the pipeline loader of diffusers 0.42 (>= 0.42.1); this "
        f"environment has diffusers {diffusers.__version__}. Install a supported version: "
        f"pip install 'diffusers>=0.42.1,<0.43'."
    )

LOADABLE_CLASSES.setdefault(
    LIBRARY_NAME,
    {base: LOADABLE_CLASSES["diffusers"][base] for base in ("ModelMixin", "SchedulerMixin")},
)


def loader_files(model_index: dict) -> list[str]:
    """The loader files (paths relative to the pipeline folder) that a model_index.json written by
    `ImpactPipeline.save_pretrained` comes with; none for a folder saved before they existed."""
    if not isinstance(model_index.get("_class_name"), list):
        return []
    components = sorted(
        name
        for name, entry in model_index.items()
        if not name.startswith("_") and isinstance(entry, list) and entry and entry[0] == LIBRARY_NAME
    )
    return [LOADER_FILE] + [f"{name}/{LOADER_FILE}" for name in components]


def write_loader_files(folder: str | os.PathLike) -> None:
    """Make a folder written by `DiffusionPipeline.save_pretrained` loadable by the generic
    `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` (see the module docstring)."""
    index_path = os.path.join(folder, "model_index.json")
    with open(index_path, encoding="utf-8") as file:
        model_index = json.load(file)
    if not isinstance(model_index["_class_name"], list):
        model_index["_class_name"] = [LIBRARY_NAME, model_index["_class_name"]]
    with open(index_path, "w", encoding="utf-8") as file:
        file.write(json.dumps(model_index, indent=2, sort_keys=True) + "\n")  # as diffusers writes it
    for relative_path in loader_files(model_index):
        with open(os.path.join(folder, relative_path), "w", encoding="utf-8") as file:
            file.write(LOADER_CODE)
