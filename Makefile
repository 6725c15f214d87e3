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

# `make lab` opens your own copies of the chapters, in my-chapters/ (git-ignored), never chapters/ itself: what you run,
# edit and save there stays yours, and chapters/ stays as committed (clean, as `make test` checks).
LAB_DIR := my-chapters

.PHONY: demo test check lab lab-copies book venv clean

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

# Two pytest workers (pytest-xdist): one builds the book while the other runs the chapters in JupyterLab, and the
# unit tests fill both (the scopes: tests/conftest.py); each worker's torch keeps to one thread, so they never fight for a core.
# The 30 slowest tests are listed at the end: where to look when the suite grows towards its 20-minute budget.
test: $(DEV)
	$(PY) -m pytest -n 2 --dist loadscope --durations 30

check: $(DEV)
	$(PY) -m pytest -n 2 --dist loadscope -m "$(UNIT_TESTS)"

lab: $(RUNTIME) lab-copies
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --notebook-dir $(LAB_DIR) $(ALLOW_ROOT)

# Copy each chapter into $(LAB_DIR)/ once, when it is not there yet; a copy that exists is never overwritten.
lab-copies:
	@mkdir -p $(LAB_DIR)
	@for chapter in chapters/*.ipynb; do \
		copy="$(LAB_DIR)/$$(basename "$$chapter")"; \
		if [ ! -e "$$copy" ]; then cp "$$chapter" "$$copy"; echo "copied $$chapter to $$copy"; fi; \
	done
	@echo "JupyterLab opens your copies in $(LAB_DIR)/ (git ignores them); to start a chapter afresh, delete its copy there and run make lab again"

book: $(DEV)
	$(PY) -m minidiff.cli.book --out site

clean:
	rm -rf outputs site site.partial site.old test-artifacts .pytest_cache build
