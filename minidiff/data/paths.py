"""Where the shipped data and checkpoints are: the repository's data/ folder, or wherever MINIDIFF_DATA points.

minidiff reads data/mnist5k.npz and data/checkpoints/ from this one place, found in this order:

1. MINIDIFF_DATA, when set: a folder laid out like the repository's data/.
2. minidiff/shipped_data/ inside the package: an installed (non-editable) copy carries data/ there, put in the
   wheel by pyproject.toml (`package-dir` maps the package minidiff.shipped_data to data/).
3. The repository's data/ beside minidiff/: a clone, and an editable install (`make`), which has no shipped_data
   folder of its own.
"""

import os
from pathlib import Path

DATA_ENV = "MINIDIFF_DATA"  # a folder laid out like the repository's data/
PACKAGE = Path(__file__).resolve().parent.parent  # minidiff/
SHIPPED = PACKAGE / "shipped_data"  # an installed copy's data
REPOSITORY_DATA = PACKAGE.parent / "data"  # a clone's data


def find_data_dir() -> Path:
    """MINIDIFF_DATA if set; else the copy inside an installed package; else the repository's data/."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).resolve()
    if (SHIPPED / "checkpoints").is_dir():
        return SHIPPED
    return REPOSITORY_DATA


DATA_DIR = find_data_dir()
MNIST_PATH = DATA_DIR / "mnist5k.npz"
CHECKPOINT_DIR = DATA_DIR / "checkpoints"
