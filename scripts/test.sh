#!/usr/bin/env bash
# The project's test command (`make test`): build the package with colcon and run every test under
# `colcon test`, the real-model ones included (only tests marked `slow` are skipped; run those with
# `.venv/bin/python -m pytest --slow test`). Exits non-zero when any test fails.
#
# Without ROS, colcon (from PyPI) builds and tests the ament_python package on its own: the
# interfaces package in msg/ is ament_cmake and needs a ROS installation (see docs/ros2.md).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
# shellcheck disable=SC1091
source "$VENV/bin/activate"
colcon build --base-paths . --event-handlers console_cohesion- status- summary+
colcon test --base-paths . --return-code-on-test-failure --event-handlers console_direct+ status- summary+ \
  --pytest-args -rs "$@"
colcon test-result --all
