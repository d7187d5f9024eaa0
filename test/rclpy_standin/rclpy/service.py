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

"""rclpy.service.Service: requests arrive in an inbox; the callback's response must be typed."""

from rclpy._graph import Inbox


class Service:
    def __init__(self, node, srv_type, srv_name, callback, callback_group):
        self._node = node
        self.srv_type = srv_type
        self.srv_name = srv_name
        self.callback = callback
        self.callback_group = callback_group
        self._inbox = Inbox(node.context)

    def deliver(self, request, client, request_id):
        self._inbox.put((request, client, request_id))

    def _ready(self):
        return len(self._inbox) > 0

    def _take(self):
        item = self._inbox.take()
        if item is None:
            return None
        request, client, request_id = item

        def handler():
            response = self.callback(request, self.srv_type.Response())
            if not isinstance(response, self.srv_type.Response):
                raise TypeError(f'service {self.srv_name} callback returned {type(response).__name__}, '
                                f'expected {self.srv_type.Response.__name__}')
            client.deliver_response(request_id, response)
        return handler

    def destroy(self):
        self._node.context.graph.remove(self)
