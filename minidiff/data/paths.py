"""Where the shipped data and checkpoints are: the repository's data/ folder, or wherever MINIDIFF_DATA points.

minidiff reads data/mnist5k.npz and data/checkpoints/ from this one place. In a clone of the repository (and an
editable install) it is the data/ folder beside minidiff/; an installed copy of the package carries the same files
inside itself (see pyproject.toml) and finds them there; MINIDIFF_DATA overrides both.
"""

import os
from pathlib import Path

DATA_ENV = "MINIDIFF_DATA"  # a folder laid out like the repository's data/


def find_data_dir() -> Path:
    """MINIDIFF_DATA if set; else the repository's data/ beside the package; else the copy inside the package."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).resolve()
    package = Path(__file__).resolve().parent.parent  # minidiff/
    beside = package.parent / "data"
    if (beside / "checkpoints").is_dir():
        return beside
    return package / "shipped_data"


DATA_DIR = find_data_dir()
MNIST_PATH = DATA_DIR / "mnist5k.npz"
CHECKPOINT_DIR = DATA_DIR / "checkpoints"
