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

"""rclpy.task: Future and Task (a Future that runs a callable on an executor)."""

import threading


class CancelledError(Exception):
    pass


class Future:
    def __init__(self, *, executor=None):
        self._state = 'PENDING'
        self._result = None
        self._exception = None
        self._callbacks = []
        self._lock = threading.Lock()
        self._event = threading.Event()

    def cancel(self):
        with self._lock:
            if self._state != 'PENDING':
                return False
            self._state = 'CANCELLED'
        self._finish()
        return True

    def cancelled(self):
        return self._state == 'CANCELLED'

    def done(self):
        return self._state != 'PENDING'

    def result(self):
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self):
        return self._exception

    def set_result(self, result):
        with self._lock:
            self._result = result
            self._state = 'FINISHED'
        self._finish()

    def set_exception(self, exception):
        with self._lock:
            self._exception = exception
            self._state = 'FINISHED'
        self._finish()

    def add_done_callback(self, callback):
        with self._lock:
            if self._state == 'PENDING':
                self._callbacks.append(callback)
                return
        callback(self)

    def _finish(self):
        self._event.set()
        with self._lock:
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)


class Task(Future):
    """Runs ``handler(*args, **kwargs)`` once when an executor calls it."""

    def __init__(self, handler, args=None, kwargs=None, executor=None):
        super().__init__(executor=executor)
        self._handler = handler
        self._args = args or ()
        self._kwargs = kwargs or {}
        self._executing = False

    def executing(self):
        return self._executing

    def __call__(self):
        if self.done() or self._executing:
            return
        self._executing = True
        try:
            self.set_result(self._handler(*self._args, **self._kwargs))
        except Exception as exc:  # noqa: BLE001 - a task's failure is its result, like rclpy
            self.set_exception(exc)
        finally:
            self._executing = False
