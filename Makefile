# `make test` builds .venv from nothing (Python 3.11 is all it needs) and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/singleshot models ssd300_vgg16 ssdlite320_mobilenet_v3
	$(VENV)/bin/singleshot train --config recipes/demo.yaml

bench: $(STAMP)
	$(PY) benchmarks/postprocess.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
