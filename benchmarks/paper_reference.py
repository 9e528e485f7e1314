# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Latencies reported in the IMPACT paper, for reference lines in the benchmark plots (no torch import here)."""

PAPER_TABLE_8_SOURCE = (
    "Huang et al., IMPACT (ICML 2025), Appendix B, Table 8: latency in seconds per batch of 10.24 s clips on a "
    "single Tesla V100 GPU (32 GB); IMPACT base with 100 diffusion-head steps; AudioLDM2-full with 200 steps."
)

PAPER_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
PAPER_DECODING_STEPS = (4, 8, 16, 32, 64)
PAPER_HEAD_STEPS = 100
AUDIOLDM_STEPS = 200

# Table 8, IMPACT base rows: {decoding iterations: {batch size: latency in seconds}}.
PAPER_TABLE_8_IMPACT_BASE = {
    64: dict(zip(PAPER_BATCH_SIZES, (19.8, 19.9, 20.6, 22.2, 24.0, 27.9, 37.3))),
    32: dict(zip(PAPER_BATCH_SIZES, (10.1, 10.4, 10.5, 11.2, 12.6, 15.3, 20.5))),
    16: dict(zip(PAPER_BATCH_SIZES, (5.0, 5.2, 5.4, 5.7, 6.6, 8.5, 13.1))),
    8: dict(zip(PAPER_BATCH_SIZES, (2.5, 2.6, 2.8, 3.2, 4.1, 5.7, 9.5))),
    4: dict(zip(PAPER_BATCH_SIZES, (1.3, 1.4, 1.5, 1.8, 2.7, 4.4, 7.8))),
}

# Table 8, AudioLDM2-full row (200 steps; the closest AudioLDM-family baseline in the table; batch 64 ran out of
# GPU memory). diffusers' AudioLDM v1 (`cvssp/audioldm-s-full-v2`), which this benchmark times, is not in the table.
PAPER_TABLE_8_AUDIOLDM2_FULL = dict(zip(PAPER_BATCH_SIZES[:-1], (46.7, 48.8, 57.8, 96.1, 148.2, 275.4)))


def paper_reference() -> dict:
    """Table 8's numbers as JSON-ready data (string keys)."""
    return {
        "source": PAPER_TABLE_8_SOURCE,
        "impact_base_latency_s": {
            str(steps): {str(batch): latency for batch, latency in row.items()}
            for steps, row in PAPER_TABLE_8_IMPACT_BASE.items()
        },
        "audioldm2_full_latency_s": {str(batch): latency for batch, latency in PAPER_TABLE_8_AUDIOLDM2_FULL.items()},
    }
