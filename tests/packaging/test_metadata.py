"""The packaging files agree with each other and with the tree (fast, part of `make check`).

pyproject.toml is the one list of runtime dependencies; requirements.txt installs it and only pins on top of it;
requirements-dev.txt adds the test tools on top of requirements.txt. Every package folder and every file of data/
must reach the wheel (tests/packaging/test_install.py builds one and runs the demo from it).

(No __init__.py in this folder: as a regular package its name would shadow the `packaging` library.)
"""

import fnmatch
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DEPENDENCIES = {canonicalize_name(Requirement(line).name): Requirement(line)
                for line in PYPROJECT["project"]["dependencies"]}


def requirement_lines(name: str) -> list[str]:
    """The non-comment lines of a requirements file, inline comments stripped."""
    lines = [line.split(" #")[0].strip() for line in (REPO / name).read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_requirements_txt_installs_the_project_and_only_pins_its_dependencies():
    lines = requirement_lines("requirements.txt")
    assert "-e ." in lines or "." in lines, "requirements.txt must install minidiff itself, with pyproject's list"
    pins = [Requirement(line) for line in lines if line not in ("-e .", ".")]
    assert any(str(pin) == "torch==2.13.0" for pin in pins), "requirements.txt must pin the CPU torch 2.13.0"
    for pin in pins:
        name = canonicalize_name(pin.name)
        assert name in DEPENDENCIES, f"requirements.txt adds {pin.name}: runtime dependencies belong in pyproject.toml"
        version = str(pin.specifier).removeprefix("==")
        assert DEPENDENCIES[name].specifier.contains(version), f"{pin} is outside pyproject's {DEPENDENCIES[name]}"


def test_requirements_dev_txt_adds_test_tools_on_top_of_requirements_txt():
    lines = requirement_lines("requirements-dev.txt")
    assert lines[0] == "-r requirements.txt"
    tools = {canonicalize_name(Requirement(line).name) for line in lines[1:]}
    assert not tools & DEPENDENCIES.keys(), "a runtime dependency is listed again in requirements-dev.txt"
    assert {"pytest", "ruff"} <= tools


def test_every_package_folder_is_in_the_wheel():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "minidiff").rglob("__init__.py")}
    assert found - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == {"minidiff.shipped_data", "minidiff.shipped_data.checkpoints"}


def test_every_file_of_data_is_in_the_wheel():
    """minidiff.shipped_data is data/ and each folder below it a package of its own, whose package-data globs
    must match every file in it."""
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"minidiff.shipped_data": "data"}
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]
    files = [path.relative_to(REPO / "data") for path in (REPO / "data").rglob("*") if path.is_file()]
    assert Path("mnist5k.npz") in files and Path("checkpoints/shapes_text.safetensors") in files
    missed = []
    for file in files:
        package = ".".join(("minidiff", "shipped_data", *file.parent.parts))
        if not any(fnmatch.fnmatch(file.name, glob) for glob in package_data.get(package, [])):
            missed.append(f"{file} (package {package})")
    assert not missed, f"data/ files that would not reach the wheel; add their packages and globs to pyproject: {missed}"


def test_data_is_found_in_the_repository_or_where_minidiff_data_points(monkeypatch, tmp_path):
    from minidiff.data import paths

    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    if not paths.SHIPPED.is_dir():  # a clone or an editable install
        assert paths.find_data_dir() == REPO / "data"
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path))
    assert paths.find_data_dir() == tmp_path.resolve()
