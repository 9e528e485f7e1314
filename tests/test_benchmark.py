"""The latency benchmark runs end to end on tiny random pipelines (CPU, offline) and its plot is written."""

import argparse
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(script: str, *arguments) -> subprocess.CompletedProcess:
    command = [sys.executable, str(BENCHMARKS / script), *map(str, arguments)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def benchmarks(monkeypatch):
    """Imports a module of `benchmarks/` by name (the modules import their siblings, as when run as scripts)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module


@pytest.fixture(scope="module")
def results_path(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("benchmark") / "tiny.json"
    result = run_script(
        "benchmark_pipeline.py",
        "--tiny",
        "--device",
        "cpu",
        "--batch_sizes",
        1,
        "--decoding_steps",
        2,
        "--head_steps",
        2,
        "--audioldm_steps",
        2,
        "--warmup",
        1,
        "--repeats",
        2,
        "--num_threads",
        1,
        "--output",
        output,
    )
    assert result.returncode == 0, result.stderr
    assert "Full paper grid on a GPU" in result.stdout
    return output


def test_results_structure_and_times(results_path):
    results = json.loads(results_path.read_text())
    assert {"machine", "settings", "impact", "audioldm", "comparison", "paper_reference", "full_grid_command"} <= set(
        results
    )
    machine = results["machine"]
    assert machine["device"] == "cpu" and machine["torch_num_threads"] == 1
    assert machine["cpu_model"] and machine["torch"]
    settings = results["settings"]
    assert settings["model_config"] == "tiny"
    assert (
        settings["batch_sizes"],
        settings["decoding_steps"],
        settings["head_steps"],
        settings["audioldm_steps"],
    ) == ([1], [2], [2], [2])

    stages = {
        "impact": {"text_encoding", "transformer", "head", "vae_decode", "vocoder"},
        "audioldm": {"text_encoding", "unet", "vae_decode", "vocoder"},
    }
    for name, expected_stages in stages.items():
        (measurement,) = results[name]["measurements"]
        assert measurement["batch_size"] == 1
        assert len(measurement["latencies_s"]) == 2 and measurement["latency_s"] in measurement["latencies_s"]
        assert all(latency > 0 for latency in measurement["latencies_s"])
        assert set(measurement["breakdown_s"]) == expected_stages
        assert all(seconds > 0 for seconds in measurement["breakdown_s"].values()), measurement["breakdown_s"]
        assert sum(measurement["breakdown_s"].values()) <= measurement["latency_s"]
        assert measurement["unaccounted_s"] >= 0
        assert measurement["throughput_clips_per_s"] == pytest.approx(1 / measurement["latency_s"])
        assert measurement["peak_memory_bytes"] > 0 and measurement["peak_memory_kind"]

        extrapolation = results[name]["extrapolation"]
        assert extrapolation["extrapolated"] is True and "EXTRAPOLATED" in extrapolation["note"]
        assert extrapolation["predictions"] and all(p["extrapolated"] for p in extrapolation["predictions"])
        assert all(p["latency_s"] > 0 for p in extrapolation["predictions"])

    (measurement,) = results["impact"]["measurements"]
    assert (measurement["decoding_steps"], measurement["head_steps"]) == (2, 2)
    assert {(p["decoding_steps"], p["head_steps"]) for p in results["impact"]["extrapolation"]["predictions"]} == {
        (steps, 100) for steps in (2, 4, 8, 16, 32, 64)
    }
    assert [p["steps"] for p in results["audioldm"]["extrapolation"]["predictions"]] == [200]

    comparison = results["comparison"]
    assert [row["decoding_steps"] for row in comparison] == [2, 4, 8, 16, 32, 64]
    for row in comparison:
        assert row["impact_over_audioldm"] == pytest.approx(row["impact_latency_s"] / row["audioldm_latency_s"])
        assert row["impact_source"] == row["audioldm_source"] == "extrapolated"
    assert results["paper_reference"]["impact_base_latency_s"]["64"]["1"] == 19.8


def test_plot_writes_png(results_path, tmp_path):
    output = tmp_path / "latency.png"
    result = run_script("plot_benchmark.py", results_path, "--output", output)
    assert result.returncode == 0, result.stderr
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fp16_on_cpu_is_a_clear_error(benchmarks, capsys):
    with pytest.raises(SystemExit):
        benchmarks("benchmark_pipeline").parse_args(["--device", "cpu", "--dtype", "fp16"])
    assert "fp16 is only supported on CUDA" in capsys.readouterr().err


def test_extrapolation_recovers_linear_costs(benchmarks):
    extrapolation = benchmarks("extrapolation")
    # Stage times of an exact cost model: 1 s fixed, 0.5 s per transformer iteration, 0.01 + 0.002·T s per head step.
    measurements = [
        {
            "batch_size": 1,
            "decoding_steps": steps,
            "head_steps": head_steps,
            "breakdown_s": {
                "text_encoding": 0.2,
                "transformer": 0.5 * steps,
                "head": head_steps * (0.01 + 0.002 * steps),
                "vae_decode": 0.5,
                "vocoder": 0.3,
            },
            "unaccounted_s": 0.001 * steps,
        }
        for steps in (2, 4)
        for head_steps in (2, 3)
    ]
    extrapolated = extrapolation.extrapolate(
        measurements,
        extrapolation.IMPACT_STAGE_SCALING,
        "decoding_steps",
        [{"decoding_steps": 64, "head_steps": 100}],
    )
    (prediction,) = extrapolated["predictions"]
    expected = 0.2 + 0.5 * 64 + 100 * (0.01 + 0.002 * 64) + 0.5 + 0.3 + 0.001 * 64
    assert prediction["latency_s"] == pytest.approx(expected)
    assert prediction["breakdown_s"]["head"] == pytest.approx(100 * (0.01 + 0.002 * 64))


def test_readme_cpu_table_is_the_committed_json():
    """Every IMPACT row of the README's CPU speed table equals `benchmarks/results/cpu_b1_disa.json`."""
    readme = (BENCHMARKS.parent / "README.md").read_text()
    results = json.loads((BENCHMARKS / "results" / "cpu_b1_disa.json").read_text())
    row_pattern = re.compile(
        r"^\| IMPACT base, T = (\d+), (100 head steps|DiSA 50→5|DiSA 50→5 geometric) \| \**([\d.]+) s\** \| ([\d.]+) s \| "
        r"\**([\d.]+)\** \| \**([\d.]+)\** \|",
        re.MULTILINE,
    )
    head_steps = {"100 head steps": "100", "DiSA 50→5": "[50, 5]", "DiSA 50→5 geometric": "[50, 5, 'geometric']"}
    rows = {(int(match[0]), head_steps[match[1]]): match[2:] for match in row_pattern.findall(readme)}
    measured = {
        (row["decoding_steps"], str(row["head_steps"])): row
        for row in results["side_by_side"]
        if row["batch_size"] == 1
    }
    assert rows.keys() == measured.keys() and len(rows) == 9
    for key, (latency, head, over_25, over_200) in rows.items():
        row = measured[key]
        assert float(latency) == round(row["impact_latency_s"], 1) and float(head) == round(row["head_s"], 1)
        assert float(over_25) == round(row["over_audioldm_25_steps"], 2)
        assert float(over_200) == round(row["over_audioldm_200_steps"], 3)


def test_annealed_head_steps_are_measured_side_by_side_and_left_out_of_the_extrapolation(tmp_path, benchmarks):
    head_steps_argument = benchmarks("benchmark_pipeline").head_steps_argument
    assert head_steps_argument("50:5") == [50, 5]
    assert head_steps_argument("100") == 100
    assert head_steps_argument("50:5:geometric") == [50, 5, "geometric"]
    for bad in ("50:5:cosine", "50:0", "a", "50:5:6:geometric", "100:geometric"):
        with pytest.raises(argparse.ArgumentTypeError, match="FIRST:LAST:SHAPE"):
            head_steps_argument(bad)
    output = tmp_path / "disa.json"
    result = run_script(
        "benchmark_pipeline.py",
        "--tiny",
        "--device",
        "cpu",
        "--batch_sizes",
        1,
        "--decoding_steps",
        3,
        "--head_steps",
        4,
        "4:2",
        "4:2:geometric",
        "--audioldm_steps",
        2,
        3,
        "--warmup",
        0,
        "--repeats",
        1,
        "--num_threads",
        1,
        "--output",
        output,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(output.read_text())
    assert [m["head_steps"] for m in results["impact"]["measurements"]] == [4, [4, 2], [4, 2, "geometric"]]
    rows = results["side_by_side"]
    assert [row["head_steps"] for row in rows] == [4, [4, 2], [4, 2, "geometric"]]
    for row, measurement in zip(rows, results["impact"]["measurements"]):
        for other in results["audioldm"]["measurements"]:
            assert row[f"over_audioldm_{other['steps']}_steps"] == pytest.approx(
                measurement["latency_s"] / other["latency_s"]
            )
    assert (
        "S=4:2 " in result.stdout and "S=4:2:geometric" in result.stdout and "Measured side by side" in result.stdout
    )
    assert all(fit["from_measurements"] == 1 for fit in results["impact"]["extrapolation"]["fits"])


def test_the_energy_head_is_timed_beside_the_diffusion_head_and_measured_only(tmp_path):
    output = tmp_path / "energy.json"
    arguments = ["--tiny", "--device", "cpu", "--batch_sizes", 1, "--decoding_steps", 2, "--audioldm_steps", 2]
    result = run_script(
        "benchmark_pipeline.py",
        *arguments,
        "--head_steps",
        3,
        "energy",
        "--repeats",
        1,
        "--num_threads",
        1,
        "--output",
        output,
    )
    assert result.returncode == 0, result.stderr
    assert "T=2 S=energy" in result.stdout
    results = json.loads(output.read_text())
    diffusion, energy = results["impact"]["measurements"]
    assert (diffusion["head_steps"], energy["head_steps"]) == (3, "energy")
    assert energy["breakdown_s"]["head"] > 0 and energy["breakdown_s"]["transformer"] > 0
    assert results["impact"]["components"]["energy_head"]["class"] == "ImpactEnergyHead"
    assert all(p["head_steps"] == 100 for p in results["impact"]["extrapolation"]["predictions"])  # never extrapolated
    assert [row["head_steps"] for row in results["side_by_side"]] == [3, "energy"]
    refused = run_script("benchmark_pipeline.py", *arguments, "--head_steps", "one-step", "--output", output)
    assert refused.returncode != 0 and "or 'energy', got 'one-step'" in refused.stderr


def test_the_embedded_models_are_timed_in_one_run(tmp_path):
    output = tmp_path / "default_models.json"
    result = run_script(
        "benchmark_default_models.py", "--warmup", 0, "--repeats", 1, "--num_threads", 1, "--output", output
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(output.read_text())
    diffusion, energy = results["models"]["diffusion"], results["models"]["energy"]
    assert diffusion["call_settings"] == {"num_inference_steps": 8, "num_diffusion_steps": 25, "guidance_scale": 5.0}
    assert energy["call_settings"] == {"num_inference_steps": 8, "guidance_scale": 2.0}
    for measurement in (diffusion, energy):
        assert measurement["breakdown_s"]["head"] > 0
        assert measurement["head_share"] == pytest.approx(
            measurement["breakdown_s"]["head"] / measurement["latency_s"]
        )
    assert results["diffusion_over_energy_latency"] == pytest.approx(diffusion["latency_s"] / energy["latency_s"])
    assert "faster per call" in result.stdout
