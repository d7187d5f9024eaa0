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
rclpy.executors: single- and multi-threaded executors over the in-process graph.

Semantics kept from rclpy: an entity's callback runs only when its callback group allows it
(a mutually exclusive group runs one callback at a time, a reentrant group any number); tasks made
with ``create_task`` (action goal execution) belong to no group; ``MultiThreadedExecutor`` runs
callbacks on a thread pool of ``num_threads`` workers, so a blocked callback only blocks its thread
(and its group).
"""

from concurrent.futures import ThreadPoolExecutor
import os
import threading
import time

from rclpy.context import get_default_context
from rclpy.task import Task


class ExternalShutdownException(Exception):
    """Raised by spin calls when the context is shut down from elsewhere."""


class ShutdownException(Exception):
    """Raised by spin calls after the executor was shut down."""


class TimeoutException(Exception):
    pass


class _Work:
    def __init__(self, handler, entity, group):
        self.handler = handler
        self.entity = entity
        self.group = group


class Executor:
    def __init__(self, *, context=None):
        self._context = context or get_default_context()
        self._nodes = []
        self._tasks = []
        self._lock = threading.RLock()
        self._is_shutdown = False
        self._errors = []

    @property
    def context(self):
        return self._context

    # -- nodes and tasks ---------------------------------------------------------------------
    def add_node(self, node):
        with self._lock:
            if node in self._nodes:
                return False
            self._nodes.append(node)
        node.executor = self
        self._context.notify()
        return True

    def remove_node(self, node):
        with self._lock:
            if node in self._nodes:
                self._nodes.remove(node)

    def get_nodes(self):
        with self._lock:
            return list(self._nodes)

    def create_task(self, callback, *args, **kwargs):
        task = Task(callback, args, kwargs, executor=self)
        with self._lock:
            self._tasks.append(task)
        self._context.notify()
        return task

    def wake(self):
        self._context.notify()

    def shutdown(self, timeout_sec=None):
        self._is_shutdown = True
        self._context.notify()
        return True

    # -- finding work ------------------------------------------------------------------------
    def _find_work(self):
        with self._lock:
            self._tasks = [t for t in self._tasks if not t.done()]
            for task in self._tasks:
                if not task.executing() and not getattr(task, '_claimed', False):
                    task._claimed = True
                    return _Work(task, None, None)
            nodes = list(self._nodes)
        for node in nodes:
            for entity in node._entities():
                group = entity.callback_group
                if not entity._ready() or not group.can_execute(entity):
                    continue
                if not group.beginning_execution(entity):
                    continue
                handler = entity._take()
                if handler is None:
                    group.ending_execution(entity)
                    continue
                return _Work(handler, entity, group)
        return None

    def _next_deadline(self):
        deadlines = []
        for node in self.get_nodes():
            for timer in node.timers:
                deadline = timer._deadline()
                if deadline is not None:
                    deadlines.append(deadline)
        return min(deadlines) if deadlines else None

    def _wait_for_work(self, timeout_sec):
        """Block until work is found (returned) or ``timeout_sec`` passes (None)."""
        end = None if timeout_sec is None or timeout_sec < 0 else time.monotonic() + timeout_sec
        condition = self._context.wake
        while True:
            if not self._context.ok():
                raise ExternalShutdownException()
            if self._is_shutdown:
                raise ShutdownException()
            work = self._find_work()
            if work is not None:
                return work
            now = time.monotonic()
            if end is not None and now >= end:
                return None
            waits = [0.05]  # short poll: groups can become free without a notification
            if end is not None:
                waits.append(end - now)
            deadline = self._next_deadline()
            if deadline is not None:
                waits.append(max(0.0, deadline - now))
            with condition:
                condition.wait(max(0.0, min(waits)))

    def _run(self, work):
        try:
            work.handler()
        except Exception as exc:  # noqa: BLE001 - re-raised from spin_once, like rclpy
            if work.group is None:
                raise
            with self._lock:
                self._errors.append(exc)
        finally:
            if work.group is not None:
                work.group.ending_execution(work.entity)
            self._context.notify()

    # -- spinning ----------------------------------------------------------------------------
    def spin(self):
        while self._context.ok() and not self._is_shutdown:
            try:
                self.spin_once()
            except (ExternalShutdownException, ShutdownException):
                break

    def spin_until_future_complete(self, future, timeout_sec=None):
        end = None if timeout_sec is None else time.monotonic() + timeout_sec
        while self._context.ok() and not future.done() and not self._is_shutdown:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            try:
                self.spin_once(timeout_sec=min(0.1, remaining) if remaining is not None else 0.1)
            except (ExternalShutdownException, ShutdownException):
                return

    def spin_once(self, timeout_sec=None):
        raise NotImplementedError

    def spin_once_until_future_complete(self, future, timeout_sec=None):
        self.spin_once(timeout_sec)

    def _raise_pending(self):
        """Raise a callback's exception in the spinning thread, as rclpy does."""
        with self._lock:
            error = self._errors.pop(0) if self._errors else None
        if error is not None:
            raise error


class SingleThreadedExecutor(Executor):
    def spin_once(self, timeout_sec=None):
        work = self._wait_for_work(timeout_sec)
        if work is not None:
            self._run(work)
        self._raise_pending()


class MultiThreadedExecutor(Executor):
    def __init__(self, num_threads=None, *, context=None):
        super().__init__(context=context)
        if num_threads is None:
            num_threads = os.cpu_count() or 2
        if num_threads < 1:
            raise ValueError('num_threads must be at least 1')
        self._num_threads = num_threads
        self._pool = ThreadPoolExecutor(num_threads, thread_name_prefix='standin_executor')
        self._slots = threading.Semaphore(num_threads)

    def spin_once(self, timeout_sec=None):
        self._raise_pending()
        # Only take work when a worker is free, so taken messages never wait in a backlog.
        if not self._slots.acquire(timeout=timeout_sec if timeout_sec is not None and timeout_sec >= 0 else None):
            return
        try:
            work = self._wait_for_work(timeout_sec)
        except BaseException:
            self._slots.release()
            raise
        if work is None:
            self._slots.release()
            return

        def run():
            try:
                self._run(work)
            finally:
                self._slots.release()
        self._pool.submit(run)

    def shutdown(self, timeout_sec=None):
        super().shutdown(timeout_sec)
        self._pool.shutdown(wait=timeout_sec is None or timeout_sec > 0)
        return True
