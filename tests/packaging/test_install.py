"""An installed minidiff works away from the repository: `pip install <repo>` (not editable) into a fresh virtualenv,
then `python -m minidiff demo` run from another folder must find the shipped data and checkpoints in the package.

The virtualenv reuses the packages of the environment running the tests (torch 2.13.0 among them) through a .pth
file, so nothing is downloaded but the build backend, and `pip install` must install minidiff alone: every runtime
dependency, torch included, is already satisfied, so no other torch can come in. About half a minute on 2 cores.

The repository is copied first (the files git would clone, uncommitted edits included), so the build's leftovers
(build/, *.egg-info) never land in the working tree.
"""

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from support.checkout import clean_env, copy_working_tree

pytestmark = pytest.mark.install  # builds and installs the package: part of `make test`, not of `make check`

REPO = Path(__file__).resolve().parents[2]


def run(command: list, cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=clean_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of the virtualenv, its site-packages, pip's install report, an empty folder outside the repo)."""
    root = tmp_path_factory.mktemp("install")
    source, venv, elsewhere = root / "source", root / "venv", root / "elsewhere"
    source.mkdir(), elsewhere.mkdir()
    copy_working_tree(source)
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root, timeout=120)
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root, 60).stdout
                .strip())
    # The running environment's packages (torch, numpy, ..., pip itself) after the venv's own: found, not copied.
    reused = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_reuse_test_environment.pth").write_text("".join(f"{path}\n" for path in reused))
    report = root / "pip-report.json"
    run([python, "-m", "pip", "install", "--quiet", "--report", report, source], cwd=elsewhere, timeout=600)
    return python, site, json.loads(report.read_text()), elsewhere


def test_pip_install_installs_minidiff_alone_and_no_new_torch(installed):
    python, site, report, elsewhere = installed
    names = [item["metadata"]["name"] for item in report["install"]]
    assert names == ["minidiff"], f"pip install <repo> installed more than minidiff: {names}"
    assert report["install"][0]["download_info"].get("dir_info", {}).get("editable", False) is False
    assert not list(site.glob("torch*")) and not list(site.glob("nvidia*")), "a second torch came into the venv"
    torch_file = run([python, "-c", "import torch; print(torch.__file__, torch.__version__)"], elsewhere, 120).stdout
    assert torch_file.split()[1].startswith("2.13.0") and Path(torch_file.split()[0]).is_relative_to(
        sysconfig.get_paths()["purelib"])


def test_the_wheel_carries_the_data_and_every_checkpoint(installed):
    python, site, report, elsewhere = installed
    shipped = site / "minidiff" / "shipped_data"
    assert (shipped / "mnist5k.npz").stat().st_size == (REPO / "data" / "mnist5k.npz").stat().st_size
    checkpoints = sorted(path.name for path in (REPO / "data" / "checkpoints").iterdir())
    assert checkpoints and sorted(path.name for path in (shipped / "checkpoints").iterdir()) == checkpoints
    for name in checkpoints:
        assert (shipped / "checkpoints" / name).read_bytes() == (REPO / "data" / "checkpoints" / name).read_bytes()


def test_the_installed_package_finds_its_data_inside_itself(installed):
    python, site, report, elsewhere = installed
    where = run([python, "-c", "import json, minidiff, minidiff.data.paths as p; print(json.dumps("
                               "[minidiff.__file__, str(p.DATA_DIR), str(p.MNIST_PATH), str(p.CHECKPOINT_DIR)]))"],
                elsewhere, 120)
    package, data, mnist, checkpoints = map(Path, json.loads(where.stdout))
    assert package == site / "minidiff" / "__init__.py", f"minidiff was imported from {package}, not the venv"
    assert data == site / "minidiff" / "shipped_data"
    assert mnist.is_file() and (checkpoints / "shapes_text.safetensors").is_file()


def test_the_demo_runs_from_the_installed_package_in_another_folder(installed):
    python, site, report, elsewhere = installed
    out = elsewhere / "out"
    printed = run([python, "-m", "minidiff", "demo", "--out", out], elsewhere, 300).stdout
    for demo, model, prompts in [(out / "demo", "shapes_text", 5), (out / "demo" / "emoji", "emoji", 4)]:
        folders = sorted(path for path in demo.iterdir() if path.is_dir() and path.name != "emoji")
        assert len(folders) == prompts, printed
        for folder in folders:
            assert str(folder) in printed
            assert all((folder / name).is_file()
                       for name in ["000.png", "003.png", "grid.png", "denoise.gif", "meta.json"])
            assert json.loads((folder / "meta.json").read_text())["model"] == model
        assert (demo / "prompts.png").is_file()
    assert len(list(out.glob("forward_*.png"))) == 4
    assert sorted(path.name for path in elsewhere.iterdir()) == ["out"], "the demo wrote outside --out"
