#!/usr/bin/env bash
# Create (or reuse) the project's Python 3.10 virtual environment and link it as .venv.
# The environment is cached under $RESFORMER_CACHE (default ~/.cache/resformer-deploy),
# keyed by a hash of requirements.lock (every installed version; tests/test_dependency_pins.py
# checks pyproject.toml's pins are in it) and the Python version, so an unchanged lock reuses it
# and a changed one builds a fresh one from the registry. Other pyproject.toml edits (entry points,
# tool settings) only need the editable install below.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY_VERSION="$(tr -d '[:space:]' < "$ROOT/.python-version")"

find_python() {
  local c
  for c in "${PYENV_ROOT:-$HOME/.pyenv}/versions/$PY_VERSION/bin/python" \
           "$(command -v "python${PY_VERSION%.*}" 2>/dev/null || true)"; do
    if [ -n "$c" ] && [ -x "$c" ] && "$c" -c "import sys; sys.exit(sys.version_info[:2] != (3, 10))"; then
      echo "$c"; return 0
    fi
  done
  return 1
}
PYTHON="$(find_python)" || { echo "error: Python $PY_VERSION not found (needed by lava-nc/lava-dl); install it with 'pyenv install $PY_VERSION'" >&2; exit 1; }

CACHE="${RESFORMER_CACHE:-$HOME/.cache/resformer-deploy}"
KEY="$(sha256sum < "$ROOT/requirements.lock" | cut -c1-16)-$("$PYTHON" -c 'import platform; print(platform.python_version())')"
VENV="$CACHE/venv-$KEY"

if [ ! -f "$VENV/.complete" ]; then
  echo "bootstrap: building environment $VENV (first run: downloads torch, lava; a few minutes)" >&2
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3" "setuptools==84.2.1" "wheel==0.48.0"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.lock"
  touch "$VENV/.complete"
  # Old environments are several GB each: keep only the current one.
  find "$CACHE" -maxdepth 1 -name 'venv-*' ! -name "venv-$KEY" -exec rm -rf {} + 2>/dev/null || true
fi
# The project itself is installed editable each time (seconds): the cache may be shared by clones.
if ! out="$("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT" 2>&1)"; then
  echo "$out" >&2; echo "error: installing resformer-deploy into $VENV failed" >&2; exit 1
fi
ln -sfn "$VENV" "$ROOT/.venv"
