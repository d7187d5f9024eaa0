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

"""rclpy.publisher.Publisher: type-checked publish into the in-process graph."""

from collections import deque

from rclpy.qos import HistoryPolicy


class Publisher:
    def __init__(self, node, msg_type, topic_name, qos, topic=None):
        self._node = node
        self.topic = topic or topic_name  # as given by the user; topic_name is the resolved name
        self.msg_type = msg_type
        self.topic_name = topic_name
        self.qos = qos
        depth = qos.depth if qos.history == HistoryPolicy.KEEP_LAST else None
        self.latched = deque(maxlen=depth or None)
        self._destroyed = False

    @property
    def qos_profile(self):
        return self.qos

    def publish(self, msg):
        if not isinstance(msg, (self.msg_type, bytes)):
            raise TypeError(f'Expected {self.msg_type.__name__}, got {type(msg).__name__}')
        if self._destroyed:
            raise RuntimeError('publisher has been destroyed')
        self._node.context.graph.publish(self, msg)

    def get_subscription_count(self):
        return self._node.context.graph.count(self.topic_name, 'sub')

    def destroy(self):
        self._destroyed = True
        self._node.context.graph.remove(self)
