from .scheduling_impact_diff_head import ImpactDiffHeadScheduler, ImpactDiffHeadSchedulerOutput
from .scheduling_impact_mask import ImpactMaskScheduler, ImpactMaskSchedulerOutput

__all__ = ["ImpactDiffHeadScheduler", "ImpactDiffHeadSchedulerOutput", "ImpactMaskScheduler", "ImpactMaskSchedulerOutput"]
