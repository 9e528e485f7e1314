"""diffusers_impact: IMPACT text-to-audio generation (iterative mask-based parallel decoding) as a diffusers plugin."""

from diffusers.models.modeling_utils import ModelMixin
from diffusers.pipelines.pipeline_loading_utils import LOADABLE_CLASSES
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from .models import GriffinLimVocoder, ImpactDiffHead, ImpactDiffHeadOutput, ImpactTransformer, ImpactTransformerOutput
from .pipelines import ImpactPipeline
from .pretrained import DEFAULT_MODEL_PATH, load_default_pipeline
from .schedulers import (
    ImpactDiffHeadScheduler,
    ImpactDiffHeadSchedulerOutput,
    ImpactMaskScheduler,
    ImpactMaskSchedulerOutput,
)

__version__ = "0.1.0.dev0"

# Register this package as a component library with diffusers' pipeline loader. `save_pretrained` then writes
# "diffusers_impact" (not the private module path) into model_index.json, and `DiffusionPipeline.download` accepts
# Hub repos whose model_index.json names it. diffusers resolves the loading methods through the base classes found on
# the library module, hence `ModelMixin` and `SchedulerMixin` are importable from this package too.
LOADABLE_CLASSES.setdefault(
    "diffusers_impact",
    {base: LOADABLE_CLASSES["diffusers"][base] for base in ("ModelMixin", "SchedulerMixin")},
)

__all__ = [
    "DEFAULT_MODEL_PATH",
    "GriffinLimVocoder",
    "ImpactDiffHead",
    "ImpactDiffHeadOutput",
    "ImpactDiffHeadScheduler",
    "ImpactDiffHeadSchedulerOutput",
    "ImpactMaskScheduler",
    "ImpactMaskSchedulerOutput",
    "ImpactPipeline",
    "ImpactTransformer",
    "ImpactTransformerOutput",
    "ModelMixin",
    "SchedulerMixin",
    "load_default_pipeline",
]
