"""diffusers_impact: IMPACT text-to-audio generation (iterative mask-based parallel decoding) as a diffusers plugin."""

import importlib
from typing import TYPE_CHECKING


__version__ = "0.1.0.dev0"

# Public names and the modules that define them, imported on first use (PEP 562). Importing diffusers takes seconds;
# this keeps `import diffusers_impact.cli` (and so `impact-generate --help` and its argument errors) fast. diffusers
# does the same with its `_LazyModule`, which itself lives behind that slow import.
_EXPORTS = {
    "GriffinLimVocoder": ".models",
    "ImpactDiffHead": ".models",
    "ImpactDiffHeadOutput": ".models",
    "ImpactEnergyHead": ".models",
    "ImpactEnergyHeadOutput": ".models",
    "ImpactTransformer": ".models",
    "ImpactTransformerOutput": ".models",
    "ImpactPipeline": ".pipelines",
    "DEFAULT_MODEL_PATH": ".pretrained",
    "load_default_pipeline": ".pretrained",
    "ImpactDiffHeadScheduler": ".schedulers",
    "ImpactDiffHeadSchedulerOutput": ".schedulers",
    "ImpactMaskScheduler": ".schedulers",
    "ImpactMaskSchedulerOutput": ".schedulers",
    # diffusers' loader looks the component base classes up on the library module (see `diffusers_registration`).
    "ModelMixin": "diffusers.models.modeling_utils",
    "SchedulerMixin": "diffusers.schedulers.scheduling_utils",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from diffusers.models.modeling_utils import ModelMixin
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    from .models import (
        GriffinLimVocoder,
        ImpactDiffHead,
        ImpactDiffHeadOutput,
        ImpactEnergyHead,
        ImpactEnergyHeadOutput,
        ImpactTransformer,
        ImpactTransformerOutput,
    )
    from .pipelines import ImpactPipeline
    from .pretrained import DEFAULT_MODEL_PATH, load_default_pipeline
    from .schedulers import (
        ImpactDiffHeadScheduler,
        ImpactDiffHeadSchedulerOutput,
        ImpactMaskScheduler,
        ImpactMaskSchedulerOutput,
    )
