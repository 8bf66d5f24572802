# torchgeo-geolink: `make pretrain` runs the main job, `make test` runs the tests.
# Both create .venv on first use (Python >= 3.12, the package editable with its dev extras).

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The torch builds this project is tested with; override for another platform (e.g. TORCH_PINS=).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= dev,docs
PYTEST_ARGS ?=

.PHONY: install test pretrain segment lint docs bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || { py=$${PYTHON:-$$(scripts/find-python)} && echo "creating $(VENV) with $$py" && "$$py" -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]" $(TORCH_PINS)
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

pretrain: $(STAMP)
	$(VENV)/bin/torchgeo fit --config geolink_pretrain.yaml

segment: $(STAMP)
	$(VENV)/bin/torchgeo fit --config geolink_segmentation.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check --no-fix .
	$(VENV)/bin/ty check

docs: $(STAMP)
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf docs/_build build *.egg-info .pytest_cache .ruff_cache
