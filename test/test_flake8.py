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
ament_flake8 over the package, as `colcon test` runs it on a ROS 2 machine.

The real linter (see lint_runner.py for where it comes from) with ament's configuration and the
flake8 plugins a Jazzy machine has (builtins, comprehensions, docstrings, import-order, quotes);
the only project setting is the line length (120).
"""

from lint_runner import errors_by_file, LINE_LENGTH, PACKAGE_PATHS, ROS_LAYER_PATHS, run
import pytest


def _check(paths: tuple[str, ...]) -> None:
    rc, output = run('ament_flake8.main', ['--linelength', LINE_LENGTH, *paths])
    counts = errors_by_file(output)
    assert rc == 0, f'ament_flake8: {sum(counts.values())} errors in {len(counts)} files: {counts}\n{output[-4000:]}'


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8() -> None:
    _check(PACKAGE_PATHS)


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8_ros_layer() -> None:
    _check(ROS_LAYER_PATHS)
