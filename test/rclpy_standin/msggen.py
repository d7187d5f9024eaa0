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
Python message classes generated from ROS interface text (.msg/.srv/.action), like rosidl_python.

The definitions are parsed with the rosbags msg parser (the same grammar ROS uses), never
hand-written, so the stand-in's ``tinyalign_msgs`` are exactly the files in ``msg/`` of this repo.
The generated classes copy the behaviour of rosidl_python's generated code that nodes can trip over:

- keyword-only construction; unknown keyword arguments are refused;
- each field setter checks the value like rosidl's debug asserts do: ``float`` fields refuse ints
  and numpy scalars other than float64, integer fields check their range, nested fields check the
  class, numeric sequences are ``array.array`` (a numpy array is refused), fixed numeric arrays
  are numpy arrays of the exact length;
- constants are class attributes; ``get_fields_and_field_types()`` lists the fields.

Services get ``Request``/``Response`` and actions ``Goal``/``Result``/``Feedback`` plus the
``Impl`` namespace (``SendGoalService``, ``GetResultService``, ``FeedbackMessage``,
``CancelGoalService``, ``GoalStatusMessage``) that rclpy's action code uses.
"""

from __future__ import annotations

import array
from collections import UserList, UserString
from collections.abc import Sequence, Set
import importlib
import importlib.abc
import importlib.machinery
import math
from pathlib import Path
import sys
import types
from typing import Any, Callable

import numpy as np
from rosbags.typesys import get_types_from_msg
from rosbags.typesys.base import Nodetype

HERE = Path(__file__).resolve().parent
INTERFACES = HERE / 'interfaces'
REPO_MSG = HERE.parents[1] / 'msg'

# rosidl_python's array.array type codes and value ranges for numeric types.
TYPECODES = {
    'int8': 'b', 'uint8': 'B', 'int16': 'h', 'uint16': 'H', 'int32': 'i', 'uint32': 'I',
    'int64': 'q', 'uint64': 'Q', 'float32': 'f', 'float64': 'd',
}
INT_RANGES = {
    'int8': (-2**7, 2**7 - 1), 'uint8': (0, 2**8 - 1), 'int16': (-2**15, 2**15 - 1),
    'uint16': (0, 2**16 - 1), 'int32': (-2**31, 2**31 - 1), 'uint32': (0, 2**32 - 1),
    'int64': (-2**63, 2**63 - 1), 'uint64': (0, 2**64 - 1), 'byte': (0, 255), 'char': (0, 255),
}
FLOAT32_MAX = 3.402823466e+38
NUMPY_DTYPES = {name: np.dtype(code) for name, code in TYPECODES.items()}


# -- where definitions live -------------------------------------------------------------------
def _definition_dirs(audio_flavour: str) -> dict[str, Path]:
    """Package name -> its folder holding msg/, srv/ and action/ subfolders."""
    dirs = {p.name: p for p in INTERFACES.iterdir() if p.is_dir() and p.name != 'audio_common_msgs'}
    dirs['audio_common_msgs'] = INTERFACES / 'audio_common_msgs' / audio_flavour
    dirs['tinyalign_msgs'] = REPO_MSG
    return dirs


def audio_flavours() -> list[str]:
    return sorted(p.name for p in (INTERFACES / 'audio_common_msgs').iterdir() if p.is_dir())


def split_sections(text: str, n: int, path: Path) -> list[str]:
    """Split .srv (2 parts) or .action (3 parts) text on its ``---`` separator lines."""
    parts: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip() == '---':
            parts.append([])
        else:
            parts[-1].append(line)
    if len(parts) != n:
        raise ValueError(f'{path}: expected {n} sections separated by ---, found {len(parts)}')
    return ['\n'.join(p) + '\n' for p in parts]


# -- field checks -----------------------------------------------------------------------------
def _is_sequence(value: Any) -> bool:
    return ((isinstance(value, (Sequence, Set, UserList)))
            and not isinstance(value, (str, UserString)))


class Field:
    """One field of a generated message: its default and its setter check."""

    def __init__(self, name: str, spec: tuple, resolve: Callable[[str], type]) -> None:
        self.name = name
        self.kind, self.detail = spec
        self._resolve = resolve
        self.type_string = self._type_string()

    # The nested class is resolved lazily: definitions may refer to each other in any order.
    def nested(self, typename: str) -> type:
        return self._resolve(typename)

    def _type_string(self) -> str:
        def base(spec: tuple) -> str:
            kind, detail = spec
            if kind == Nodetype.BASE:
                name, bound = detail
                return f'{name}<={bound}' if bound else name
            pkg, _, name = detail.split('/')
            return f'{pkg}/{name}'
        if self.kind in (Nodetype.BASE, Nodetype.NAME):
            return base((self.kind, self.detail))
        elem, count = self.detail
        if self.kind == Nodetype.ARRAY:
            return f'{base(elem)}[{count}]'
        return f'sequence<{base(elem)}, {count}>' if count else f'sequence<{base(elem)}>'

    def default(self) -> Any:
        if self.kind == Nodetype.BASE:
            return _base_default(self.detail[0])
        if self.kind == Nodetype.NAME:
            return self.nested(self.detail)()
        (ekind, edetail), count = self.detail
        if self.kind == Nodetype.ARRAY:
            if ekind == Nodetype.BASE and edetail[0] in TYPECODES:
                return np.zeros(count, dtype=NUMPY_DTYPES[edetail[0]])
            if ekind == Nodetype.BASE:
                return [_base_default(edetail[0]) for _ in range(count)]
            return [self.nested(edetail)() for _ in range(count)]
        if ekind == Nodetype.BASE and edetail[0] in TYPECODES:
            return array.array(TYPECODES[edetail[0]])
        return []

    def check(self, value: Any) -> Any:
        """Return the value to store, or raise AssertionError like rosidl's debug checks."""
        name = self.name
        if self.kind == Nodetype.BASE:
            return _check_base(name, self.detail, value)
        if self.kind == Nodetype.NAME:
            cls = self.nested(self.detail)
            assert isinstance(value, cls), f"The '{name}' field must be a sub message of type '{cls.__name__}'"
            return value
        (ekind, edetail), count = self.detail
        numeric = ekind == Nodetype.BASE and edetail[0] in TYPECODES
        if self.kind == Nodetype.ARRAY:
            if numeric and isinstance(value, np.ndarray):
                assert value.dtype == NUMPY_DTYPES[edetail[0]], \
                    f"The '{name}' numpy.ndarray() must have the dtype of '{NUMPY_DTYPES[edetail[0]]}'"
                assert value.size == count, f"The '{name}' numpy.ndarray() must have a size of {count}"
                return value
            assert _is_sequence(value) and len(value) == count, \
                f"The '{name}' field must be a set or sequence with length {count}"
            items = [self._check_item(v) for v in value]
            return np.array(items, dtype=NUMPY_DTYPES[edetail[0]]) if numeric else list(items)
        if numeric and isinstance(value, array.array):
            assert value.typecode == TYPECODES[edetail[0]], \
                f"The '{name}' array.array() must have the type code of '{TYPECODES[edetail[0]]}'"
            assert not count or len(value) <= count, f"The '{name}' field must have at most {count} items"
            return value
        assert _is_sequence(value), \
            f"The '{name}' field must be a set or sequence (numpy arrays are not accepted)"
        assert not count or len(value) <= count, f"The '{name}' field must have at most {count} items"
        items = [self._check_item(v) for v in value]
        if numeric:
            return array.array(TYPECODES[edetail[0]], items)
        return value if isinstance(value, list) else list(items)

    def _check_item(self, value: Any) -> Any:
        (ekind, edetail), _count = self.detail
        if ekind == Nodetype.BASE:
            return _check_base(self.name, edetail, value)
        cls = self.nested(edetail)
        assert isinstance(value, cls), f"The '{self.name}' field must hold '{cls.__name__}' items"
        return value


def _base_default(typename: str) -> Any:
    if typename == 'bool':
        return False
    if typename in ('float32', 'float64'):
        return 0.0
    if typename in ('string', 'wstring'):
        return ''
    if typename == 'byte':
        return b'\x00'
    if typename == 'char':
        return '\x00'
    return 0


def _check_base(name: str, detail: tuple, value: Any) -> Any:
    typename, bound = detail
    if typename == 'bool':
        assert isinstance(value, bool), f"The '{name}' field must be of type 'bool'"
    elif typename in ('float32', 'float64'):
        assert isinstance(value, float), f"The '{name}' field must be of type 'float'"
        if typename == 'float32':
            assert not (value < -FLOAT32_MAX or value > FLOAT32_MAX) or math.isinf(value), \
                f"The '{name}' field must be a float in [-3.402823466e+38, 3.402823466e+38]"
    elif typename in ('string', 'wstring'):
        assert isinstance(value, str), f"The '{name}' field must be of type 'str'"
        assert not bound or len(value) <= bound, f"The '{name}' field must be at most {bound} characters"
    elif typename == 'byte':
        assert isinstance(value, bytes) and len(value) == 1, f"The '{name}' field must be of type 'bytes' of length 1"
    elif typename == 'char':
        assert isinstance(value, str) and len(value) == 1, f"The '{name}' field must be a character"
    else:
        low, high = INT_RANGES[typename]
        assert isinstance(value, int), f"The '{name}' field must be of type 'int'"
        assert low <= value <= high, f"The '{name}' field must be an integer in [{low}, {high}]"
    return value


# -- class generation -------------------------------------------------------------------------
def _const_value(typename: str, value: Any) -> Any:
    if typename == 'byte':  # rosidl exposes byte constants as bytes
        return bytes([value])
    if typename in ('float32', 'float64'):
        return float(value)
    return value


def make_message_class(full_name: str, consts: list, fields: list, resolve: Callable[[str], type]) -> type:
    """Build one message class named like rosidl's (``pkg.msg.Name``)."""
    pkg, sub, name = full_name.split('/')
    spec = [Field(fname, fspec, resolve) for fname, fspec in fields]
    by_name = {f.name: f for f in spec}

    def __init__(self, **kwargs: Any) -> None:
        unknown = [k for k in kwargs if k not in by_name]
        assert not unknown, f'Invalid arguments passed to constructor: {", ".join(unknown)}'
        for f in spec:
            setattr(self, f.name, kwargs[f.name] if f.name in kwargs else f.default())

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, self.__class__):
            return False
        for f in spec:
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True

    def __repr__(self) -> str:
        body = ', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in spec)
        return f'{pkg}.{sub}.{name}({body})'

    namespace: dict[str, Any] = {
        '__slots__': tuple('_' + f.name for f in spec),
        '__init__': __init__, '__eq__': __eq__, '__repr__': __repr__, '__hash__': None,
        '__module__': f'{pkg}.{sub}', '__qualname__': name,
        '_full_name': full_name, '_fields': by_name,
        'get_fields_and_field_types': classmethod(lambda cls: {f.name: f.type_string for f in spec}),
    }
    for cname, ctype, cvalue in consts:
        namespace[cname] = _const_value(ctype, cvalue)
    for f in spec:
        namespace[f.name] = _property(f)
    return type(name, (object,), namespace)


def _property(field: Field) -> property:
    slot = '_' + field.name

    def getter(self: Any) -> Any:
        return getattr(self, slot)

    def setter(self: Any, value: Any) -> None:
        object.__setattr__(self, slot, field.check(value))

    return property(getter, setter)


class Registry:
    """
    All interface packages of one stand-in installation, built on first use.

    ``audio_common_msgs`` exists in two incompatible flavours; :meth:`set_audio_flavour`
    regenerates only that package so every other class keeps its identity.
    """

    def __init__(self, audio_flavour: str = 'ros-drivers') -> None:
        self.dirs = _definition_dirs(audio_flavour)
        self.classes: dict[str, type] = {}
        self.modules: dict[str, types.ModuleType] = {}
        self.audio_flavour = ''
        self.set_audio_flavour(audio_flavour)

    def set_audio_flavour(self, flavour: str) -> None:
        if flavour not in audio_flavours():
            raise ValueError(f'unknown audio_common_msgs flavour {flavour!r}; know {audio_flavours()}')
        self.audio_flavour = flavour
        self.dirs['audio_common_msgs'] = INTERFACES / 'audio_common_msgs' / flavour
        for name in [n for n in self.classes if n.startswith('audio_common_msgs/')]:
            del self.classes[name]
        for name in [n for n in self.modules if n.startswith('audio_common_msgs.')]:
            del self.modules[name]
        for name in [n for n in sys.modules if n.split('.')[0] == 'audio_common_msgs']:
            del sys.modules[name]
        importlib.invalidate_caches()

    def packages(self) -> list[str]:
        return sorted(self.dirs)

    def resolve(self, typename: str) -> type:
        if typename not in self.classes:
            pkg = typename.split('/')[0]
            self.load_package(pkg)
        try:
            return self.classes[typename]
        except KeyError:
            raise ImportError(f'stand-in interfaces have no type {typename}') from None

    def load_package(self, pkg: str) -> None:
        if f'{pkg}.msg' in self.modules or pkg not in self.dirs:
            return
        root = self.dirs[pkg]
        for sub in ('msg', 'srv', 'action'):
            self.modules[f'{pkg}.{sub}'] = types.ModuleType(f'{pkg}.{sub}')
        for path in sorted((root / 'msg').glob('*.msg')) if (root / 'msg').is_dir() else []:
            self._add_message(f'{pkg}/msg/{path.stem}', path.read_text(), f'{pkg}.msg', path.stem)
        for path in sorted((root / 'srv').glob('*.srv')) if (root / 'srv').is_dir() else []:
            self._add_service(pkg, path)
        for path in sorted((root / 'action').glob('*.action')) if (root / 'action').is_dir() else []:
            self._add_action(pkg, path)

    def _add_message(self, full_name: str, text: str, module: str | None, attr: str) -> type:
        parsed = get_types_from_msg(text, full_name)
        (consts, fields), = parsed.values()  # rosbags may normalize the name; one type per text
        cls = make_message_class(full_name, consts, fields, self.resolve)
        self.classes[full_name] = cls
        if module is not None:
            setattr(self.modules[module], attr, cls)
        return cls

    def _service(self, pkg: str, sub: str, name: str, request: str, response: str) -> type:
        req = self._add_message(f'{pkg}/{sub}/{name}_Request', request, None, '')
        res = self._add_message(f'{pkg}/{sub}/{name}_Response', response, None, '')
        return type(name, (object,), {'Request': req, 'Response': res, '__module__': f'{pkg}.{sub}',
                                      '_full_name': f'{pkg}/{sub}/{name}'})

    def _add_service(self, pkg: str, path: Path) -> None:
        request, response = split_sections(path.read_text(), 2, path)
        srv = self._service(pkg, 'srv', path.stem, request, response)
        setattr(self.modules[f'{pkg}.srv'], path.stem, srv)

    def _add_action(self, pkg: str, path: Path) -> None:
        name = path.stem
        goal, result, feedback = split_sections(path.read_text(), 3, path)
        base = f'{pkg}/action/{name}'
        goal_cls = self._add_message(f'{base}_Goal', goal, None, '')
        result_cls = self._add_message(f'{base}_Result', result, None, '')
        feedback_cls = self._add_message(f'{base}_Feedback', feedback, None, '')
        send_goal = self._service(
            pkg, 'action', f'{name}_SendGoal',
            f'unique_identifier_msgs/UUID goal_id\n{base}_Goal goal\n',
            'bool accepted\nbuiltin_interfaces/Time stamp\n')
        get_result = self._service(
            pkg, 'action', f'{name}_GetResult',
            'unique_identifier_msgs/UUID goal_id\n',
            f'int8 status\n{base}_Result result\n')
        feedback_message = self._add_message(
            f'{base}_FeedbackMessage',
            f'unique_identifier_msgs/UUID goal_id\n{base}_Feedback feedback\n', None, '')
        self.load_package('action_msgs')
        impl = type('Impl', (object,), {
            'SendGoalService': send_goal, 'GetResultService': get_result,
            'FeedbackMessage': feedback_message,
            'CancelGoalService': self.modules['action_msgs.srv'].CancelGoal,
            'GoalStatusMessage': self.modules['action_msgs.msg'].GoalStatusArray,
        })
        action = type(name, (object,), {
            'Goal': goal_cls, 'Result': result_cls, 'Feedback': feedback_cls, 'Impl': impl,
            '__module__': f'{pkg}.action', '_full_name': base,
        })
        setattr(self.modules[f'{pkg}.action'], name, action)


class InterfaceFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import std_msgs.msg`` (and friends) return the generated modules."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        parts = fullname.split('.')
        if parts[0] not in self.registry.dirs or len(parts) > 2:
            return None
        if len(parts) == 2 and parts[1] not in ('msg', 'srv', 'action'):
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=len(parts) == 1)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        parts = spec.name.split('.')
        if len(parts) == 1:
            module = types.ModuleType(spec.name)
            module.__path__ = []
            return module
        self.registry.load_package(parts[0])
        return self.registry.modules[spec.name]

    def exec_module(self, module: types.ModuleType) -> None:
        return None


_REGISTRY: Registry | None = None


def install(audio_flavour: str = 'ros-drivers') -> Registry:
    """Serve the interface packages from one process-wide registry (idempotent)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry(audio_flavour)
        sys.meta_path.insert(0, InterfaceFinder(_REGISTRY))
    elif _REGISTRY.audio_flavour != audio_flavour:
        _REGISTRY.set_audio_flavour(audio_flavour)
    return _REGISTRY
