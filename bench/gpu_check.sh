#!/usr/bin/env bash
# One command that checks a GPU machine (issue 19), at most 8 minutes:
#
#     bash bench/gpu_check.sh            # from anywhere; PYTHON=python3.12 to choose the interpreter
#
# Needs Python 3.11 or 3.12 with a CUDA build of torch (>= 2.11) and numpy, scipy, pandas,
# pyarrow, scikit-learn, pyyaml, tqdm. Nothing is installed: the package comes from
# PYTHONPATH=platform; Ray, DVC, Optuna, Plotly and LightGBM are never imported. Exit 0: every
# check passed; 1: a check failed or CUDA is absent (one line says which); 124: over 8 minutes.
# What it checks and prints: bench/gpu_check.py's docstring.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="platform${PYTHONPATH:+:$PYTHONPATH}"
status=0
timeout 480 "$PYTHON" bench/gpu_check.py "$@" || status=$?
if [ "$status" -eq 124 ]; then
    echo "gpu_check: FAIL: did not finish within 8 minutes (timeout 480 s)"
fi
exit "$status"
