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
pycodestyle and pyflakes over the project, without flake8's plugin loading.

flake8 loads every plugin installed in the environment (a ROS machine has several system-wide),
so the same settings would report different codes on different machines. This test runs the two
checkers it needs directly; the ament linters (test_flake8.py, test_pep257.py) add the rest.
"""

from __future__ import annotations

import io
from pathlib import Path

import pycodestyle
from pyflakes.api import checkRecursive
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parents[1]
PATHS = [str(ROOT / name) for name in ('src', 'test', 'launch', 'benchmarks')]


def test_pycodestyle_clean() -> None:
    ignore = ['W503', 'W504', 'E121', 'E123', 'E126', 'E226', 'E24', 'E704']  # pycodestyle's defaults
    style = pycodestyle.StyleGuide(max_line_length=120, ignore=ignore, quiet=True)
    report = style.check_files(PATHS)
    assert report.total_errors == 0, f'{report.total_errors} pycodestyle errors: {report.counters}'


class _NoqaReporter(Reporter):
    """Keeps the warnings whose line has no ``# noqa`` (flake8 honours it; pyflakes alone does not)."""

    def __init__(self) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        super().__init__(self.out, self.err)
        self.kept = 0

    def flake(self, message: object) -> None:
        lines = Path(message.filename).read_text(encoding='utf-8').splitlines()
        if '# noqa' not in lines[message.lineno - 1]:
            self.kept += 1
            super().flake(message)


def test_pyflakes_clean() -> None:
    reporter = _NoqaReporter()
    checkRecursive(PATHS, reporter)
    assert reporter.kept == 0, f'{reporter.kept} pyflakes warnings:\n{reporter.out.getvalue()}{reporter.err.getvalue()}'
