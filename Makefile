# Two entry points: `make run` (the main job on the embedded default) and `make test`.
# Each creates .venv and installs the project on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ptychobench-installed
# CI runs the slow tests too; a developer's default run skips them (see README).
ifeq ($(CI),true)
PYTEST_ARGS ?= -m "slow or not slow"
else
PYTEST_ARGS ?= -m "not slow"
endif

.PHONY: run test setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel
	# torch/torchvision first: these exact builds lie on this machine's disk (see README).
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	touch $@

run: $(STAMP)
	$(BIN)/ptychobench run $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS) $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
