#!/usr/bin/env bash
# The project's test command: every test, the real-model ones included (only `slow` ones are skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
exec "$VENV/bin/python" -m pytest -q -rs test "$@"
