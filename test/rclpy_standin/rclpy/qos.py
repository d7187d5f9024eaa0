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

"""rclpy.qos subset: profiles and policies, plus the compatibility rule the in-process bus applies."""

from enum import IntEnum


class InvalidQoSProfileException(Exception):
    def __init__(self, *args):
        Exception.__init__(self, 'Invalid QoSProfile', *args)


class HistoryPolicy(IntEnum):
    SYSTEM_DEFAULT = 0
    KEEP_LAST = 1
    KEEP_ALL = 2
    UNKNOWN = 3


class ReliabilityPolicy(IntEnum):
    SYSTEM_DEFAULT = 0
    RELIABLE = 1
    BEST_EFFORT = 2
    UNKNOWN = 3
    BEST_AVAILABLE = 4


class DurabilityPolicy(IntEnum):
    SYSTEM_DEFAULT = 0
    TRANSIENT_LOCAL = 1
    VOLATILE = 2
    UNKNOWN = 3
    BEST_AVAILABLE = 4


class LivelinessPolicy(IntEnum):
    SYSTEM_DEFAULT = 0
    AUTOMATIC = 1
    MANUAL_BY_TOPIC = 3
    UNKNOWN = 4
    BEST_AVAILABLE = 5


# Legacy aliases that still exist in rclpy.
QoSHistoryPolicy = HistoryPolicy
QoSReliabilityPolicy = ReliabilityPolicy
QoSDurabilityPolicy = DurabilityPolicy


class QoSProfile:
    """Like rclpy: history or depth must be given; depth alone implies KEEP_LAST."""

    __slots__ = ('history', 'depth', 'reliability', 'durability', 'liveliness')

    def __init__(self, **kwargs):
        unknown = set(kwargs) - {'history', 'depth', 'reliability', 'durability', 'liveliness',
                                 'deadline', 'lifespan', 'liveliness_lease_duration',
                                 'avoid_ros_namespace_conventions'}
        if unknown:
            raise InvalidQoSProfileException(f'unknown QoS settings {sorted(unknown)}')
        if 'history' not in kwargs:
            if 'depth' not in kwargs:
                raise InvalidQoSProfileException('History and/or depth settings are required.')
            kwargs['history'] = HistoryPolicy.KEEP_LAST
        self.history = HistoryPolicy(kwargs['history'])
        if self.history == HistoryPolicy.KEEP_LAST and kwargs.get('depth', 0) == 0:
            raise InvalidQoSProfileException('History set to KEEP_LAST without a depth setting.')
        self.depth = kwargs.get('depth', 0)
        self.reliability = ReliabilityPolicy(kwargs.get('reliability', ReliabilityPolicy.RELIABLE))
        self.durability = DurabilityPolicy(kwargs.get('durability', DurabilityPolicy.VOLATILE))
        self.liveliness = LivelinessPolicy(kwargs.get('liveliness', LivelinessPolicy.SYSTEM_DEFAULT))

    def __eq__(self, other):
        return isinstance(other, QoSProfile) and all(
            getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self):
        return (f'QoSProfile(history={self.history.name}, depth={self.depth}, '
                f'reliability={self.reliability.name}, durability={self.durability.name})')


qos_profile_sensor_data = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE)
qos_profile_system_default = QoSProfile(
    history=HistoryPolicy.SYSTEM_DEFAULT, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE)
qos_profile_services_default = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE)
qos_profile_parameters = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE)
qos_profile_action_status_default = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL)


def as_profile(qos):
    """Accept an int as shorthand for QoSProfile(depth=int), as rclpy does."""
    if isinstance(qos, QoSProfile):
        return qos
    if isinstance(qos, int) and not isinstance(qos, bool):
        return QoSProfile(depth=qos)
    raise TypeError(f'Expected QoSProfile or int, but received {type(qos)!r}')


def compatible(offered: QoSProfile, requested: QoSProfile) -> bool:
    """DDS request/offered matching for the two policies that matter here."""
    if requested.reliability == ReliabilityPolicy.RELIABLE and \
            offered.reliability == ReliabilityPolicy.BEST_EFFORT:
        return False
    if requested.durability == DurabilityPolicy.TRANSIENT_LOCAL and \
            offered.durability == DurabilityPolicy.VOLATILE:
        return False
    return True
