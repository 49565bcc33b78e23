# Every target makes its own virtual environment, so a fresh clone needs only Python 3.11 and pip.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench bench-quick docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,demo,cli,prometheus]'
	touch $(STAMP)

# The tests and benchmarks also need the ray extra (a large download the demo does without).
RAY_STAMP := $(VENV)/.ray-installed
$(RAY_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[ray]'
	touch $(RAY_STAMP)

demo: $(STAMP)  ## the bundled demo: image filters, serial vs parallel
	$(PY) examples/demo_pipeline.py

test: lint typecheck pytest  ## lint, type checks and the test suite

lint: $(RAY_STAMP)
	$(PY) -m ruff check pystream_actors tests examples benchmarks
	$(PY) -m ruff format --check pystream_actors tests examples benchmarks

typecheck: $(RAY_STAMP)
	$(PY) -m mypy

pytest: $(RAY_STAMP)
	$(PY) -m pytest

bench: $(RAY_STAMP)  ## benchmarks: one table of ratios against baselines measured in the same run
	$(PY) benchmarks/run_all.py

bench-quick: $(RAY_STAMP)  ## a shorter benchmark run
	$(PY) benchmarks/run_all.py --quick

SOAK_EXAMPLES ?= 2000
.PHONY: soak
soak: $(STAMP)  ## the stateful property test only, over thousands of step sequences
	PYSTREAM_STATEFUL_EXAMPLES=$(SOAK_EXAMPLES) $(PY) -m pytest tests/test_stateful.py -q

DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)  ## build the documentation site with warnings as errors
	$(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) dist .mypy_cache .ruff_cache .pytest_cache
