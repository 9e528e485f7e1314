# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
The evaluation networks of the paper's objective metrics (§4.3, App. F) and a folder-to-folder evaluation.

PANNs Cnn14 (FD, KL, IS) and VGGish (FAD) as audioldm_eval runs them, the CLAP score with 🤗 transformers' CLAP, and
[`evaluate_audio_folders`], which returns Table 1's columns. The metric math is in [`diffusers_impact.evaluation`].
"""

from .checkpoints import CLAP_MODEL_ID, PANNS_CNN14_16K_URL, VGGISH_URL, load_checkpoint
from .clap import ClapScorer
from .evaluator import (
    AudioEvaluator,
    evaluate_audio_folders,
    list_audio_files,
    load_evaluation_audio,
)
from .panns import Cnn14, Cnn14Output, PannsLogMel, PannsSpectrogram
from .vggish import VGGish, vggish_examples, vggish_log_mel, vggish_mel_filterbank


__all__ = [
    "CLAP_MODEL_ID",
    "PANNS_CNN14_16K_URL",
    "VGGISH_URL",
    "AudioEvaluator",
    "ClapScorer",
    "Cnn14",
    "Cnn14Output",
    "PannsLogMel",
    "PannsSpectrogram",
    "VGGish",
    "evaluate_audio_folders",
    "list_audio_files",
    "load_checkpoint",
    "load_evaluation_audio",
    "vggish_examples",
    "vggish_log_mel",
    "vggish_mel_filterbank",
]
