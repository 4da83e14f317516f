# Two commands for a new user: `make lab` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# The stamp carries a hash of pyproject.toml: set-up re-installs only when it changed.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
export COURSE_PROFILE ?= quick

.PHONY: venv lab test lint unit notebooks book site-test bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,bench]"
	# peers whose metadata pins conflict with JupyterLab, installed without their pins
	$(PY) -m pip install -q --no-deps $$($(PY) -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['tool']['course_lib']['peers_no_deps']))")
	@rm -f $(VENV)/.installed-*
	@touch $@

lab: venv
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=chapters $(ROOT_FLAG)

test: venv
	@command -v chromium >/dev/null || { echo "make test needs Debian's chromium for the site test: apt-get install -y chromium"; exit 1; }
	$(MAKE) lint unit notebooks book site-test

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

unit: venv
	$(PY) -m pytest tests --ignore=tests/site

notebooks: venv
	$(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider chapters

book: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/jupyter-book build . --config jupyter_book_config.yml --toc _toc.yml -W --keep-going

site-test: venv
	$(PY) -m pytest tests/site

bench: venv
	$(PY) benchmarks/run.py
	$(PY) benchmarks/budgets.py

clean:
	rm -rf _build .pytest_cache .ruff_cache
