"""The package's layout is its architecture: each folder is a layer, imports only go down, chains stay short.

Read from the source with `ast` (nothing is imported), so a new upward import, a long chain or an oversized module
fails here, with the offending import named.
"""

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "minidiff"
# each layer and the layers it may import (itself included); lower layers come first
ALLOWED = {
    "data": {"data"},
    "diffusion": {"diffusion"},
    "nets": {"nets", "data"},
    "files": {"files", "data"},
    "models": {"models", "nets", "files", "diffusion", "data"},
    "pipeline": {"pipeline", "models", "nets", "files", "diffusion", "data"},
    "measure": {"measure", "pipeline", "models", "nets", "files", "diffusion", "data"},
    "training": {"training", "measure", "pipeline", "models", "nets", "files", "diffusion", "data"},
    "views": {"views", "training", "measure", "pipeline", "models", "nets", "files", "diffusion", "data"},
    "cli": {"cli", "training", "measure", "pipeline", "models", "nets", "files", "diffusion", "data"},
    "__main__": {"cli", "files"},  # the dispatcher turns a command's user errors (files.checkpoint's too) into messages
}
MAX_CHAIN = 8  # modules in the longest chain of imports inside the package
MAX_LINES = 300
# the maths layer: torch alone, and the standard library's plainest modules
DIFFUSION_MAY_IMPORT = {"torch", "math", "dataclasses", "collections", "typing", "warnings"}


def module_name(path: Path) -> str:
    """minidiff/diffusion/loop.py -> minidiff.diffusion.loop; a package's __init__.py -> the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, source: str | None = None) -> list[str]:
    """Every absolute import in a module (import x / from x import y), as written; `source` instead of the file's."""
    found = []
    for node in ast.walk(ast.parse(MODULES[name].read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name} uses a relative import; write it out (from minidiff.x import y)"
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def package_imports(name: str, source: str | None = None) -> set[str]:
    """The modules of minidiff that `name` imports (a name imported from a module counts as that module)."""
    return {target for target in imports_of(name, source) if target in MODULES and target not in (name, "minidiff")}


def upward_imports(name: str, source: str | None = None) -> list[str]:
    """The imports of `name` that reach a layer it may not import."""
    return sorted(target for target in package_imports(name, source) if layer(target) not in ALLOWED[layer(name)])


def layer(name: str) -> str:
    """minidiff.diffusion.loop -> diffusion; minidiff.pipeline -> pipeline; minidiff -> the package itself."""
    return name.split(".")[1] if "." in name else "minidiff"


@functools.lru_cache(maxsize=None)
def longest_chain(name: str) -> tuple[str, ...]:
    return (name, *max((longest_chain(target) for target in package_imports(name)), key=len, default=()))


def test_every_module_belongs_to_a_layer():
    strays = [name for name in MODULES if layer(name) not in ALLOWED and name != "minidiff"]
    assert not strays, f"modules outside the layers {sorted(ALLOWED)}: {strays}"


@pytest.mark.parametrize("name", [name for name in MODULES if name != "minidiff"])
def test_imports_only_go_down(name):
    upward = upward_imports(name)
    assert not upward, f"{name} ({layer(name)}) imports a higher layer: {upward}"


def test_the_longest_import_chain_is_short():
    chain = max((longest_chain(name) for name in MODULES), key=len)
    assert len(chain) <= MAX_CHAIN, f"{len(chain)} modules: {' -> '.join(chain)}"


def test_no_module_is_over_300_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_maths_layer_needs_torch_alone():
    for name in (name for name in MODULES if layer(name) == "diffusion"):
        outside = {target.split(".")[0] for target in imports_of(name)} - DIFFUSION_MAY_IMPORT - {"minidiff"}
        assert not outside, f"{name} imports {sorted(outside)}: the diffusion layer reads no files and draws nothing"


def test_the_checker_names_an_upward_import():
    """The rule is not vacuous: the sampling loop importing a network, or a network importing a view, is caught."""
    assert upward_imports("minidiff.diffusion.loop", "from minidiff.nets.unet import UNet\nimport torch") == [
        "minidiff.nets.unet"]
    assert upward_imports("minidiff.nets.unet", "from minidiff.views import plots") == ["minidiff.views",
                                                                                      "minidiff.views.plots"]
    assert upward_imports("minidiff.pipeline", "from minidiff.models import load_model") == []
