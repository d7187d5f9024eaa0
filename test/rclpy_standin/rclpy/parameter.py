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
rclpy.parameter: Parameter with its Type enum, as in rclpy (type inference included).

Note the real quirk kept here: an empty list infers BYTE_ARRAY (``all()`` of nothing is True),
so a node that wants an empty string-array default must declare the type explicitly.
"""

import array
from enum import Enum

from rcl_interfaces.msg import ParameterType
import yaml

PARAMETER_SEPARATOR_STRING = '.'


class Parameter:

    class Type(Enum):
        NOT_SET = ParameterType.PARAMETER_NOT_SET
        BOOL = ParameterType.PARAMETER_BOOL
        INTEGER = ParameterType.PARAMETER_INTEGER
        DOUBLE = ParameterType.PARAMETER_DOUBLE
        STRING = ParameterType.PARAMETER_STRING
        BYTE_ARRAY = ParameterType.PARAMETER_BYTE_ARRAY
        BOOL_ARRAY = ParameterType.PARAMETER_BOOL_ARRAY
        INTEGER_ARRAY = ParameterType.PARAMETER_INTEGER_ARRAY
        DOUBLE_ARRAY = ParameterType.PARAMETER_DOUBLE_ARRAY
        STRING_ARRAY = ParameterType.PARAMETER_STRING_ARRAY

        @classmethod
        def from_parameter_value(cls, parameter_value):
            if parameter_value is None:
                return Parameter.Type.NOT_SET
            if isinstance(parameter_value, bool):
                return Parameter.Type.BOOL
            if isinstance(parameter_value, int):
                return Parameter.Type.INTEGER
            if isinstance(parameter_value, float):
                return Parameter.Type.DOUBLE
            if isinstance(parameter_value, str):
                return Parameter.Type.STRING
            if isinstance(parameter_value, (list, tuple, array.array)):
                if all(isinstance(v, bytes) for v in parameter_value):
                    return Parameter.Type.BYTE_ARRAY
                if all(isinstance(v, bool) for v in parameter_value):
                    return Parameter.Type.BOOL_ARRAY
                if all(isinstance(v, int) for v in parameter_value):
                    return Parameter.Type.INTEGER_ARRAY
                if all(isinstance(v, float) for v in parameter_value):
                    return Parameter.Type.DOUBLE_ARRAY
                if all(isinstance(v, str) for v in parameter_value):
                    return Parameter.Type.STRING_ARRAY
                raise TypeError(f"The given value is not a list of one of the allowed types '{parameter_value}'.")
            raise TypeError(f"The given value is not one of the allowed types '{parameter_value}'.")

        def check(self, parameter_value):
            T = Parameter.Type
            if self == T.NOT_SET:
                return parameter_value is None
            if self == T.BOOL:
                return isinstance(parameter_value, bool)
            if self == T.INTEGER:
                return isinstance(parameter_value, int)
            if self == T.DOUBLE:
                return isinstance(parameter_value, float)
            if self == T.STRING:
                return isinstance(parameter_value, str)
            if self == T.BYTE_ARRAY:
                return isinstance(parameter_value, (list, tuple)) and \
                    all(isinstance(v, bytes) and len(v) == 1 for v in parameter_value)
            if self == T.BOOL_ARRAY:
                return isinstance(parameter_value, (list, tuple)) and all(isinstance(v, bool) for v in parameter_value)
            if self == T.INTEGER_ARRAY:
                return isinstance(parameter_value, (list, tuple, array.array)) and \
                    all(isinstance(v, int) for v in parameter_value)
            if self == T.DOUBLE_ARRAY:
                return isinstance(parameter_value, (list, tuple, array.array)) and \
                    all(isinstance(v, float) for v in parameter_value)
            if self == T.STRING_ARRAY:
                return isinstance(parameter_value, (list, tuple)) and all(isinstance(v, str) for v in parameter_value)
            return False

    def __init__(self, name, type_=None, value=None):
        if type_ is None:
            type_ = Parameter.Type.from_parameter_value(value)
        if not isinstance(type_, Parameter.Type):
            raise TypeError(f"type must be an instance of '{Parameter.Type!r}'")
        if not type_.check(value):
            raise ValueError(f"Type '{type_}' and value '{value}' do not agree")
        self._type_ = type_
        self._name = name
        self._value = value

    @property
    def name(self):
        return self._name

    @property
    def type_(self):
        return self._type_

    @property
    def value(self):
        return self._value

    def __repr__(self):
        return f'Parameter(name={self._name!r}, type={self._type_.name}, value={self._value!r})'

    def get_parameter_value(self):
        """Return this value as an rcl_interfaces ParameterValue (what the parameter services carry)."""
        from rcl_interfaces.msg import ParameterValue

        msg = ParameterValue(type=self._type_.value)
        field = _VALUE_FIELDS.get(self._type_)
        if field is not None:
            setattr(msg, field, list(self._value) if isinstance(self._value, (list, tuple)) else self._value)
        return msg

    def to_parameter_msg(self):
        from rcl_interfaces.msg import Parameter as ParameterMsg

        return ParameterMsg(name=self._name, value=self.get_parameter_value())

    @classmethod
    def from_parameter_msg(cls, param_msg):
        type_ = Parameter.Type(param_msg.value.type)
        field = _VALUE_FIELDS.get(type_)
        value = None if field is None else getattr(param_msg.value, field)
        if type_ in (Parameter.Type.BOOL_ARRAY, Parameter.Type.INTEGER_ARRAY, Parameter.Type.DOUBLE_ARRAY,
                     Parameter.Type.STRING_ARRAY, Parameter.Type.BYTE_ARRAY):
            value = list(value)
        return cls(param_msg.name, type_, value)


_VALUE_FIELDS = {
    Parameter.Type.BOOL: 'bool_value', Parameter.Type.INTEGER: 'integer_value',
    Parameter.Type.DOUBLE: 'double_value', Parameter.Type.STRING: 'string_value',
    Parameter.Type.BYTE_ARRAY: 'byte_array_value', Parameter.Type.BOOL_ARRAY: 'bool_array_value',
    Parameter.Type.INTEGER_ARRAY: 'integer_array_value', Parameter.Type.DOUBLE_ARRAY: 'double_array_value',
    Parameter.Type.STRING_ARRAY: 'string_array_value',
}


def value_from_yaml(value):
    """Convert a value read from a parameters YAML file or ``-p name:=value`` like rcl does."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if value is None:
            return ''
    if isinstance(value, list):
        return list(value)
    return value
