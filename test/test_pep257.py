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

"""ament_pep257 (docstring conventions) over the package, as `colcon test` runs it on ROS 2."""

from lint_runner import errors_by_file, PACKAGE_PATHS, ROS_LAYER_PATHS, run
import pytest


def _check(paths: tuple[str, ...]) -> None:
    rc, output = run('ament_pep257.main', list(paths))
    counts = errors_by_file(output)
    assert rc == 0, f'ament_pep257: {sum(counts.values())} errors in {len(counts)} files: {counts}\n{output[-4000:]}'


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257() -> None:
    _check(PACKAGE_PATHS)


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257_ros_layer() -> None:
    _check(ROS_LAYER_PATHS)
