#!/bin/sh
# Rebuild assets/ in one command: make (or reuse) a Python venv, install the pinned
# requirements (every package listed, so --no-deps), run scripts/build_assets.py.
#   scripts/build_assets.sh [build_assets.py options]
# ASSETS_VENV overrides the venv folder (default: .venv at the repository root, gitignored);
# PYTHON overrides the interpreter that creates it (default: python3, 3.11 or newer).
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${ASSETS_VENV:-"$repo/.venv"}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --no-deps -r "$repo/scripts/requirements-assets.txt"
exec "$venv/bin/python" "$repo/scripts/build_assets.py" "$@"
