from .pipeline_impact import ImpactPipeline


__all__ = ["ImpactPipeline"]
