"""Helpers shared by the tests: the example scripts as modules, and a pickle payload for the safe-loading tests."""

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name: str) -> Path:
    """The path of the example script `name` (e.g. `"train_impact.py"`), wherever it is under examples/."""
    (path,) = EXAMPLES.rglob(name)
    return path


def run_on_two_cpu_processes(script: Path, *arguments, timeout: int = 600) -> subprocess.CompletedProcess:
    """
    Run an example script as `accelerate launch` would on two devices: torchrun starts two processes, accelerate joins
    them over gloo (`ACCELERATE_USE_CPU`), one thread each. A failure lists every rank's errors, not only the last.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    environment = dict(os.environ, OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true")
    result = subprocess.run(
        [*command, str(script), *map(str, arguments)], capture_output=True, text=True, timeout=timeout, env=environment
    )
    errors = [line for line in result.stderr.splitlines() if "Error" in line]
    assert result.returncode == 0, "\n".join(errors[:20]) + result.stderr[-2000:]
    return result


def load_example(name: str):
    """`examples/<task>/<name>.py` as a fresh module."""
    spec = importlib.util.spec_from_file_location(name, example(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Payload:
    """Unpickling it creates the file `marker`: the trace of code run from a file that was loaded."""

    def __init__(self, marker: Path):
        self.marker = Path(marker)

    def __reduce__(self):
        return Path.touch, (self.marker,)
