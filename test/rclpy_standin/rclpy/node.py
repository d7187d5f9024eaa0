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
rclpy.node.Node: parameters with rclpy's declaration semantics, and entity factories.

Parameter behaviour copied from rclpy (Humble/Jazzy agree on it):
- declaring infers a static type from the default (or takes a ``Parameter.Type``); an override
  (``parameter_overrides``, ``--params-file``, ``-p``) replaces the default unless ``ignore_override``;
- the descriptor is applied at declaration: wrong type -> ``InvalidParameterTypeException``, out of
  range or rejected by an on-set callback -> ``InvalidParameterValueException`` (callbacks run at
  declaration too; read-only is not checked then);
- ``set_parameters`` returns one ``SetParametersResult`` per parameter and refuses read-only, wrongly
  typed, out-of-range or callback-rejected values without raising; undeclared names raise.
"""

import math

from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.client import Client
from rclpy.clock import Clock, ClockType
from rclpy.context import get_default_context
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException, NotInitializedException,
                              ParameterAlreadyDeclaredException, ParameterNotDeclaredException,
                              ParameterUninitializedException)
from rclpy.logging import get_logger
from rclpy.names import expand, validate_namespace
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import as_profile, qos_profile_services_default
from rclpy.service import Service
from rclpy.subscription import Subscription
from rclpy.timer import Timer
import yaml


def _parse_ros_args(args):
    """(params files, -p overrides) from a ``--ros-args ...`` argument list."""
    files, overrides = [], {}
    in_ros = False
    it = iter(args or [])
    for arg in it:
        if arg == '--ros-args':
            in_ros = True
        elif arg == '--':
            in_ros = False
        elif in_ros and arg == '--params-file':
            files.append(next(it))
        elif in_ros and arg in ('-p', '--param'):
            name, _, text = next(it).partition(':=')
            value = yaml.safe_load(text) if text else ''
            overrides[name] = value
    return files, overrides


def _flatten(prefix, data, out):
    for key, value in data.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            _flatten(name + '.', value, out)
        else:
            out[name] = value


def _params_from_file(path, node_name, fqn):
    with open(path, encoding='utf-8') as f:
        data = yaml.safe_load(f) or {}
    values = {}
    keys = ['/**', '/**/' + node_name, node_name, fqn, fqn.lstrip('/')]
    for key in keys:
        section = data.get(key)
        if section is None:
            continue
        if not isinstance(section, dict) or 'ros__parameters' not in section:
            raise RuntimeError(f'{path}: section {key!r} has no ros__parameters')
        _flatten('', section['ros__parameters'], values)
    return values


class Node:
    PARAM_REL_TOL = 1e-6

    def __init__(self, node_name, *, context=None, cli_args=None, namespace=None,
                 use_global_arguments=True, enable_rosout=True, start_parameter_services=True,
                 parameter_overrides=None, allow_undeclared_parameters=False,
                 automatically_declare_parameters_from_overrides=False, **_ignored):
        self._context = context or get_default_context()
        if not self._context.ok():
            raise NotInitializedException('cannot create node')
        self._name = node_name
        self._namespace = validate_namespace(namespace or '/')
        self._logger = get_logger(node_name)
        self._clock = Clock(clock_type=ClockType.ROS_TIME)
        self._default_callback_group = MutuallyExclusiveCallbackGroup()
        self._parameters = {}
        self._descriptors = {}
        self._on_set_parameters_callbacks = []
        self._allow_undeclared_parameters = allow_undeclared_parameters
        self._executor = None
        self.publishers, self.subscriptions, self.timers = [], [], []
        self.services, self.clients, self.waitables = [], [], []

        overrides = {}
        arg_lists = ([self._context.args] if use_global_arguments else []) + [cli_args or []]
        for args in arg_lists:
            files, inline = _parse_ros_args(args)
            for path in files:
                overrides.update(_params_from_file(path, node_name, self.get_fully_qualified_name()))
            overrides.update(inline)
        self._parameter_overrides = {name: Parameter(name, value=value) for name, value in overrides.items()}
        for parameter in parameter_overrides or []:
            self._parameter_overrides[parameter.name] = parameter
        self.declare_parameter('use_sim_time', False)
        if automatically_declare_parameters_from_overrides:
            for name, parameter in self._parameter_overrides.items():
                if not self.has_parameter(name):
                    self.declare_parameter(name, parameter.value)
        if start_parameter_services:
            self._start_parameter_services()

    def _start_parameter_services(self):
        """
        Serve ``~/set_parameters`` and ``~/get_parameters`` as rclpy's ParameterService does.

        They are in the default callback group: ``ros2 param set`` goes through them, so a slow
        on-set-parameters callback blocks everything else in that group (timers by default).
        """
        from rcl_interfaces.srv import GetParameters, SetParameters

        def set_parameters(request, response):
            for param_msg in request.parameters:
                try:
                    parameter = Parameter.from_parameter_msg(param_msg)
                    result = self.set_parameters([parameter])[0]
                except Exception as exc:  # noqa: BLE001 - the service answers, as rclpy's does
                    result = SetParametersResult(successful=False, reason=str(exc))
                response.results.append(result)
            return response

        def get_parameters(request, response):
            for name in request.names:
                if self.has_parameter(name):
                    response.values.append(self.get_parameter(name).get_parameter_value())
            return response

        prefix = self.get_fully_qualified_name()
        self.create_service(SetParameters, f'{prefix}/set_parameters', set_parameters)
        self.create_service(GetParameters, f'{prefix}/get_parameters', get_parameters)

    # -- identity ----------------------------------------------------------------------------
    @property
    def context(self):
        return self._context

    @property
    def default_callback_group(self):
        return self._default_callback_group

    @property
    def executor(self):
        return self._executor

    @executor.setter
    def executor(self, new_executor):
        if new_executor is self._executor:
            return
        if self._executor is not None:
            self._executor.remove_node(self)
        if new_executor is not None:
            new_executor.add_node(self)
        self._executor = new_executor

    def get_name(self):
        return self._name

    def get_namespace(self):
        return self._namespace

    def get_fully_qualified_name(self):
        return self._namespace.rstrip('/') + '/' + self._name

    def get_logger(self):
        return self._logger

    def get_clock(self):
        return self._clock

    def resolve_topic_name(self, topic, *, only_expand=False):
        return expand(topic, self._name, self._namespace)

    # -- parameters --------------------------------------------------------------------------
    def declare_parameter(self, name, value=None, descriptor=None, ignore_override=False):
        args = (name, value, descriptor) if descriptor is not None else (name, value)
        return self.declare_parameters('', [args], ignore_override)[0]

    def declare_parameters(self, namespace, parameters, ignore_override=False):
        parameter_list, descriptors = [], {}
        for index, parameter_tuple in enumerate(parameters):
            if len(parameter_tuple) < 1 or len(parameter_tuple) > 3:
                raise TypeError(f'Invalid parameter tuple length at index {index}')
            name = parameter_tuple[0]
            if not isinstance(name, str):
                raise TypeError(f'First element {name} at index {index} in parameters list is not a str.')
            if namespace:
                name = f'{namespace}.{name}'
            second = parameter_tuple[1] if len(parameter_tuple) > 1 else None
            descriptor = parameter_tuple[2] if len(parameter_tuple) > 2 else ParameterDescriptor()
            if not isinstance(descriptor, ParameterDescriptor):
                raise TypeError(f'Third element {descriptor} at index {index} is not a ParameterDescriptor.')
            if len(parameter_tuple) == 1:
                descriptor.dynamic_typing = True
            value = None
            if isinstance(second, Parameter.Type):
                if second == Parameter.Type.NOT_SET:
                    raise ValueError(f'Cannot declare parameter {{{name}}} as statically typed of type NOT_SET')
                if descriptor.dynamic_typing:
                    raise ValueError(f'When declaring parameter {{{name}}} passing a descriptor with '
                                     '`dynamic_typing=True` is not allowed when the parameter type is provided')
                descriptor.type = second.value
            else:
                value = second
                if not descriptor.dynamic_typing:
                    descriptor.type = Parameter.Type.from_parameter_value(value).value
                    if descriptor.type == ParameterType.PARAMETER_NOT_SET:
                        raise ValueError('Cannot declare a statically typed parameter with default value '
                                         'of type PARAMETER_NOT_SET')
            if not ignore_override and name in self._parameter_overrides:
                value = self._parameter_overrides[name].value
            parameter_list.append(Parameter(name, value=value))
            descriptors[name] = descriptor
        already = [p.name for p in parameter_list if p.name in self._parameters]
        if already:
            raise ParameterAlreadyDeclaredException(already)
        for parameter in parameter_list:
            result = self._set_parameters_atomically_common([parameter], descriptors, allow_not_set_type=True)
            if not result.successful:
                if result.reason.startswith('Wrong parameter type'):
                    raise InvalidParameterTypeException(
                        parameter, Parameter.Type(descriptors[parameter.name].type).name)
                raise InvalidParameterValueException(parameter.name, parameter.value, result.reason)
        return [self._parameters[p.name] for p in parameter_list]

    def undeclare_parameter(self, name):
        if name not in self._parameters:
            raise ParameterNotDeclaredException(name)
        del self._parameters[name]
        del self._descriptors[name]

    def has_parameter(self, name):
        return name in self._parameters

    def get_parameter(self, name):
        if name in self._parameters:
            parameter = self._parameters[name]
            if parameter.type_ != Parameter.Type.NOT_SET or self._descriptors[name].dynamic_typing:
                return parameter
            raise ParameterUninitializedException(name)
        if self._allow_undeclared_parameters:
            return Parameter(name, Parameter.Type.NOT_SET, None)
        raise ParameterNotDeclaredException(name)

    def get_parameters(self, names):
        return [self.get_parameter(name) for name in names]

    def get_parameter_or(self, name, alternative_value=None):
        if alternative_value is None:
            alternative_value = Parameter(name, Parameter.Type.NOT_SET)
        if name not in self._parameters or self._parameters[name].type_ == Parameter.Type.NOT_SET:
            return alternative_value
        return self._parameters[name]

    def get_parameters_by_prefix(self, prefix):
        prefix = prefix + '.' if prefix else ''
        return {n[len(prefix):]: p for n, p in self._parameters.items() if n.startswith(prefix)}

    def describe_parameter(self, name):
        try:
            return self._descriptors[name]
        except KeyError:
            if self._allow_undeclared_parameters:
                return ParameterDescriptor()
            raise ParameterNotDeclaredException(name) from None

    def set_parameters(self, parameter_list):
        return [self.set_parameters_atomically([parameter]) for parameter in parameter_list]

    def set_parameters_atomically(self, parameter_list):
        if not all(isinstance(p, Parameter) for p in parameter_list):
            raise TypeError(f"parameter must be instance of type '{Parameter!r}'")
        undeclared = [p.name for p in parameter_list if p.name not in self._parameters]
        if undeclared and not self._allow_undeclared_parameters:
            raise ParameterNotDeclaredException(undeclared)
        return self._set_parameters_atomically_common(parameter_list)

    def add_on_set_parameters_callback(self, callback):
        self._on_set_parameters_callbacks.insert(0, callback)

    def remove_on_set_parameters_callback(self, callback):
        self._on_set_parameters_callbacks.remove(callback)

    def _set_parameters_atomically_common(self, parameter_list, descriptors=None, allow_not_set_type=False):
        if descriptors is not None:
            result = self._apply_descriptors(parameter_list, descriptors, False)
        else:
            result = self._apply_descriptors(parameter_list, self._descriptors, True)
        if not result.successful:
            return result
        for callback in self._on_set_parameters_callbacks:
            result = callback(parameter_list)
            if not isinstance(result, SetParametersResult):
                raise TypeError('on-set-parameters callbacks must return SetParametersResult')
            if not result.successful:
                return result
        for parameter in parameter_list:
            if not allow_not_set_type and parameter.type_ == Parameter.Type.NOT_SET:
                self._parameters.pop(parameter.name, None)
                self._descriptors.pop(parameter.name, None)
                continue
            if descriptors is not None:
                self._descriptors[parameter.name] = descriptors[parameter.name]
            elif parameter.name not in self._descriptors:
                self._descriptors[parameter.name] = ParameterDescriptor(dynamic_typing=True)
            self._parameters[parameter.name] = parameter
        return SetParametersResult(successful=True)

    def _apply_descriptors(self, parameter_list, descriptors, check_read_only=True):
        for parameter in parameter_list:
            if parameter.name in descriptors:
                result = self._apply_descriptor(parameter, descriptors[parameter.name], check_read_only)
                if not result.successful:
                    return result
        return SetParametersResult(successful=True)

    def _apply_descriptor(self, parameter, descriptor, check_read_only=True):
        descriptor.name = parameter.name
        if check_read_only and descriptor.read_only:
            return SetParametersResult(successful=False,
                                       reason=f'Trying to set a read-only parameter: {parameter.name}.')
        if descriptor.dynamic_typing:
            descriptor.type = parameter.type_.value
        elif self.has_parameter(parameter.name) and parameter.type_ == Parameter.Type.NOT_SET:
            return SetParametersResult(successful=False, reason='Static parameter cannot be undeclared')
        elif parameter.type_ != Parameter.Type.NOT_SET and parameter.type_.value != descriptor.type:
            return SetParametersResult(
                successful=False,
                reason=f"Wrong parameter type, expected '{Parameter.Type(descriptor.type)}' got '{parameter.type_}'")
        if parameter.type_ == Parameter.Type.INTEGER and descriptor.integer_range:
            return self._apply_integer_range(parameter, descriptor.integer_range[0])
        if parameter.type_ == Parameter.Type.DOUBLE and descriptor.floating_point_range:
            return self._apply_floating_point_range(parameter, descriptor.floating_point_range[0])
        return SetParametersResult(successful=True)

    def _apply_integer_range(self, parameter, integer_range):
        low = min(integer_range.from_value, integer_range.to_value)
        high = max(integer_range.from_value, integer_range.to_value)
        if parameter.value in (low, high):
            return SetParametersResult(successful=True)
        if not low < parameter.value < high:
            return SetParametersResult(
                successful=False,
                reason=f'Parameter {parameter.name} out of range. Min: {low}, Max: {high}, value: {parameter.value}')
        if integer_range.step != 0 and (parameter.value - low) % integer_range.step != 0:
            return SetParametersResult(
                successful=False, reason=f'The parameter value for {parameter.name} is not a valid step.')
        return SetParametersResult(successful=True)

    def _apply_floating_point_range(self, parameter, fp_range):
        low = min(fp_range.from_value, fp_range.to_value)
        high = max(fp_range.from_value, fp_range.to_value)
        value = parameter.value
        tol = self.PARAM_REL_TOL
        if math.isclose(value, low, rel_tol=tol) or math.isclose(value, high, rel_tol=tol):
            return SetParametersResult(successful=True)
        if not low < value < high:
            return SetParametersResult(
                successful=False,
                reason=f'Parameter {parameter.name} out of range Min: {low}, Max: {high}, value: {value}')
        if fp_range.step != 0.0:
            steps = round((value - low) / fp_range.step)
            if not math.isclose(low + steps * fp_range.step, value, rel_tol=self.PARAM_REL_TOL):
                return SetParametersResult(
                    successful=False,
                    reason=f'The parameter value for {parameter.name} is not close enough to a valid step.')
        return SetParametersResult(successful=True)

    # -- entities ----------------------------------------------------------------------------
    def _group(self, callback_group):
        return callback_group if callback_group is not None else self._default_callback_group

    def create_publisher(self, msg_type, topic, qos_profile, *, callback_group=None, **_kwargs):
        publisher = Publisher(self, msg_type, self.resolve_topic_name(topic), as_profile(qos_profile), topic)
        self._context.graph.add_publisher(publisher)
        self.publishers.append(publisher)
        return publisher

    def create_subscription(self, msg_type, topic, callback, qos_profile, *, callback_group=None,
                            event_callbacks=None, **_kwargs):
        group = self._group(callback_group)
        subscription = Subscription(self, msg_type, self.resolve_topic_name(topic), callback,
                                    as_profile(qos_profile), group, topic, event_callbacks=event_callbacks)
        group.add_entity(subscription)
        self.subscriptions.append(subscription)
        self._context.graph.add_subscription(subscription)
        return subscription

    def create_timer(self, timer_period_sec, callback, callback_group=None, clock=None, autostart=True):
        group = self._group(callback_group)
        timer = Timer(self, callback, timer_period_sec, group, autostart)
        group.add_entity(timer)
        self.timers.append(timer)
        self._context.notify()
        return timer

    def create_service(self, srv_type, srv_name, callback, *, qos_profile=qos_profile_services_default,
                       callback_group=None):
        group = self._group(callback_group)
        service = Service(self, srv_type, self.resolve_topic_name(srv_name), callback, group)
        group.add_entity(service)
        self.services.append(service)
        self._context.graph.add_service(service)
        return service

    def create_client(self, srv_type, srv_name, *, qos_profile=qos_profile_services_default,
                      callback_group=None):
        group = self._group(callback_group)
        client = Client(self, srv_type, self.resolve_topic_name(srv_name), group)
        group.add_entity(client)
        self.clients.append(client)
        return client

    def add_waitable(self, waitable):
        self.waitables.append(waitable)
        self._context.notify()

    def remove_waitable(self, waitable):
        if waitable in self.waitables:
            self.waitables.remove(waitable)

    def _entities(self):
        return self.subscriptions + self.timers + self.services + self.clients + self.waitables

    def destroy_publisher(self, publisher):
        if publisher in self.publishers:
            self.publishers.remove(publisher)
            publisher.destroy()
            return True
        return False

    def destroy_subscription(self, subscription):
        if subscription in self.subscriptions:
            self.subscriptions.remove(subscription)
            subscription.destroy()
            return True
        return False

    def destroy_timer(self, timer):
        if timer in self.timers:
            self.timers.remove(timer)
            timer.destroy()
            return True
        return False

    def destroy_service(self, service):
        if service in self.services:
            self.services.remove(service)
            service.destroy()
            return True
        return False

    def destroy_client(self, client):
        if client in self.clients:
            self.clients.remove(client)
            return True
        return False

    def destroy_node(self):
        for publisher in list(self.publishers):
            self.destroy_publisher(publisher)
        for subscription in list(self.subscriptions):
            self.destroy_subscription(subscription)
        for timer in list(self.timers):
            self.destroy_timer(timer)
        for service in list(self.services):
            self.destroy_service(service)
        for waitable in list(self.waitables):
            destroy = getattr(waitable, 'destroy', None)
            if destroy is not None:
                destroy()
        self.clients.clear()
        self.waitables.clear()
        if self._executor is not None:
            self._executor.remove_node(self)
            self._executor = None

    # -- graph -------------------------------------------------------------------------------
    def count_publishers(self, topic_name):
        return self._context.graph.count(self.resolve_topic_name(topic_name), 'pub')

    def count_subscribers(self, topic_name):
        return self._context.graph.count(self.resolve_topic_name(topic_name), 'sub')

    def get_topic_names_and_types(self, include_hidden_topics=False):
        return self._context.graph.topic_names_and_types()
