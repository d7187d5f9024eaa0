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
A stand-in for the subset of rclpy that tinyalign_ros uses, for machines without ROS 2.

It runs nodes in one process: topics, services and actions are delivered in memory by
``rclpy._graph``; executors, callback groups, parameters and the action goal state machine follow
the real rclpy (Humble/Jazzy) semantics. Message classes come from ``rclpy_standin.msggen``, which
builds them from .msg/.srv/.action text. Tests import the real rclpy instead when it is installed
(see test/ros_env.py).
"""

from rclpy.context import get_default_context
from rclpy.executors import SingleThreadedExecutor

STANDIN = True

_global_executor = None


def init(*, args=None, context=None, domain_id=None, signal_handler_options=None):
    (context or get_default_context()).init(args)


def ok(*, context=None):
    return (context or get_default_context()).ok()


def shutdown(*, context=None, uninstall_handlers=None):
    global _global_executor
    (context or get_default_context()).shutdown()
    _global_executor = None


def try_shutdown(*, context=None, uninstall_handlers=None):
    global _global_executor
    (context or get_default_context()).try_shutdown()
    _global_executor = None


def get_global_executor():
    global _global_executor
    if _global_executor is None:
        _global_executor = SingleThreadedExecutor()
    return _global_executor


def create_node(node_name, **kwargs):
    from rclpy.node import Node
    return Node(node_name, **kwargs)


def spin(node, executor=None):
    executor = executor or get_global_executor()
    executor.add_node(node)
    try:
        executor.spin()
    finally:
        executor.remove_node(node)


def spin_once(node, *, executor=None, timeout_sec=None):
    executor = executor or get_global_executor()
    executor.add_node(node)
    try:
        executor.spin_once(timeout_sec=timeout_sec)
    finally:
        executor.remove_node(node)


def spin_until_future_complete(node, future, executor=None, timeout_sec=None):
    executor = executor or get_global_executor()
    executor.add_node(node)
    try:
        executor.spin_until_future_complete(future, timeout_sec)
    finally:
        executor.remove_node(node)
