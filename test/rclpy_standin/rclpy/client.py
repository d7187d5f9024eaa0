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

"""rclpy.client.Client: call_async returns a Future completed when the client's node is spun."""

import copy
import itertools
import threading
import time

from rclpy._graph import Inbox
from rclpy.task import Future


class Client:
    def __init__(self, node, srv_type, srv_name, callback_group):
        self._node = node
        self.srv_type = srv_type
        self.srv_name = srv_name
        self.callback_group = callback_group
        self._inbox = Inbox(node.context)
        self._pending = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def service_is_ready(self):
        return self._node.context.graph.find_service(self.srv_name, self.srv_type) is not None

    def wait_for_service(self, timeout_sec=None):
        deadline = None if timeout_sec is None else time.monotonic() + timeout_sec
        while not self.service_is_ready():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def call_async(self, request):
        if not isinstance(request, self.srv_type.Request):
            raise TypeError(f'Expected {self.srv_type.Request.__name__}, got {type(request).__name__}')
        future = Future()
        request_id = next(self._ids)
        with self._lock:
            self._pending[request_id] = future
        service = self._node.context.graph.find_service(self.srv_name, self.srv_type)
        if service is not None:
            service.deliver(copy.deepcopy(request), self, request_id)
        return future

    def deliver_response(self, request_id, response):
        self._inbox.put((request_id, copy.deepcopy(response)))

    def _ready(self):
        return len(self._inbox) > 0

    def _take(self):
        item = self._inbox.take()
        if item is None:
            return None
        request_id, response = item
        with self._lock:
            future = self._pending.pop(request_id, None)
        if future is None:
            return None
        return lambda: future.set_result(response)

    def destroy(self):
        pass
