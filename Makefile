# Two commands do all the set-up: `make run` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TASK ?= imdb-minilm
ARGS ?=
DATA ?= ../shared/data

.PHONY: run test bench install

$(BIN)/tk: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(BIN)/tk

install: $(BIN)/tk

run: $(BIN)/tk
	TK_DATA_DIR=$(DATA) $(BIN)/tk run $(TASK) $(ARGS)

test: $(BIN)/tk
	$(BIN)/python -m pytest -q

bench: $(BIN)/tk
	TK_DATA_DIR=$(DATA) $(BIN)/python benchmarks/speed.py $(ARGS)
