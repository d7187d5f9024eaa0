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

"""The tinyalign_msgs interface files parse with a ROS IDL parser and say what the nodes rely on."""

from __future__ import annotations

from pathlib import Path
import re
import xml.etree.ElementTree as ET

import pytest
import ros_env  # noqa: F401  (makes the interface packages importable: real ROS or the stand-in)
from rosbags.typesys import get_types_from_msg

ROOT = Path(__file__).resolve().parents[1]
MSG_PKG = ROOT / 'msg'
STANDIN_INTERFACES = ROOT / 'test' / 'rclpy_standin' / 'interfaces'


def sections(path: Path, n: int) -> list[str]:
    parts: list[list[str]] = [[]]
    for line in path.read_text().splitlines():
        if line.strip() == '---':
            parts.append([])
        else:
            parts[-1].append(line)
    assert len(parts) == n, f'{path.name}: expected {n} sections, found {len(parts)}'
    return ['\n'.join(p) + '\n' for p in parts]


def parse(text: str, name: str) -> tuple[dict[str, tuple[str, object]], dict[str, object]]:
    """(constants by name, field specs by name) of one message text."""
    (consts, fields), = get_types_from_msg(text, name).values()
    return {c[0]: (c[1], c[2]) for c in consts}, dict(fields)


def interface_files() -> list[Path]:
    return sorted(p for sub in ('msg', 'srv', 'action') for p in (MSG_PKG / sub).glob('*.*'))


@pytest.mark.parametrize('path', interface_files(), ids=lambda p: p.name)
def test_every_interface_file_parses(path: Path) -> None:
    n = {'.msg': 1, '.srv': 2, '.action': 3}[path.suffix]
    for index, text in enumerate(sections(path, n)):
        consts, fields = parse(text, f'tinyalign_msgs/{path.suffix[1:]}/{path.stem}_{index}')
        assert fields or consts or path.suffix != '.msg', f'{path.name} section {index} is empty'
        for name in fields:
            assert re.fullmatch(r'[a-z][a-z0-9_]*', name), f'{path.name}: field {name!r} is not snake_case'
        for name in consts:
            assert re.fullmatch(r'[A-Z][A-Z0-9_]*', name), f'{path.name}: constant {name!r} is not UPPER_CASE'


def test_assistant_response_fields() -> None:
    text = (MSG_PKG / 'msg' / 'AssistantResponse.msg').read_text()
    consts, fields = parse(text, 'tinyalign_msgs/msg/AssistantResponse')
    for name in ('header', 'utterance_id', 'text', 'mode', 'operator_id', 'adapter_id', 'audio_duration_s',
                 'encode_ms', 'project_ms', 'first_token_ms', 'total_ms', 'truncated'):
        assert name in fields, name
    assert fields['header'][1] == 'std_msgs/msg/Header'
    assert consts['MODE_ALIGNED'] == ('string', 'aligned') and consts['MODE_CASCADE'] == ('string', 'cascade')


def test_personalize_action_sections() -> None:
    goal, result, feedback = sections(MSG_PKG / 'action' / 'Personalize.action', 3)
    goal_consts, goal_fields = parse(goal, 'tinyalign_msgs/action/Personalize_Goal')
    assert {'operator_id', 'source', 'path', 'topics', 'max_utterances', 'max_record_s', 'max_train_s',
            'max_steps', 'holdout', 'objective'} <= set(goal_fields)
    sources = {k: v[1] for k, v in goal_consts.items() if k.startswith('SOURCE_')}
    assert sources == {'SOURCE_RECORD': 0, 'SOURCE_FOLDER': 1, 'SOURCE_ROSBAG': 2}
    _c, result_fields = parse(result, 'tinyalign_msgs/action/Personalize_Result')
    assert {'success', 'accepted', 'message', 'adapter_id', 'metrics_before', 'metrics_after',
            'record_s', 'train_s', 'total_s'} <= set(result_fields)
    assert result_fields['metrics_before'][1][0][1] == 'tinyalign_msgs/msg/Metric'
    fb_consts, fb_fields = parse(feedback, 'tinyalign_msgs/action/Personalize_Feedback')
    assert {'phase', 'progress', 'step', 'loss', 'eta_s', 'prompt', 'utterances_recorded'} <= set(fb_fields)
    from tinyalign_ros.personalization.api import PHASES
    assert sorted(v[1] for k, v in fb_consts.items() if k.startswith('PHASE_')) == sorted(PHASES)


def test_services_have_request_and_response() -> None:
    request, response = sections(MSG_PKG / 'srv' / 'ActivateAdapter.srv', 2)
    consts, fields = parse(request, 'tinyalign_msgs/srv/ActivateAdapter_Request')
    assert consts['ACTIVATE'] == ('uint8', 0) and consts['ROLLBACK'] == ('uint8', 1)
    assert {'operator_id', 'action', 'adapter_id'} <= set(fields)
    _c, fields = parse(response, 'tinyalign_msgs/srv/ActivateAdapter_Response')
    assert {'success', 'message', 'active_adapter_id', 'previous_adapter_id'} <= set(fields)
    _req, response = sections(MSG_PKG / 'srv' / 'ListAdapters.srv', 2)
    _c, fields = parse(response, 'tinyalign_msgs/srv/ListAdapters_Response')
    assert fields['adapters'][1][0][1] == 'tinyalign_msgs/msg/AdapterInfo'


def test_cmake_and_package_xml_list_every_interface() -> None:
    cmake = (MSG_PKG / 'CMakeLists.txt').read_text()
    listed = set(re.findall(r'"((?:msg|srv|action)/\w+\.(?:msg|srv|action))"', cmake))
    on_disk = {str(p.relative_to(MSG_PKG)) for p in interface_files()}
    assert listed == on_disk
    assert 'rosidl_generate_interfaces(${PROJECT_NAME}' in cmake
    root = ET.parse(MSG_PKG / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == 'tinyalign_msgs'
    assert root.findtext('member_of_group') == 'rosidl_interface_packages'
    assert root.find('export').findtext('build_type') == 'ament_cmake'
    depends = {e.text for e in root if e.tag in ('depend', 'build_depend', 'exec_depend')}
    used = set(re.findall(r'^(\w+)/\w+ ', '\n'.join(p.read_text() for p in interface_files()), re.M))
    used.discard('tinyalign_msgs')
    assert used <= depends, f'interfaces use {used - depends} without depending on it'
    assert 'action_msgs' in depends and 'rosidl_default_runtime' in depends


def test_generated_classes_match_the_files() -> None:
    """The importable classes (stand-in generated, or rosidl's on real ROS) have the files' fields."""
    from tinyalign_msgs.action import Personalize
    from tinyalign_msgs.msg import AssistantResponse
    from tinyalign_msgs.srv import ActivateAdapter

    text = (MSG_PKG / 'msg' / 'AssistantResponse.msg').read_text()
    _c, fields = parse(text, 'tinyalign_msgs/msg/AssistantResponse')
    assert list(AssistantResponse.get_fields_and_field_types()) == list(fields)
    goal, _result, feedback = sections(MSG_PKG / 'action' / 'Personalize.action', 3)
    assert list(Personalize.Goal.get_fields_and_field_types()) == list(parse(goal, 'x/msg/G')[1])
    assert list(Personalize.Feedback.get_fields_and_field_types()) == list(parse(feedback, 'x/msg/F')[1])
    assert Personalize.Goal.SOURCE_ROSBAG == 2 and ActivateAdapter.Request.ROLLBACK == 1
    assert AssistantResponse.MODE_CASCADE == 'cascade'


def test_embedded_audio_definitions_match_the_interface_files() -> None:
    """The rosbag module's definitions (used to read Humble bags) equal the audio_common_msgs of each flavour."""
    from tinyalign_ros.rosbag import MSG_DEFINITIONS

    for flavour, definitions in MSG_DEFINITIONS.items():
        folder = STANDIN_INTERFACES / 'audio_common_msgs' / flavour / 'msg'
        assert {f'audio_common_msgs/msg/{p.stem}' for p in folder.glob('*.msg')} == set(definitions)
        for name, text in definitions.items():
            on_disk = (folder / f'{name.rsplit("/", 1)[1]}.msg').read_text()
            assert parse(text, name) == parse(on_disk, name), name


# Keys that resolve in rosdistro's rosdep database (rosdep/base.yaml, rosdep/python.yaml) or are
# released ROS packages. ``rosdep install`` stops at the first key it cannot resolve, so a key
# outside this list (``espeak-ng`` is one: base.yaml only has ``espeak``) must be an apt install
# documented in docs/ros2.md instead.
ROSDEP_SYSTEM_KEYS = frozenset({
    'python3-numpy', 'python3-yaml', 'python3-psutil', 'python3-matplotlib', 'python3-tqdm',
    'python3-pytest', 'espeak',
})
ROS_PACKAGES = frozenset({
    'rclpy', 'rcl_interfaces', 'std_msgs', 'diagnostic_msgs', 'audio_common_msgs', 'launch', 'launch_ros',
    'builtin_interfaces', 'action_msgs', 'ament_cmake', 'rosidl_default_generators', 'rosidl_default_runtime',
    'ament_copyright', 'ament_flake8', 'ament_pep257', 'launch_testing', 'launch_testing_ros',
    'tinyalign_msgs',
})
DEPEND_TAGS = ('depend', 'build_depend', 'buildtool_depend', 'exec_depend', 'test_depend', 'build_export_depend')


def _depends(package_xml: Path) -> list[tuple[str, str]]:
    root = ET.parse(package_xml).getroot()
    return [(e.tag, (e.text or '').strip()) for e in root if e.tag in DEPEND_TAGS]


@pytest.mark.parametrize('package_xml', [ROOT / 'package.xml', MSG_PKG / 'package.xml'], ids=['root', 'msg'])
def test_every_dependency_is_a_rosdep_key(package_xml: Path) -> None:
    unknown = sorted({key for _tag, key in _depends(package_xml)} - ROSDEP_SYSTEM_KEYS - ROS_PACKAGES)
    assert not unknown, f'{package_xml.parent.name}/package.xml: {unknown} are not rosdep keys'


@pytest.mark.parametrize('package_xml', [ROOT / 'package.xml', MSG_PKG / 'package.xml'], ids=['root', 'msg'])
def test_no_dependency_is_listed_twice(package_xml: Path) -> None:
    """One tag per key: ``<depend>`` already covers build, build-export and exec."""
    keys = [key for _tag, key in _depends(package_xml)]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    assert not duplicates, f'{package_xml.parent.name}/package.xml lists {duplicates} more than once'


def test_every_ros_module_the_nodes_import_is_an_exec_depend() -> None:
    import ast

    exec_keys = {key for tag, key in _depends(ROOT / 'package.xml') if tag in ('depend', 'exec_depend')}
    imported = set()
    nodes = ROOT / 'src' / 'tinyalign_ros' / 'nodes'
    for path in list(nodes.glob('*.py')) + [ROOT / 'launch' / 'assistant.launch.py']:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split('.')[0])
            elif isinstance(node, ast.Import):
                imported.update(alias.name.split('.')[0] for alias in node.names)
    missing = sorted((imported & ROS_PACKAGES) - exec_keys)
    assert not missing, f'the nodes import {missing} but package.xml has no exec_depend on them'
