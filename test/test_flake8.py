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

"""ament_flake8 over the package, as `colcon test` runs it on a ROS 2 machine.

Skipped where ament_flake8 is not installed (it is a ROS package, not on PyPI). ament's own
configuration is used with the project's two conventions: lines up to 120 characters, and imports
grouped and sorted the isort way (``import x`` before ``from x import y`` in a group), which
ament's google import-order style would flag (I100/I201).
"""

from pathlib import Path

import pytest

ament_flake8 = pytest.importorskip('ament_flake8.main', reason='ament_flake8 is not installed (ROS 2 only)')

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """[flake8]
extend-ignore = B902,C816,D100,D101,D102,D103,D104,D105,D106,D107,D203,D212,D404,I100,I201,I202
import-order-style = google
max-line-length = 120
show-source = true
statistics = true
"""


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8(tmp_path: Path) -> None:
    config = tmp_path / 'flake8.ini'
    config.write_text(CONFIG)
    paths = [str(ROOT / name) for name in ('src', 'test', 'launch')]
    rc, errors = ament_flake8.main_with_errors(argv=['--config', str(config), *paths])
    assert rc == 0, f'Found {len(errors)} code style errors / warnings:\n' + '\n'.join(errors)
