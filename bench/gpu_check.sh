#!/usr/bin/env bash
# GPU check (issue 28 item 5): every GPU path of the platform (a Ray Train worker, the CQL and DT
# RLlib learners, a Tune sweep of GPU trials, Serve's DT replica on num_gpus), GPU vs CPU, on tiny
# data; writes bench/results/gpu_check.json. Without a usable GPU it runs every path on the CPU,
# records "gpu": null and how each GPU flag degrades, and exits 0. Budget: <= 8 min on one GPU.
#
#   sh bench/gpu_check.sh            # the check (1,000 Serve entries)
#   sh bench/gpu_check.sh --smoke    # tiny budgets for every path (~1 min on 2 cores)
#
# Other options: python bench/gpu_check.py --help. On a GPU machine torch must be a CUDA build
# (the README's torch==2.13.0+cpu sees no device: the JSON says so).
set -eu
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/python ]; then
    PYTHON=.venv/bin/python
fi
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}" PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" bench/gpu_check.py "$@"
