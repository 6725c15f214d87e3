"""benchmarks/mutation.py's mutants stay applicable: each one's old text is in its file exactly once.

A mutant whose text the code no longer contains would stop the mutation run with an error, and a mutation run is only
made on demand; this keeps the catalogue true to the code as the code changes.
"""

from pathlib import Path

import pytest
from support.scripts import load_script

REPO = Path(__file__).resolve().parents[2]


def load_mutants():
    return load_script("benchmarks/mutation.py").MUTANTS


@pytest.mark.parametrize("mutant", load_mutants(), ids=lambda mutant: mutant.name)
def test_every_mutant_finds_its_text_once_and_changes_it(mutant):
    text = (REPO / "minidiff" / mutant.path).read_text()
    assert text.count(mutant.old) == 1, f"{mutant.name}: {mutant.old!r} occurs {text.count(mutant.old)} times"
    assert mutant.new != mutant.old
