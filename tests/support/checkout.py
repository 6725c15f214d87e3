"""A fresh checkout of the repository in a temporary folder, and an environment that cannot see this one's code.

`copy_working_tree` copies the files git would clone (tracked or new, not ignored; uncommitted edits included), so
a command run there meets what a learner's fresh clone holds, and its outputs never land in the working tree.
"""

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
JUNK = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
                              "outputs", "runs", "site", "test-artifacts", "my-chapters")


def copy_working_tree(target: Path) -> None:
    """The repository's files as git sees them (tracked or new, not ignored), or the folder less its junk."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True)
    if listed.returncode != 0:
        shutil.copytree(REPO, target, ignore=JUNK, dirs_exist_ok=True)
        return
    for name in listed.stdout.decode().split("\0"):
        if name and (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)


def clean_env() -> dict[str, str]:
    """This environment, less anything that could point Python at the repository or at other data."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "MINIDIFF_DATA")}
    env["PYTHONNOUSERSITE"] = "1"
    return env
