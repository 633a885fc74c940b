# The two commands a newcomer needs: `make repro` (the study) and `make test` (the tests).
# Both create .venv if missing and install the exact pinned versions first; `make test` also
# installs Chromium for the dashboard test, or says how to (requirements/system-packages.sh).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: repro test test-faults test-audit bench lint install system-packages clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	# torch first and alone: its pin resolves to the CPU wheel on this machine's disk.
	$(BIN)/pip install --quiet -c requirements/constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c requirements/constraints.txt -e ".[test]"
	touch $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro

test: $(STAMP) system-packages
	$(BIN)/python -m pytest

# the fault-injection test (kills a sweep at 21 points, local and S3), left out of `make test`
test-faults: $(STAMP)
	$(BIN)/python -m pytest -m faults tests/sweep/test_faults.py

# the convergence audit on the default corpus (stage 1 and a member of each variant, continued
# with patience 10: 5-12 minutes), left out of `make test`
test-audit: $(STAMP)
	$(BIN)/python -m pytest -m audit -s tests/train/test_default_audit.py

system-packages:
	@bash requirements/system-packages.sh

# OMP_WAIT_POLICY as `icdtransfer` sets it (platform/icdtransfer/cli.py), unless set.
# bench/gpu_check.py is for GPU machines (bash bench/gpu_check.sh) and fails without CUDA.
bench: $(STAMP)
	@set -e; for script in bench/*.py; do \
	  case $$script in bench/gpu_check.py) continue;; esac; echo "== $$script"; \
	  OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(BIN)/python $$script; done

lint: $(STAMP)
	$(BIN)/ruff check platform tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
