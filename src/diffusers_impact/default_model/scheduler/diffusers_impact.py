# Written by diffusers_impact's `save_pretrained`. It defines nothing: it lets
# `DiffusionPipeline.from_pretrained(..., trust_remote_code=True)` find the classes that model_index.json names in the
# installed package (`pip install diffusers_impact`). `ImpactPipeline.from_pretrained` accepts this file as it is and
# refuses a folder where it differs.
from diffusers_impact import (
    GriffinLimVocoder,
    ImpactDiffHead,
    ImpactDiffHeadScheduler,
    ImpactEnergyHead,
    ImpactMaskScheduler,
    ImpactPipeline,
    ImpactTransformer,
)
