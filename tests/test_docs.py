"""The examples in the public classes' docstrings run and print what they claim."""

import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest


MODULES = [
    "diffusers_impact.models.transformer_impact",
    "diffusers_impact.models.diff_head_impact",
    "diffusers_impact.models.energy_head_impact",
    "diffusers_impact.models.vocoder_griffin_lim",
    "diffusers_impact.schedulers.scheduling_impact_mask",
    "diffusers_impact.schedulers.scheduling_impact_diff_head",
    "diffusers_impact.pipelines.pipeline_impact",
    "diffusers_impact.pipelines.audio_input",
    "diffusers_impact.loaders.lora_pipeline_impact",
    "diffusers_impact.convert_mar",
    "diffusers_impact.audio",
    "diffusers_impact.training.data",
    "diffusers_impact.evaluation.metrics",
    "diffusers_impact.evaluation.checkpoints",
    "diffusers_impact.evaluation.panns",
    "diffusers_impact.evaluation.vggish",
    "diffusers_impact.evaluation.clap",
    "diffusers_impact.evaluation.evaluator",
    "diffusers_impact.pretrained",
    "diffusers_impact.training.losses",
    "diffusers_impact.visualization",
    "diffusers_impact.demo",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write or look up relative paths stay in a fresh folder
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    # The pipeline's `__call__` example loads a placeholder checkpoint path; every class example must run.
    tests = [test for test in finder.find(module) if test.examples and not test.name.endswith("__call__")]
    assert tests, f"{module_name} has no docstring example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        for example in test.examples:  # diffusers-style docstrings close the example with a ``` fence
            example.want = "".join(line for line in example.want.splitlines(True) if line.strip() != "```")
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) failed in {module_name}"


def test_the_code_is_clean_under_the_projects_ruff_configuration():
    """`ruff check` and `ruff format --check` with `ruff.toml` (diffusers' settings), as a maintainer would run them."""
    root = Path(__file__).resolve().parent.parent
    for command in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run([sys.executable, "-m", "ruff", *command], cwd=root, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
