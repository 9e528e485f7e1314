# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
The paper's objective metrics (§4.3, App. F): their math (`metrics`: FD / FAD, KL, IS, as audioldm_eval computes them),
the networks that give the features (PANNs Cnn14 for FD, KL and IS; VGGish for FAD; 🤗 transformers' CLAP for the
CLAP score) and [`evaluate_audio_folders`], which returns Table 1's columns for a folder of generated clips.
"""

from .checkpoints import CLAP_MODEL_ID, PANNS_CNN14_16K_URL, VGGISH_URL, load_checkpoint
from .clap import ClapScorer
from .evaluator import (
    AudioEvaluator,
    evaluate_audio_folders,
    list_audio_files,
    load_evaluation_audio,
)
from .metrics import frechet_distance, frechet_distance_from_features, inception_score, kl_divergence
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
    "frechet_distance",
    "frechet_distance_from_features",
    "inception_score",
    "kl_divergence",
    "list_audio_files",
    "load_checkpoint",
    "load_evaluation_audio",
    "vggish_examples",
    "vggish_log_mel",
    "vggish_mel_filterbank",
]
