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

"""rclpy.subscription.Subscription: a QoS-bounded inbox drained by executors."""

from rclpy._graph import Inbox
from rclpy.qos import HistoryPolicy


class Subscription:
    def __init__(self, node, msg_type, topic_name, callback, qos, callback_group, topic=None):
        self._node = node
        self.topic = topic or topic_name  # as given by the user; topic_name is the resolved name
        self.msg_type = msg_type
        self.topic_name = topic_name
        self.callback = callback
        self.qos = qos
        self.callback_group = callback_group
        depth = qos.depth if qos.history == HistoryPolicy.KEEP_LAST else None
        self._inbox = Inbox(node.context, maxlen=depth or None)

    def deliver(self, msg):
        self._inbox.put(msg)

    def _ready(self):
        return len(self._inbox) > 0

    def _take(self):
        msg = self._inbox.take()
        if msg is None:
            return None
        return lambda: self.callback(msg)

    def destroy(self):
        self._node.context.graph.remove(self)
