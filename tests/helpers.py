"""Helpers shared by the tests: the example scripts as modules, and a pickle payload for the safe-loading tests."""

import importlib.util
from pathlib import Path


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name: str) -> Path:
    """The path of the example script `name` (e.g. `"train_impact.py"`), in whichever task folder of examples/."""
    (path,) = EXAMPLES.glob(f"*/{name}")
    return path


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
