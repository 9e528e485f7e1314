"""Reference configurations: the paper's IMPACT sizes and the public AudioLDM VAE / vocoder architectures.

The AudioLDM configs are those of `cvssp/audioldm-s-full-v2` (vae/config.json, vocoder/config.json); they let the
real-size components be built with random weights where the checkpoints cannot be downloaded.
"""

# Paper §4.2 / Table 1. With Flan-T5-large (1024-d) + CLAP (512-d) inputs and the default ImpactDiffHead
# (depth 3, width 1024) the whole model counts 193M (base) and 427M (large) parameters.
IMPACT_TRANSFORMER_CONFIGS = {
    "base": {"hidden_size": 768, "num_encoder_layers": 12, "num_decoder_layers": 12, "num_attention_heads": 12},
    "large": {"hidden_size": 1024, "num_encoder_layers": 16, "num_decoder_layers": 16, "num_attention_heads": 16},
}

AUDIOLDM_VAE_CONFIG = {
    "in_channels": 1,
    "out_channels": 1,
    "latent_channels": 8,
    "block_out_channels": [128, 256, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "sample_size": 512,
    "scaling_factor": 0.9392935633659363,
}

AUDIOLDM_VOCODER_CONFIG = {
    "model_in_dim": 64,
    "sampling_rate": 16000,
    "upsample_initial_channel": 1024,
    "upsample_rates": [5, 4, 2, 2, 2],
    "upsample_kernel_sizes": [16, 16, 8, 4, 4],
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "normalize_before": False,
    "leaky_relu_slope": 0.1,
    "initializer_range": 0.01,
}

# `ImpactEnergyHead` sizes for the base and large transformers. AudioDEAR's body (and so its head size) is not public;
# these are EAR's B and L heads (depth × width 6 × 1024 and 8 × 1280, 64 noise channels; arXiv 2505.07812), read by
# IMPACT's hidden vectors (768 / 1024) and writing 128-value AudioLDM tokens. Base: 34.6M parameters.
IMPACT_ENERGY_HEAD_CONFIGS = {
    "base": {
        "out_channels": 128,
        "model_channels": 1024,
        "condition_channels": 768,
        "noise_channels": 64,
        "num_res_blocks": 6,
    },
    "large": {
        "out_channels": 128,
        "model_channels": 1280,
        "condition_channels": 1024,
        "noise_channels": 64,
        "num_res_blocks": 8,
    },
}
