from .diff_head_impact import ImpactDiffHead, ImpactDiffHeadOutput
from .energy_head_impact import ImpactEnergyHead, ImpactEnergyHeadOutput
from .transformer_impact import ImpactTransformer, ImpactTransformerOutput
from .vocoder_griffin_lim import GriffinLimVocoder, load_vocoder, vocoder_front_end


__all__ = [
    "GriffinLimVocoder",
    "ImpactDiffHead",
    "ImpactDiffHeadOutput",
    "ImpactEnergyHead",
    "ImpactEnergyHeadOutput",
    "ImpactTransformer",
    "ImpactTransformerOutput",
    "load_vocoder",
    "vocoder_front_end",
]
