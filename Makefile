# Two commands for a new user: `make lab` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# The stamp carries a hash of pyproject.toml: set-up re-installs only when it changed.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
export COURSE_PROFILE ?= quick

.PHONY: venv lab present warm gpu-check test system-deps lint unit notebooks book book-html site-test bench clean

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

# Instructors: NB is a notebook or a chapter (e.g. NB=01_lipschitz), PORT defaults to 8866.
NB ?=
PORT ?= 8866
PROFILE ?= full
present: venv
	@$(PY) -m course_lib.instructor.present $(NB) --port $(PORT)

warm: venv
	@$(PY) -m course_lib.instructor.warm

gpu-check: venv
	@COURSE_PROFILE=$(PROFILE) $(PY) -m course_lib.instructor.gpu_check $(NB) --profile $(PROFILE)

# The site test drives Debian's Chromium and the site build vendors MathJax with npm: as root on
# Debian, make test installs what is missing; otherwise it says the one command to run.
test: venv system-deps
	$(MAKE) lint unit notebooks book-html site-test

system-deps:
	@missing=""; command -v chromium >/dev/null || missing="chromium"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $$missing (Debian packages)"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "make test needs:$$missing. Run: sudo apt-get install -y$$missing"; exit 1; fi; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

unit: venv
	$(PY) -m pytest tests --ignore=tests/site

# Each notebook runs once: nbval checks it, chapters/conftest.py keeps the executed copy in
# _build/executed/, and the site is built from those copies without executing again. Two
# notebooks run side by side (pytest-xdist, one notebook per worker; zoo.load's lock trains a
# shared model once).
# Each kernel gets its share of the cores (torch would otherwise start one thread per core in
# every kernel, and two kernels on two cores slow each other down).
NB_WORKERS ?= 2
NB_THREADS ?= $(shell n=$$(( $$(nproc) / $(NB_WORKERS) )); echo $$(( n > 0 ? n : 1 )))
notebooks: venv
	rm -rf _build/executed
	OMP_NUM_THREADS=$(NB_THREADS) MKL_NUM_THREADS=$(NB_THREADS) $(PY) -m pytest -n $(NB_WORKERS) --dist loadfile --nbval-lax --nbval-current-env --nbval-cell-timeout=1500 -p no:cacheprovider chapters

book: notebooks
	$(MAKE) book-html

book-html: venv
	@for nb in $$(find chapters -name '*.ipynb' -not -path '*checkpoints*'); do \
	  test -f _build/executed/$$nb || { echo "no executed copy of $$nb: run make book (or make notebooks)"; exit 1; }; \
	done
	rm -rf _build/src && mkdir -p _build/src
	cp -r intro.md _toc.yml _ext chapters _build/src/
	cp -r _build/executed/chapters _build/src/
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/jupyter-book build _build/src --path-output . --config jupyter_book_config.yml --toc _toc.yml -W --keep-going

site-test: venv
	$(PY) -m pytest tests/site

bench: venv
	$(PY) benchmarks/run.py
	$(PY) benchmarks/budgets.py

# Students' copies of the notebooks, solution cells replaced by stubs (course_lib/exercises/student.py).
.PHONY: student
student: venv
	$(PY) -m course_lib.exercises.student _build/student

clean:
	rm -rf _build .pytest_cache .ruff_cache
