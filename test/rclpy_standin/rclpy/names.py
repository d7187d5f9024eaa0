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

"""Topic/service name expansion and validation (the rules of rcl_expand_topic_name, simplified)."""

import re

from rclpy.exceptions import InvalidNamespaceException, InvalidTopicNameException

_TOKEN = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


def validate_namespace(namespace):
    if namespace in ('', '/'):
        return '/'
    if not namespace.startswith('/'):
        namespace = '/' + namespace
    if namespace.endswith('/') or any(not _TOKEN.match(t) for t in namespace[1:].split('/')):
        raise InvalidNamespaceException(f'invalid namespace {namespace!r}')
    return namespace


def expand(name, node_name, namespace):
    """Resolve ``name`` (absolute, relative or ``~/private``) for a node."""
    if not isinstance(name, str) or not name:
        raise InvalidTopicNameException(f'invalid topic name {name!r}')
    fqn = (namespace.rstrip('/') + '/' + node_name)
    if name == '~':
        full = fqn
    elif name.startswith('~/'):
        full = fqn + '/' + name[2:]
    elif name.startswith('/'):
        full = name
    else:
        full = namespace.rstrip('/') + '/' + name
    tokens = full[1:].split('/')
    if full.endswith('/') or '//' in full or any(not _TOKEN.match(t) for t in tokens):
        raise InvalidTopicNameException(f'invalid topic name {name!r} (expanded to {full!r})')
    return full
