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
Translate every interface file to .idl and parse it with ROS 2's own rosidl tools.

rosidl_adapter and rosidl_parser come from Debian's python3-rosidl (installed by scripts/setup.sh,
imported by the system Python, which is where apt puts them). This is what rosidl_generate_interfaces
does first on a ROS machine, so a .msg/.srv/.action that rosidl refuses fails here too. The C
generator is not run: Debian's package holds its code but not its templates (idl__struct.h.em, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
import shutil
import subprocess
import textwrap

import pytest

ROOT = Path(__file__).resolve().parents[1]
MSG_PKG = ROOT / 'msg'
SYSTEM_PYTHON = shutil.which('python3', path='/usr/bin:/bin') or '/usr/bin/python3'

TRANSLATE_AND_PARSE = textwrap.dedent("""
    import json, pathlib, sys
    from rosidl_adapter.action import convert_action_to_idl
    from rosidl_adapter.msg import convert_msg_to_idl
    from rosidl_adapter.srv import convert_srv_to_idl
    from rosidl_parser.definition import Action, IdlLocator, Message, Service
    from rosidl_parser.parser import parse_idl_file

    package, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    convert = {'msg': convert_msg_to_idl, 'srv': convert_srv_to_idl, 'action': convert_action_to_idl}
    found = {}

    def members(message):
        return [m.name for m in message.structure.members]

    for kind, function in convert.items():
        for path in sorted((package / kind).glob('*.' + kind)):
            function(package, 'tinyalign_msgs', pathlib.Path(kind) / path.name, out / kind)
            idl = parse_idl_file(IdlLocator(out, pathlib.Path(kind) / (path.stem + '.idl')))
            for element in idl.content.elements:
                if isinstance(element, Message):
                    parts = {'message': members(element)}
                elif isinstance(element, Service):
                    parts = {'request': members(element.request_message),
                             'response': members(element.response_message)}
                elif isinstance(element, Action):
                    parts = {'goal': members(element.goal), 'result': members(element.result),
                             'feedback': members(element.feedback)}
                else:
                    continue
                found[kind + '/' + path.name] = parts
    print(json.dumps(found))
""")


def _rosidl_available() -> bool:
    probe = subprocess.run([SYSTEM_PYTHON, '-c', 'import em, rosidl_adapter, rosidl_parser'], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope='module')
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[str]]]:
    if not _rosidl_available():
        pytest.skip('rosidl is not installed for the system Python: apt-get install python3-rosidl python3-empy '
                    '(scripts/setup.sh does)')
    out = tmp_path_factory.mktemp('idl')
    done = subprocess.run([SYSTEM_PYTHON, '-c', TRANSLATE_AND_PARSE, str(MSG_PKG), str(out)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fields(text: str) -> list[str]:
    """Field names of one .msg section (constants and comments left out)."""
    names = []
    for line in text.splitlines():
        line = line.split('#', 1)[0].strip()
        if line and '=' not in line.split()[-1] and len(line.split()) >= 2 and '=' not in line:
            names.append(line.split()[1])
    return names


def _interface_files() -> list[Path]:
    return sorted(p for kind in ('msg', 'srv', 'action') for p in (MSG_PKG / kind).glob('*.' + kind))


@pytest.mark.parametrize('path', _interface_files(), ids=lambda p: p.name)
def test_interface_translates_to_idl_and_parses(parsed: dict[str, dict[str, list[str]]], path: Path) -> None:
    key = f'{path.parent.name}/{path.name}'
    assert key in parsed, f'rosidl produced no definition for {key}'
    sections = path.read_text().split('\n---\n')
    expected = {'.msg': ('message',), '.srv': ('request', 'response'),
                '.action': ('goal', 'result', 'feedback')}[path.suffix]
    assert len(sections) == len(expected)
    for name, text in zip(expected, sections):
        fields = _fields(text) or ['structure_needs_at_least_one_member']  # rosidl's filler for empty ones
        assert parsed[key][name] == fields, (key, name)
