# Two entry points for a fresh machine (see README):
#   make repro   set up .venv (pinned torch + requirements) and run the pipeline (dvc repro)
#   make test    set up .venv if needed (with the optional W&B extra, so its offline test runs) and run the test suite
#   make study DATASET=fashion_mnist   queue and run studies/$(DATASET).yaml, then write reports/$(DATASET)/
VENV ?= .venv
PY := $(VENV)/bin/python
export DVC_NO_ANALYTICS := 1
export PYTHONUNBUFFERED := 1

DATASET ?= fashion_mnist

.PHONY: setup repro test bench study

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

repro: setup
	. $(VENV)/bin/activate && dvc repro

$(VENV)/.installed-wandb: requirements-wandb.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-wandb.txt
	touch $@

test: setup $(VENV)/.installed-wandb
	. $(VENV)/bin/activate && python -m pytest

bench: setup
	. $(VENV)/bin/activate && for b in bench/bench_*.py; do echo "== $$b"; python $$b --quick || exit 1; done

study: setup
	. $(VENV)/bin/activate && python -m stages.study --study studies/$(DATASET).yaml
