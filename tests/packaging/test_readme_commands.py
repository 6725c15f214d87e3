"""Every shell command in README.md's code blocks works as written on a fresh checkout.

The commands are read from the README's ```bash blocks, in order, and run one after the other in a copy of the
repository (the files a clone holds, uncommitted edits included: tests/support/checkout.py), so a command may use
what an earlier one made (the editing examples read the input and mask that `make demo` writes). The copy reuses
the environment running the tests as its .venv (a link), and `make` is told that .venv is installed already
(`-o` on its stamp files), so nothing is downloaded. Four commands are not run, each for a reason the test names:
`make check` and `make test` are this test suite, `make lab` is a server that waits for a browser
(tests/chapters/test_lab_copies.py tests what it opens, tests/chapters/test_browser.py a JupyterLab in Chromium),
and the precision benchmark's GPU command needs CUDA (tests/training/test_execution.py runs that script on the CPU).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from support.checkout import clean_env, copy_working_tree

pytestmark = pytest.mark.install  # runs the demo in a fresh checkout: part of `make test`, not of `make check`

REPO = Path(__file__).resolve().parents[2]
NOT_RUN = {  # command -> why it is not run here
    "make check": "the unit tests: this suite itself",
    "make test": "the whole suite, this test included",
    "make lab": "a server that waits for a browser (test_lab_copies.py and test_browser.py test it)",
    ".venv/bin/python benchmarks/bench_precision.py --device cuda --config mnist --variants fp32 fp32+cl bf16 bf16+cl"
    " fp16+cl --steps 100 --warmup 20": "needs a CUDA GPU (tests/training/test_execution.py runs the script on the CPU)",
}
MAKE_INSTALLED = ["-o", ".venv/.installed-runtime", "-o", ".venv/.installed-dev"]  # .venv is this environment
COMMAND_TIMEOUT_S = 300


def readme_commands(text: str) -> list[str]:
    """The commands of the ```bash blocks, one per line, less their trailing comments."""
    blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_readme_commands_are_read_from_its_code_blocks():
    text = "x\n```bash\nmake demo   # runs it\n\n.venv/bin/python -m minidiff sample --n 2\n```\n```text\nno\n```\n"
    assert readme_commands(text) == ["make demo", ".venv/bin/python -m minidiff sample --n 2"]


def test_readme_commands_use_the_venvs_python():
    bare = [c for c in readme_commands((REPO / "README.md").read_text()) if re.match(r"(python3?|pip3?)\b", c)]
    assert bare == [], f"a fresh clone has no python with minidiff on the PATH: write .venv/bin/python in {bare}"


def test_every_readme_command_runs_on_a_fresh_checkout(tmp_path):
    commands = readme_commands((REPO / "README.md").read_text())
    assert set(NOT_RUN) <= set(commands), "a command this test leaves out is no longer in the README"
    checkout = tmp_path / "minidiff"
    checkout.mkdir()
    copy_working_tree(checkout)
    (checkout / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    for command in commands:
        if command in NOT_RUN:
            continue
        argv = command.split()
        if argv[0] == "make":
            argv[1:1] = MAKE_INSTALLED
        done = subprocess.run(" ".join(argv), shell=True, cwd=checkout, env=clean_env(), capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT_S)
        assert done.returncode == 0, f"README command failed: {command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    for folder in ("outputs/red", "outputs/edit", "outputs/fill"):  # what the README's sample commands promise
        with Image.open(checkout / folder / "000.png") as image:
            assert image.size == (32, 32)
        with Image.open(checkout / folder / "grid.png") as grid:
            assert grid.height >= 4 * 32, f"{folder}/grid.png is too small to read: {grid.size}"
