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
rclpy.action.server: ActionServer and ServerGoalHandle with rcl_action's goal state machine.

Kept from rclpy/rcl_action:
- goal requests go to ``goal_callback(goal)``; an accepted goal gets a ``ServerGoalHandle`` in
  ACCEPTED and is passed to ``handle_accepted_callback`` (default: ``goal_handle.execute()``);
- ``execute()`` moves ACCEPTED -> EXECUTING (unless a cancel already moved it to CANCELING) and
  schedules the execute callback as an executor task (no callback group);
- the execute callback RETURNS the Result; returning while the goal is still active aborts it with
  a warning; an exception aborts it with an empty Result;
- ``cancel_callback`` defaults to REJECT; ACCEPT moves the goal to CANCELING;
- legal transitions only (EXECUTE from ACCEPTED; CANCEL from ACCEPTED/EXECUTING; SUCCEED and ABORT
  from EXECUTING/CANCELING; CANCELED from CANCELING); anything else raises ``RCLError``;
- ``publish_feedback`` raises TypeError unless given ``ActionType.Feedback``.
"""

from enum import Enum
import threading
import traceback

from action_msgs.msg import GoalInfo, GoalStatus, GoalStatusArray
from action_msgs.srv import CancelGoal

from rclpy._graph import Inbox
from rclpy._rclpy_pybind11 import RCLError
from rclpy.task import Future


class GoalResponse(Enum):
    REJECT = 1
    ACCEPT = 2


class CancelResponse(Enum):
    REJECT = 1
    ACCEPT = 2


class GoalEvent(Enum):
    EXECUTE = 1
    CANCEL_GOAL = 2
    SUCCEED = 3
    ABORT = 4
    CANCELED = 5


_TRANSITIONS = {
    (GoalStatus.STATUS_ACCEPTED, GoalEvent.EXECUTE): GoalStatus.STATUS_EXECUTING,
    (GoalStatus.STATUS_ACCEPTED, GoalEvent.CANCEL_GOAL): GoalStatus.STATUS_CANCELING,
    (GoalStatus.STATUS_EXECUTING, GoalEvent.CANCEL_GOAL): GoalStatus.STATUS_CANCELING,
    (GoalStatus.STATUS_EXECUTING, GoalEvent.SUCCEED): GoalStatus.STATUS_SUCCEEDED,
    (GoalStatus.STATUS_CANCELING, GoalEvent.SUCCEED): GoalStatus.STATUS_SUCCEEDED,
    (GoalStatus.STATUS_EXECUTING, GoalEvent.ABORT): GoalStatus.STATUS_ABORTED,
    (GoalStatus.STATUS_CANCELING, GoalEvent.ABORT): GoalStatus.STATUS_ABORTED,
    (GoalStatus.STATUS_CANCELING, GoalEvent.CANCELED): GoalStatus.STATUS_CANCELED,
}
_ACTIVE = (GoalStatus.STATUS_ACCEPTED, GoalStatus.STATUS_EXECUTING, GoalStatus.STATUS_CANCELING)


class ServerGoalHandle:
    def __init__(self, action_server, goal_info, goal_request):
        self._action_server = action_server
        self._goal_info = goal_info
        self._goal_request = goal_request
        self._status = GoalStatus.STATUS_ACCEPTED
        self._result_future = Future()
        self._lock = threading.Lock()
        self._destroyed = False

    def __eq__(self, other):
        return self.goal_id == other.goal_id

    def __ne__(self, other):
        return self.goal_id != other.goal_id

    __hash__ = object.__hash__

    @property
    def request(self):
        return self._goal_request

    @property
    def goal_id(self):
        return self._goal_info.goal_id

    @property
    def is_active(self):
        with self._lock:
            return not self._destroyed and self._status in _ACTIVE

    @property
    def is_cancel_requested(self):
        return self.status == GoalStatus.STATUS_CANCELING

    @property
    def status(self):
        with self._lock:
            return GoalStatus.STATUS_UNKNOWN if self._destroyed else self._status

    def _update_state(self, event):
        with self._lock:
            if self._destroyed:
                return
            new = _TRANSITIONS.get((self._status, event))
            if new is None:
                raise RCLError(f'goal_handle attempted invalid transition from state {self._status} '
                               f'with event {event.name}')
            self._status = new
        self._action_server._publish_status()

    def execute(self, execute_callback=None):
        if not self.is_cancel_requested:
            self._update_state(GoalEvent.EXECUTE)
        self._action_server.notify_execute(self, execute_callback)

    def publish_feedback(self, feedback):
        if not isinstance(feedback, self._action_server.action_type.Feedback):
            raise TypeError()
        with self._lock:
            if self._destroyed:
                return
        message = self._action_server.action_type.Impl.FeedbackMessage()
        message.goal_id = self.goal_id
        message.feedback = feedback
        self._action_server._publish_feedback(message)

    def succeed(self):
        self._update_state(GoalEvent.SUCCEED)

    def abort(self):
        self._update_state(GoalEvent.ABORT)

    def canceled(self):
        self._update_state(GoalEvent.CANCELED)

    def destroy(self):
        with self._lock:
            self._destroyed = True


def default_handle_accepted_callback(goal_handle):
    goal_handle.execute()


def default_goal_callback(goal_request):
    return GoalResponse.ACCEPT


def default_cancel_callback(cancel_request):
    return CancelResponse.REJECT


class ActionServer:
    def __init__(self, node, action_type, action_name, execute_callback, *, callback_group=None,
                 goal_callback=default_goal_callback,
                 handle_accepted_callback=default_handle_accepted_callback,
                 cancel_callback=default_cancel_callback, result_timeout=900, **_qos_kwargs):
        if callback_group is None:
            callback_group = node.default_callback_group
        self.callback_group = callback_group
        self._node = node
        self._action_type = action_type
        self.action_name = node.resolve_topic_name(action_name)
        self.register_goal_callback(goal_callback)
        self.register_cancel_callback(cancel_callback)
        self.register_handle_accepted_callback(handle_accepted_callback)
        self.register_execute_callback(execute_callback)
        self._goal_handles = {}
        self._inbox = Inbox(node.context)
        self._lock = threading.Lock()
        callback_group.add_entity(self)
        node.add_waitable(self)
        node.context.graph.add_action_server(self)

    @property
    def action_type(self):
        return self._action_type

    # -- registration (same names as rclpy) -----------------------------------------------------
    def register_goal_callback(self, goal_callback):
        self._goal_callback = goal_callback or default_goal_callback

    def register_cancel_callback(self, cancel_callback):
        self._cancel_callback = cancel_callback or default_cancel_callback

    def register_handle_accepted_callback(self, handle_accepted_callback):
        self._handle_accepted_callback = handle_accepted_callback or default_handle_accepted_callback

    def register_execute_callback(self, execute_callback):
        if not callable(execute_callback):
            raise TypeError('Failed to register goal execution callback: not callable')
        self._execute_callback = execute_callback

    # -- requests from clients ------------------------------------------------------------------
    def receive(self, kind, request, client, request_id):
        self._inbox.put((kind, request, client, request_id))

    def _ready(self):
        return len(self._inbox) > 0

    def _take(self):
        item = self._inbox.take()
        if item is None:
            return None
        kind, request, client, request_id = item
        handlers = {'goal': self._execute_goal_request, 'cancel': self._execute_cancel_request,
                    'result': self._execute_get_result_request}
        return lambda: handlers[kind](request, client, request_id)

    def _execute_goal_request(self, request, client, request_id):
        goal_info = GoalInfo()
        goal_info.goal_id = request.goal_id
        key = bytes(request.goal_id.uuid)
        accepted = False
        if key not in self._goal_handles:
            response = self._goal_callback(request.goal)
            if not isinstance(response, GoalResponse):
                self._node.get_logger().warning(
                    'Goal request callback did not return a GoalResponse type. Rejecting goal.')
            else:
                accepted = response == GoalResponse.ACCEPT
        if accepted:
            goal_info.stamp = self._node.get_clock().now().to_msg()
            goal_handle = ServerGoalHandle(self, goal_info, request.goal)
            with self._lock:
                self._goal_handles[key] = goal_handle
        response_msg = self._action_type.Impl.SendGoalService.Response()
        response_msg.accepted = accepted
        response_msg.stamp = goal_info.stamp
        client.deliver('goal_response', request_id, response_msg)
        if accepted:
            self._publish_status()
            self._handle_accepted_callback(goal_handle)

    def _execute_goal(self, execute_callback, goal_handle):
        try:
            execute_result = execute_callback(goal_handle)
        except Exception as ex:  # noqa: BLE001 - mirrors rclpy: log, empty result, abort
            execute_result = self._action_type.Result()
            self._node.get_logger().error(f'Error raised in execute callback: {ex}')
            traceback.print_exc()
        if goal_handle.is_active:
            self._node.get_logger().warning(
                f'Goal state not set, assuming aborted. Goal ID: {goal_handle.goal_id.uuid}')
            goal_handle.abort()
        result_response = self._action_type.Impl.GetResultService.Response()
        result_response.status = goal_handle.status
        result_response.result = execute_result
        goal_handle._result_future.set_result(result_response)

    def _execute_cancel_request(self, request, client, request_id):
        response = CancelGoal.Response()
        key = bytes(request.goal_info.goal_id.uuid)
        with self._lock:
            goal_handle = self._goal_handles.get(key)
        if goal_handle is None:
            response.return_code = CancelGoal.Response.ERROR_UNKNOWN_GOAL_ID
        elif not goal_handle.is_active:
            response.return_code = CancelGoal.Response.ERROR_GOAL_TERMINATED
        elif self._cancel_callback(goal_handle) == CancelResponse.ACCEPT:
            goal_handle._update_state(GoalEvent.CANCEL_GOAL)
            info = GoalInfo()
            info.goal_id = goal_handle.goal_id
            response.goals_canceling = [info]
        else:
            response.return_code = CancelGoal.Response.ERROR_REJECTED
        client.deliver('cancel_response', request_id, response)

    def _execute_get_result_request(self, request, client, request_id):
        key = bytes(request.goal_id.uuid)
        with self._lock:
            goal_handle = self._goal_handles.get(key)
        if goal_handle is None:
            response = self._action_type.Impl.GetResultService.Response()
            response.status = GoalStatus.STATUS_UNKNOWN
            client.deliver('result_response', request_id, response)
            return
        goal_handle._result_future.add_done_callback(
            lambda future: client.deliver('result_response', request_id, future.result()))

    # -- outputs ---------------------------------------------------------------------------------
    def notify_execute(self, goal_handle, execute_callback):
        if execute_callback is None:
            execute_callback = self._execute_callback
        self._node.executor.create_task(self._execute_goal, execute_callback, goal_handle)

    def _publish_feedback(self, message):
        for client in self._node.context.graph.action_clients_for(self.action_name, self._action_type):
            client.deliver('feedback', None, message)

    def _publish_status(self):
        status_array = GoalStatusArray()
        with self._lock:
            handles = list(self._goal_handles.values())
        for handle in handles:
            status = GoalStatus()
            status.goal_info = handle._goal_info
            status.status = handle.status
            status_array.status_list.append(status)
        for client in self._node.context.graph.action_clients_for(self.action_name, self._action_type):
            client.deliver('status', None, status_array)

    def destroy(self):
        for goal_handle in list(self._goal_handles.values()):
            goal_handle.destroy()
        self._node.context.graph.remove(self)
        self._node.remove_waitable(self)
