# trm_jax: set up, lint, test, train. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help setup lint format test test-slow train-cpu clean

help:
	@echo "make setup      create $(VENV) and install trm_jax[dev,torch,arc] (editable)"
	@echo "make test       setup if needed, then ruff and the default pytest suite"
	@echo "make test-slow  the slow tests (benchmarks, long training checks)"
	@echo "make lint       ruff check and ruff format --check"
	@echo "make train-cpu  generate Sudoku puzzles and run the CPU main job (~15 min on 2 cores)"
	@echo "               on a mixture of 25-45 givens per puzzle (SUDOKU_MIX=LO-HI for another);"
	@echo "               one givens count instead: make train-cpu SUDOKU_GIVENS=34 (data/sudoku-34, runs/sudoku-34)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,torch,arc]'
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: setup lint
	$(VENV)/bin/pytest -q

test-slow: setup
	$(VENV)/bin/pytest -q -m slow

# The training and held-out puzzles: each puzzle's givens drawn uniformly from SUDOKU_MIX
# (data_gen.sudoku build --givens-mix), or all with SUDOKU_GIVENS givens when that is set.
SUDOKU_MIX    ?= 25-45
SUDOKU_GIVENS ?=
SUDOKU_KIND   := $(if $(SUDOKU_GIVENS),$(SUDOKU_GIVENS),mix$(SUDOKU_MIX))
SUDOKU_DATA   ?= data/sudoku-$(SUDOKU_KIND)
SUDOKU_RUN    ?= $(if $(SUDOKU_GIVENS),runs/sudoku-$(SUDOKU_GIVENS),runs/sudoku-cpu)
# The main job's 15 minutes include setting up and generating the puzzles: the seconds those
# took since make started come off the 13-minute training budget (at least 5 minutes remain).
TRAIN_BUDGET_S ?= 780
MAKE_START     := $(shell date +%s)

$(SUDOKU_DATA)/train/dataset.json: | setup
	$(PY) -m data_gen.sudoku build --out $(SUDOKU_DATA) --num-train 1000 --num-test 500 \
		$(if $(SUDOKU_GIVENS),--givens $(SUDOKU_GIVENS),--givens-mix $(SUDOKU_MIX)) --seed 0

train-cpu: setup $(SUDOKU_DATA)/train/dataset.json
	@budget=$$(( $(TRAIN_BUDGET_S) - ($$(date +%s) - $(MAKE_START)) )); \
	[ $$budget -ge 300 ] || budget=300; \
	echo "Training budget: $$budget s (set-up and data took $$(( $$(date +%s) - $(MAKE_START) )) s)"; \
	set -x; $(PY) -m trm_jax.train --config=configs/sudoku_cpu.py --workdir=$(SUDOKU_RUN) \
		--config.data.path=$(SUDOKU_DATA) --config.train.time_budget_s=$$budget

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
