# Copyright 2026 The tinyalign_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
Run the real ament linters (ament_flake8, ament_pep257) the way `colcon test` does on ROS 2.

On a ROS machine they are importable as installed. Elsewhere scripts/setup.sh installs the pinned
set of requirements-lint.lock into .lint/ (pip --target: ament-lint-flake8 needs flake8 4.0.1, which
conflicts with the flake8 of the main environment) and they run from there, in a subprocess.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
import re
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_SITE = ROOT / '.lint'
# The package as colcon test lints it (the repository root is the ament_python package).
PACKAGE_PATHS = ('src', 'test', 'launch', 'setup.py')
# The ROS layer: nodes, launch file, rclpy stand-in and the node, launch and interface tests.
ROS_LAYER_PATHS = (
    'src/tinyalign_ros/nodes', 'launch', 'test/rclpy_standin', 'test/ros_env.py',
    'test/lint_runner.py', 'test/test_assistant_node.py', 'test/test_personalize_action.py',
    'test/test_launch.py', 'test/test_interfaces.py', 'test/test_ros_audio.py', 'test/test_rosbag_replay.py',
    'test/test_flake8.py', 'test/test_pep257.py', 'test/test_style.py', 'test/test_rosidl.py',
)
# The project's one setting that differs from ament's defaults (ament_flake8's --linelength, as
# ament_cmake_flake8's MAX_LINE_LENGTH): lines up to 120 characters.
LINE_LENGTH = '120'
ERROR_LINE = re.compile(r'^(?P<path>[^\s:]+\.py):\d+(?::\d+)?:? ')


def environment(module: str) -> dict[str, str] | None:
    """Environment that makes ``module`` importable, or None when it is installed nowhere."""
    env = dict(os.environ)
    package = module.split('.')[0]
    if importlib.util.find_spec(package) is not None:
        return env
    if (LINT_SITE / package).is_dir():
        env['PYTHONPATH'] = os.pathsep.join([str(LINT_SITE)] + [p for p in [env.get('PYTHONPATH')] if p])
        return env
    return None


def run(module: str, args: list[str]) -> tuple[int, str]:
    """Run ``python -m module args`` from the repository root; skip when the linter is missing."""
    env = environment(module)
    if env is None:
        pytest.skip(f'{module} is not installed: run scripts/setup.sh (it installs requirements-lint.lock '
                    'into .lint/) or source ROS 2')
    done = subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


def errors_by_file(output: str) -> dict[str, int]:
    """How many reported errors each file has (for the failure message)."""
    counts: dict[str, int] = {}
    for line in output.splitlines():
        match = ERROR_LINE.match(line)
        if match:
            counts[match['path']] = counts.get(match['path'], 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))
