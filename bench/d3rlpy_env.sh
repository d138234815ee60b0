#!/usr/bin/env bash
# Create (idempotently) a private virtualenv holding d3rlpy, used only by
# bench/d3rlpy_anchor.py to measure d3rlpy's training throughput as an anchor
# for our own RLlib implementations. d3rlpy is NOT a project dependency.
#
#   bash bench/d3rlpy_env.sh          # prints the venv's python on its last line
#
# Notes:
# - torch==2.13.0 (CPU build) is installed FIRST and explicitly: pip takes it
#   from the machine's local wheel store. If torch were pulled in only as a
#   dependency of d3rlpy ("torch>=2.5.0"), pip could pick a newer CUDA build
#   (several GB). With 2.13.0 already present the range is satisfied, so
#   nothing else is fetched. A constraints file pinning torch==2.13.0 is
#   passed to the d3rlpy install as a second guard.
# - d3rlpy 2.8.1 (latest at writing) requires: torch>=2.5.0, tqdm>=4.66.3,
#   h5py, gym>=0.26.0, click, typing-extensions, structlog, colorama,
#   dataclasses-json, gymnasium==1.0.0, scikit-learn. All of these resolve on
#   Python 3.11 next to torch 2.13.0, so a plain install (with deps) works; no
#   --no-deps workaround is needed. gym/gymnasium are only imported, no
#   environment is ever created.
# - Override the d3rlpy version with D3RLPY_SPEC (default "d3rlpy==2.8.1").
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."   # repo root

VENV="bench/.venv-d3rlpy"
TORCH_SPEC="torch==2.13.0"
D3RLPY_SPEC="${D3RLPY_SPEC:-d3rlpy==2.8.1}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

if [ ! -x "$VENV/bin/python" ]; then
    echo "[d3rlpy_env] creating $VENV with $PY" >&2
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

pip_q() { "$VPY" -m pip --disable-pip-version-check -q "$@"; }

if ! "$VPY" -c 'import torch, sys; sys.exit(0 if torch.__version__.split("+")[0] == "2.13.0" else 1)' >/dev/null 2>&1; then
    echo "[d3rlpy_env] installing $TORCH_SPEC" >&2
    pip_q install "$TORCH_SPEC" >&2
fi

want="${D3RLPY_SPEC#d3rlpy==}"
have="$("$VPY" -c 'import importlib.metadata as m; print(m.version("d3rlpy"))' 2>/dev/null || true)"
if [ -z "$have" ] || { [ "$want" != "$D3RLPY_SPEC" ] && [ "$have" != "$want" ]; }; then
    echo "[d3rlpy_env] installing $D3RLPY_SPEC" >&2
    cons="$(mktemp)"
    trap 'rm -f "$cons"' EXIT
    echo "$TORCH_SPEC" >"$cons"
    # Our -c is ignored for build envs, but every dep here ships a wheel.
    pip_q install -c "$cons" "$D3RLPY_SPEC" >&2
fi

# sanity check: imports work and torch is still the CPU 2.13.0 build
"$VPY" -c 'import torch, d3rlpy; assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__; print(f"[d3rlpy_env] d3rlpy {d3rlpy.__version__}, torch {torch.__version__}, cuda={torch.cuda.is_available()}")' >&2

echo "$(pwd)/$VPY"
