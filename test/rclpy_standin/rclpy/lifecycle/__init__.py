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
rclpy.lifecycle: managed nodes with the ROS 2 lifecycle state machine.

As in rclpy: states unconfigured, inactive, active, finalized; transitions configure, activate,
deactivate, cleanup and shutdown, each calling the node's on_<transition>(state) and moving
only when it returns SUCCESS (FAILURE keeps the state, ERROR or an exception goes through
on_error: SUCCESS there leads to unconfigured, anything else to finalized). The mixin's
on_activate/on_deactivate switch the node's lifecycle publishers, which drop what is
published while inactive (with a warning, like rclpy). The ~/change_state services are not
provided: tests call the trigger_* methods a lifecycle manager's requests end in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from rclpy.node import Node as _Node
from rclpy.publisher import Publisher as _Publisher
from rclpy.qos import as_profile


class TransitionCallbackReturn(Enum):
    """What a transition callback returns (rclpy's TransitionCallbackReturnType)."""

    SUCCESS = 97
    FAILURE = 98
    ERROR = 99


@dataclass(frozen=True)
class LifecycleState:
    """A primary state: its id and label as lifecycle_msgs/State has them."""

    label: str
    state_id: int


UNCONFIGURED = LifecycleState('unconfigured', 1)
INACTIVE = LifecycleState('inactive', 2)
ACTIVE = LifecycleState('active', 3)
FINALIZED = LifecycleState('finalized', 4)

# transition -> (states it starts from, state it reaches on SUCCESS)
_TRANSITIONS = {
    'configure': ((UNCONFIGURED,), INACTIVE),
    'activate': ((INACTIVE,), ACTIVE),
    'deactivate': ((ACTIVE,), INACTIVE),
    'cleanup': ((INACTIVE,), UNCONFIGURED),
    'shutdown': ((UNCONFIGURED, INACTIVE, ACTIVE), FINALIZED),
}


class LifecyclePublisher(_Publisher):
    """A publisher that only publishes while its node is active."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._enabled = False

    def on_activate(self, state):
        self._enabled = True
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state):
        self._enabled = False
        return TransitionCallbackReturn.SUCCESS

    def publish(self, msg):
        if not self._enabled:
            self._node.get_logger().warning(
                f'Trying to publish on the topic {self.topic_name!r}, but the publisher is not activated',
                once=True)
            return
        super().publish(msg)


class LifecycleNode(_Node):
    """rclpy.lifecycle.LifecycleNode: a Node with the lifecycle state machine."""

    def __init__(self, node_name, *args, enable_communication_interface=True, **kwargs):
        super().__init__(node_name, *args, **kwargs)
        self._lifecycle_state = UNCONFIGURED
        self._managed_entities = set()

    @property
    def lifecycle_state(self):
        """Return the current primary state (stand-in helper; rclpy keeps it in its state machine)."""
        return self._lifecycle_state

    def create_lifecycle_publisher(self, msg_type, topic, qos_profile, *, callback_group=None, **_kwargs):
        publisher = LifecyclePublisher(self, msg_type, self.resolve_topic_name(topic), as_profile(qos_profile),
                                       topic)
        self._context.graph.add_publisher(publisher)
        self.publishers.append(publisher)
        self._managed_entities.add(publisher)
        return publisher

    def destroy_lifecycle_publisher(self, publisher):
        self._managed_entities.discard(publisher)
        return self.destroy_publisher(publisher)

    def _trigger(self, transition):
        sources, target = _TRANSITIONS[transition]
        if self._lifecycle_state not in sources:
            raise RuntimeError(f'cannot {transition} from state {self._lifecycle_state.label!r}')
        callback = getattr(self, f'on_{transition}')
        try:
            result = callback(self._lifecycle_state)
        except Exception:  # noqa: BLE001 - rclpy turns an exception into ERROR
            result = TransitionCallbackReturn.ERROR
        if result == TransitionCallbackReturn.SUCCESS:
            self._lifecycle_state = target
        elif result == TransitionCallbackReturn.ERROR:
            recovered = self.on_error(self._lifecycle_state)
            self._lifecycle_state = UNCONFIGURED if recovered == TransitionCallbackReturn.SUCCESS else FINALIZED
        return result

    def trigger_configure(self):
        return self._trigger('configure')

    def trigger_activate(self):
        return self._trigger('activate')

    def trigger_deactivate(self):
        return self._trigger('deactivate')

    def trigger_cleanup(self):
        return self._trigger('cleanup')

    def trigger_shutdown(self):
        return self._trigger('shutdown')

    def on_configure(self, state):
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state):
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state):
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state):
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state):
        for entity in list(self._managed_entities):
            entity.on_activate(state)
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state):
        for entity in list(self._managed_entities):
            entity.on_deactivate(state)
        return TransitionCallbackReturn.SUCCESS


Node = LifecycleNode
State = LifecycleState
Publisher = LifecyclePublisher
