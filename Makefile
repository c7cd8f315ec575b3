# `make test` builds .venv from nothing (Python 3.11 is all it needs) and runs lint + every test, then the numeric
# tests again under other kernel choices.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-fast test-variants demo lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

test: lint
	$(PY) -m pytest -q
	$(PY) tests/kernel_variants.py

# The numeric tests again under other kernel choices (another instruction-set level, one thread): a pass on this
# CPU must not hide a failure on another (tests/kernel_variants.py says which variants and why).
test-variants: $(STAMP)
	$(PY) tests/kernel_variants.py

# The inner loop: everything but the end-to-end tests marked `slow` (training runs, DDP, BCCD evaluation).
test-fast: lint
	$(PY) -m pytest -q -m "not slow"

demo: $(STAMP)
	$(VENV)/bin/singleshot models ssd300_vgg16 ssdlite320_mobilenet_v3
	$(VENV)/bin/singleshot train --config recipes/demo.yaml
	$(PY) -c "from singleshot.data.synthetic import save_images; save_images('runs/demo_images', 8)"
	$(VENV)/bin/singleshot predict --weights runs/train/demo/weights/best.safetensors --source runs/demo_images \
		--name demo --exist-ok

# Every benchmark, each against its reference in the same run (figures: benchmarks/RESULTS.md).
bench: $(STAMP)
	$(PY) benchmarks/postprocess.py
	$(PY) benchmarks/evaluate.py --images 1000
	$(PY) benchmarks/train_throughput.py --steps 3 --amp off bf16
	$(PY) benchmarks/inference.py --runs 10 --batches 3

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
