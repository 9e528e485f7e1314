# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
What training IMPACT needs besides the models: the objective (`losses`: MAR's masking and hybrid diffusion loss, paper
§3.1 Eq. 2) and the data (`data`: audio-caption datasets, pre-computed latents, batching). The training scripts in
`examples/training/` put them together with 🤗 Accelerate.
"""
