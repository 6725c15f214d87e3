"""The repository's scripts (benchmarks/, scripts/) loaded as modules, so that tests can call their functions."""

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def load_script(path: str) -> ModuleType:
    """The script at `path` (relative to the repository root, e.g. "benchmarks/bench_unet.py"), run as a module."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
