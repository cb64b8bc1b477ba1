# Every target does its own set-up: a fresh clone needs only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNS ?= runs
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv install demo report test lint bench clean

venv: $(BIN)/python
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall only when setup.py changes.
$(STAMP): setup.py | $(BIN)/python
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)
install: $(STAMP)

# The demo suite (analysis/claims.py DEMO_CLAIMS: C1, C5, C7, C8, C9, C13 over
# 3 seeds, offline), then its report. Run again: finished runs are reused.
WORKERS ?= 2
demo: install
	$(BIN)/python -m trainers.suite --suite=demo --workers=$(WORKERS) --output_dir=$(RUNS)/demo
	$(BIN)/python -m analysis.report --runs=$(RUNS)/demo --out=$(RUNS)/demo-report

# Every claim of the quick suite over 3 seeds, then its report.
report: install
	$(BIN)/python -m trainers.suite --suite=quick --workers=$(WORKERS) --output_dir=$(RUNS)/quick
	$(BIN)/python -m analysis.report --runs=$(RUNS)/quick --out=$(RUNS)/quick-report

# Keras 3.15 trips over NumPy 2's __array__(copy=) protocol on every
# Variable-to-NumPy conversion; that warning is theirs, not ours. Two worker
# processes (one per core; each imports TensorFlow once), files kept whole.
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=15 \
		-W "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning" tests

lint: install
	$(BIN)/ruff format --check --line-length 88 zoo trainers analysis tests
	$(BIN)/ruff check --line-length 88 --select E,F,W,I,B,UP --ignore B905 zoo trainers analysis tests

# Steps/s of the instrumented step next to model.fit, a bare tape and PyTorch
# (about 4 minutes on 2 cores). PyTorch is an optional extra: without it,
# case (e) is skipped with a message.
bench: install
	$(BIN)/pip install -q -e ".[bench]" || echo "torch not installed: case (e) is skipped"
	$(BIN)/python -m trainers.benchmark --output_json=$(RUNS)/bench.json

clean:
	rm -rf $(VENV) $(RUNS) *.egg-info
