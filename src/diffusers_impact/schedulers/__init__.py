from .scheduling_impact_diff_head import ImpactDiffHeadScheduler, ImpactDiffHeadSchedulerOutput
from .scheduling_impact_mask import ImpactMaskScheduler, ImpactMaskSchedulerOutput, mask_from_orders, random_orders


__all__ = [
    "ImpactDiffHeadScheduler",
    "ImpactDiffHeadSchedulerOutput",
    "ImpactMaskScheduler",
    "ImpactMaskSchedulerOutput",
    "mask_from_orders",
    "random_orders",
]
