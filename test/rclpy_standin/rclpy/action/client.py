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

"""rclpy.action.client: ActionClient and ClientGoalHandle (futures completed by spinning the node)."""

import copy
import itertools
import threading
import time
import uuid

from action_msgs.msg import GoalStatus
from action_msgs.srv import CancelGoal
from rclpy._graph import Inbox
from rclpy.task import Future
from unique_identifier_msgs.msg import UUID


class ClientGoalHandle:
    def __init__(self, action_client, goal_id, goal_response):
        self._action_client = action_client
        self._goal_id = goal_id
        self._goal_response = goal_response
        self._status = GoalStatus.STATUS_UNKNOWN

    def __eq__(self, other):
        return self._goal_id == other.goal_id

    __hash__ = object.__hash__

    @property
    def goal_id(self):
        return self._goal_id

    @property
    def stamp(self):
        return self._goal_response.stamp

    @property
    def accepted(self):
        return self._goal_response.accepted

    @property
    def status(self):
        return self._status

    def cancel_goal_async(self):
        return self._action_client._cancel_goal_async(self)

    def get_result_async(self):
        return self._action_client._get_result_async(self)


class ActionClient:
    def __init__(self, node, action_type, action_name, *, callback_group=None, **_qos_kwargs):
        if callback_group is None:
            callback_group = node.default_callback_group
        self.callback_group = callback_group
        self._node = node
        self._action_type = action_type
        self.action_name = node.resolve_topic_name(action_name)
        self._inbox = Inbox(node.context)
        self._ids = itertools.count(1)
        self._pending = {}
        self._feedback_callbacks = {}
        self._goal_handles = {}
        self._lock = threading.Lock()
        callback_group.add_entity(self)
        node.add_waitable(self)
        node.context.graph.add_action_client(self)

    @property
    def action_type(self):
        return self._action_type

    def _server(self):
        return self._node.context.graph.find_action_server(self.action_name, self._action_type)

    def server_is_ready(self):
        return self._server() is not None

    def wait_for_server(self, timeout_sec=None):
        end = None if timeout_sec is None else time.monotonic() + timeout_sec
        while not self.server_is_ready():
            if end is not None and time.monotonic() >= end:
                return False
            time.sleep(0.01)
        return True

    def _send(self, kind, request, context):
        future = Future()
        request_id = next(self._ids)
        with self._lock:
            self._pending[request_id] = (future, context)
        server = self._server()
        if server is not None:
            server.receive(kind, copy.deepcopy(request), self, request_id)
        return future

    def send_goal_async(self, goal, feedback_callback=None, goal_uuid=None):
        if not isinstance(goal, self._action_type.Goal):
            raise TypeError()
        request = self._action_type.Impl.SendGoalService.Request()
        request.goal_id = goal_uuid or UUID(uuid=list(uuid.uuid4().bytes))
        request.goal = goal
        if feedback_callback is not None:
            with self._lock:
                self._feedback_callbacks[bytes(request.goal_id.uuid)] = feedback_callback
        return self._send('goal', request, request.goal_id)

    def _cancel_goal_async(self, goal_handle):
        request = CancelGoal.Request()
        request.goal_info.goal_id = goal_handle.goal_id
        return self._send('cancel', request, None)

    def _get_result_async(self, goal_handle):
        request = self._action_type.Impl.GetResultService.Request()
        request.goal_id = goal_handle.goal_id
        return self._send('result', request, goal_handle)

    # -- responses from the server (processed when this client's node is spun) ------------------
    def deliver(self, kind, request_id, message):
        self._inbox.put((kind, request_id, copy.deepcopy(message)))

    def _ready(self):
        return len(self._inbox) > 0

    def _take(self):
        item = self._inbox.take()
        if item is None:
            return None
        return lambda: self._handle(*item)

    def _handle(self, kind, request_id, message):
        if kind == 'feedback':
            with self._lock:
                callback = self._feedback_callbacks.get(bytes(message.goal_id.uuid))
            if callback is not None:
                callback(message)
            return
        if kind == 'status':
            for status in message.status_list:
                with self._lock:
                    handle = self._goal_handles.get(bytes(status.goal_info.goal_id.uuid))
                if handle is not None:
                    handle._status = status.status
            return
        with self._lock:
            future, context = self._pending.pop(request_id, (None, None))
        if future is None:
            return
        if kind == 'goal_response':
            handle = ClientGoalHandle(self, context, message)
            if message.accepted:
                with self._lock:
                    self._goal_handles[bytes(context.uuid)] = handle
            future.set_result(handle)
        elif kind == 'result_response':
            if context is not None:
                context._status = message.status
            future.set_result(message)
        else:
            future.set_result(message)

    def destroy(self):
        self._node.context.graph.remove(self)
        self._node.remove_waitable(self)
