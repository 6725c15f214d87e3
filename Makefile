# minidiff: the commands of the quickstart are `make demo`, `make test` and `make check`.
# Each creates .venv on first use and installs what it needs, once:
#   runtime (demo, lab): requirements.txt = minidiff (editable) + pyproject.toml's dependencies, CPU torch 2.13.0 pinned
#   dev (test, check, book): requirements-dev.txt = runtime + the test tools
# A stamp file in .venv per level records that it is installed, so `make demo` after `make test` installs nothing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
ALLOW_ROOT := $(shell [ "$$(id -u)" = "0" ] && echo --allow-root)
# `make check`: every test but those that execute the chapters, build the book, drive the browser or install the
# package into a fresh virtualenv (their markers are registered in pyproject.toml).
UNIT_TESTS := not chapters and not book and not browser and not install

.PHONY: demo test check lab book venv clean

venv: $(RUNTIME)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUNTIME): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(DEV): requirements-dev.txt $(RUNTIME)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

demo: $(RUNTIME)
	$(PY) -m minidiff demo

test: $(DEV)
	$(PY) -m pytest

check: $(DEV)
	$(PY) -m pytest -m "$(UNIT_TESTS)"

lab: $(RUNTIME)
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --notebook-dir chapters $(ALLOW_ROOT)

book: $(DEV)
	$(PY) -m minidiff.cli.book --out site

clean:
	rm -rf outputs site site.partial site.old test-artifacts .pytest_cache build
