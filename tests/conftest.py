"""Fixtures shared by the test modules."""

import pytest

from diffusers_impact.testing_utils import tiny_impact_pipeline


@pytest.fixture
def pipe():
    """A tiny, untrained, offline ImpactPipeline (0.64 s at 1.6 kHz) with its progress bar off."""
    pipeline = tiny_impact_pipeline()
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
