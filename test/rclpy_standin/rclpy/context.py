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
rclpy.context: init/shutdown state, the global ROS arguments, and the in-process graph.

The stand-in has no middleware: every context owns a ``Graph`` that delivers messages between the
publishers and subscriptions (and services, actions) of its own process, applying QoS matching.
``wake`` is the condition executors wait on; anything that makes work ready notifies it.
"""

import threading


class Context:
    def __init__(self):
        self._ok = False
        self._lock = threading.RLock()
        self.wake = threading.Condition(self._lock)
        self._callbacks = []
        self.args = []
        self.graph = None

    def init(self, args=None, *, initialize_logging=True, domain_id=None):
        from rclpy._graph import Graph
        with self._lock:
            if self._ok:
                raise RuntimeError('Context.init() must only be called once')
            self.args = list(args or [])
            self.graph = Graph(self)
            self._ok = True

    def ok(self):
        with self._lock:
            return self._ok

    def shutdown(self):
        with self._lock:
            if not self._ok:
                raise RuntimeError('Context must be initialized before it can be shutdown')
            self._ok = False
            callbacks, self._callbacks = self._callbacks, []
            self.wake.notify_all()
        for callback in callbacks:
            callback()

    def try_shutdown(self):
        with self._lock:
            if self._ok:
                self.shutdown()

    def on_shutdown(self, callback):
        with self._lock:
            self._callbacks.append(callback)

    def notify(self):
        with self._lock:
            self.wake.notify_all()


_default_context = Context()


def get_default_context(*, shutting_down=False):
    return _default_context
