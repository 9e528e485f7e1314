from .lora_pipeline_impact import ImpactLoraLoaderMixin, base_model_fingerprint


__all__ = ["ImpactLoraLoaderMixin", "base_model_fingerprint"]
