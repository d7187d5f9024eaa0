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
