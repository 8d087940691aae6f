# Set-up and the two top-level jobs. `make demo` runs the main job, `make test` the test suite;
# both create the virtual environment first if it is missing or older than pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all venv demo test bench clean

all: test

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU wheel of torch first: an open range would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# setuptools warns on every editable install ("Editable installation" box): expected here.
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kwsbnn demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) build .cache *.egg-info
