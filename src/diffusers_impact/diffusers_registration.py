# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
Registers this package as a component library with diffusers' pipeline loader (imported by the pipeline module).

`save_pretrained` then writes "diffusers_impact" (not the private module path) into model_index.json, and
`DiffusionPipeline.download` accepts Hub repos whose model_index.json names it. diffusers resolves the loading methods
through the base classes found on the library module, hence `ModelMixin` and `SchedulerMixin` are importable from
this package too.
"""

from diffusers.pipelines.pipeline_loading_utils import LOADABLE_CLASSES

LOADABLE_CLASSES.setdefault(
    "diffusers_impact",
    {base: LOADABLE_CLASSES["diffusers"][base] for base in ("ModelMixin", "SchedulerMixin")},
)
