from .diff_head_impact import ImpactDiffHead, ImpactDiffHeadOutput
from .transformer_impact import ImpactTransformer, ImpactTransformerOutput

__all__ = ["ImpactDiffHead", "ImpactDiffHeadOutput", "ImpactTransformer", "ImpactTransformerOutput"]
