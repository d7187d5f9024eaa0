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

"""flake8 (from PyPI) over the project with the settings of test_flake8.py.

test_flake8.py runs ament_flake8 and only exists on ROS machines; this test gives the same
pyflakes/pycodestyle checks everywhere, so style and unused-name errors fail `make test` here too.
"""

from pathlib import Path

from flake8.api import legacy as flake8

ROOT = Path(__file__).resolve().parents[1]


def test_flake8_clean() -> None:
    style = flake8.get_style_guide(max_line_length=120, extend_ignore=['W503', 'W504'])
    paths = [str(ROOT / name) for name in ('src', 'test', 'launch', 'benchmarks')]
    report = style.check_files(paths)
    assert report.total_errors == 0, f'{report.total_errors} flake8 errors (run .venv/bin/flake8 --max-line-length 120)'
