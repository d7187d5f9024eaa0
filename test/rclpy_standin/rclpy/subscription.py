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

from dataclasses import dataclass
import threading

from rclpy._graph import Inbox
from rclpy.qos import HistoryPolicy


@dataclass
class MessageLostStatus:
    """rmw_message_lost_status_t as rclpy hands it to a message_lost callback."""

    total_count: int = 0
    total_count_change: int = 0


class Subscription:
    def __init__(self, node, msg_type, topic_name, callback, qos, callback_group, topic=None,
                 event_callbacks=None):
        self._node = node
        self.topic = topic or topic_name  # as given by the user; topic_name is the resolved name
        self.msg_type = msg_type
        self.topic_name = topic_name
        self.callback = callback
        self.qos = qos
        self.callback_group = callback_group
        depth = qos.depth if qos.history == HistoryPolicy.KEEP_LAST else None
        self._inbox = Inbox(node.context, maxlen=depth or None)
        self._depth = depth or None
        # message_lost events: a sample pushed out of a full KEEP_LAST queue before the callback took
        # it is reported the way an RMW reports lost samples (total and change since the last event),
        # through the executor in the subscription's callback group.
        self._on_message_lost = getattr(event_callbacks, 'message_lost', None)
        self._lost_total = 0
        self._lost_pending = 0
        self._lost_lock = threading.Lock()

    def deliver(self, msg):
        if self._on_message_lost is not None and self._depth is not None and len(self._inbox) >= self._depth:
            with self._lost_lock:
                self._lost_total += 1
                self._lost_pending += 1
        self._inbox.put(msg)

    def _ready(self):
        return len(self._inbox) > 0 or self._lost_pending > 0

    def _take(self):
        with self._lost_lock:
            if self._lost_pending:
                info = MessageLostStatus(total_count=self._lost_total, total_count_change=self._lost_pending)
                self._lost_pending = 0
                return lambda: self._on_message_lost(info)
        msg = self._inbox.take()
        if msg is None:
            return None
        return lambda: self.callback(msg)

    def destroy(self):
        self._node.context.graph.remove(self)
