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
The engine never imports the ROS glue: nothing outside ``nodes/`` imports ``nodes/`` or rclpy.

The nodes translate messages and parameters into engine calls; the engine (and the CLI) must load
and run on a machine without ROS. Placement alone used to break this rule, so it is checked here on
the source text (``ast``), including imports inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / 'src'
PACKAGE = SRC / 'tinyalign_ros'
NODES = PACKAGE / 'nodes'


def engine_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob('*.py') if NODES not in p.parents)


def imported_modules(path: Path, root: Path = SRC) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` (under source root ``root``); relative ones resolved."""
    package = '.'.join(path.relative_to(root).with_suffix('').parts)
    if path.name != '__init__.py':
        package = package.rpartition('.')[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                module = '.'.join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ''
            found.append((node.lineno, module))
            found += [(node.lineno, f'{module}.{alias.name}') for alias in node.names]
    return found


def test_there_are_engine_modules_to_check() -> None:
    names = {p.relative_to(PACKAGE).as_posix() for p in engine_modules()}
    assert {'pipeline.py', 'rosbag.py', 'personalization/api.py'} <= names


@pytest.mark.parametrize('path', engine_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_the_engine_does_not_import_the_nodes(path: Path) -> None:
    bad = [(line, name) for line, name in imported_modules(path)
           if name == 'tinyalign_ros.nodes' or name.startswith('tinyalign_ros.nodes.')]
    assert not bad, f'{path.relative_to(SRC)} imports the ROS glue: {bad}'


@pytest.mark.parametrize('path', engine_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_only_the_nodes_import_rclpy(path: Path) -> None:
    bad = [(line, name) for line, name in imported_modules(path) if name == 'rclpy' or name.startswith('rclpy.')]
    assert not bad, f'{path.relative_to(SRC)} imports rclpy: {bad}'


def test_the_check_sees_relative_and_late_imports(tmp_path: Path) -> None:
    """The checker resolves ``from ..nodes import x`` and finds imports inside functions."""
    module = tmp_path / 'tinyalign_ros' / 'personalization' / 'job.py'
    module.parent.mkdir(parents=True)
    module.write_text('def f():\n    from ..nodes import ros_audio\n    import rclpy.node\n')
    names = [name for _line, name in imported_modules(module, tmp_path)]
    assert 'tinyalign_ros.nodes' in names and 'tinyalign_ros.nodes.ros_audio' in names and 'rclpy.node' in names
