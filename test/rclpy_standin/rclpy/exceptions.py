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

"""The rclpy exceptions the stand-in raises, with the real names and base classes."""


class NotInitializedException(Exception):
    def __init__(self, *args):
        Exception.__init__(self, 'rclpy.init() has not been called', *args)


class InvalidNamespaceException(ValueError):
    pass


class InvalidTopicNameException(ValueError):
    pass


class InvalidServiceNameException(ValueError):
    pass


class ParameterException(Exception):
    def __init__(self, error_msg, parameters, *args):
        Exception.__init__(self, f'{error_msg}: {parameters}', *args)


class ParameterNotDeclaredException(ParameterException):
    def __init__(self, parameters, *args):
        ParameterException.__init__(self, 'Invalid access to undeclared parameter(s)', parameters, *args)


class ParameterAlreadyDeclaredException(ParameterException):
    def __init__(self, parameters, *args):
        ParameterException.__init__(self, 'Parameter(s) already declared', parameters, *args)


class InvalidParameterException(ParameterException):
    def __init__(self, parameter, *args):
        ParameterException.__init__(self, 'Invalid parameter name', parameter, *args)


class InvalidParameterTypeException(ParameterException):
    def __init__(self, desired_parameter, expected_type, *args):
        ParameterException.__init__(
            self, f"Trying to set parameter '{desired_parameter.name}' to '{desired_parameter.value}' "
            f"of type '{desired_parameter.type_.name}', expecting type '{expected_type}'",
            desired_parameter.name, *args)


class InvalidParameterValueException(ParameterException):
    def __init__(self, parameter, value, reason, *args):
        Exception.__init__(self, f'Invalid parameter value ({value}) for parameter. Reason: {reason}',
                           parameter, *args)


class ParameterImmutableException(ParameterException):
    def __init__(self, parameter, *args):
        ParameterException.__init__(self, 'Attempted to modify read-only parameter', parameter, *args)


class ParameterUninitializedException(ParameterException):
    def __init__(self, parameter, *args):
        ParameterException.__init__(self, 'Statically typed parameter has not been initialized',
                                    parameter, *args)
