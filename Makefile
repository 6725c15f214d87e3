# minidiff: the two commands of the quickstart are `make demo` and `make test`.
# Each creates .venv on first use and installs what it needs (CPU torch 2.13.0, pinned in requirements.txt).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ALLOW_ROOT := $(shell [ "$$(id -u)" = "0" ] && echo --allow-root)

.PHONY: demo test lab book venv clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m minidiff demo

test: $(STAMP)
	$(PY) -m pytest

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --notebook-dir chapters $(ALLOW_ROOT)

book: $(STAMP)
	$(PY) -m minidiff.book --out site

clean:
	rm -rf outputs site site.partial site.old test-artifacts .pytest_cache
