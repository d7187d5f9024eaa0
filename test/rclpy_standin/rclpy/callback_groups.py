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

"""Callback groups: which callbacks may run at the same time in a multi-threaded executor."""

import threading


class CallbackGroup:
    def __init__(self):
        self.entities = set()

    def add_entity(self, entity):
        self.entities.add(entity)

    def has_entity(self, entity):
        return entity in self.entities

    def can_execute(self, entity):
        raise NotImplementedError

    def beginning_execution(self, entity):
        raise NotImplementedError

    def ending_execution(self, entity):
        raise NotImplementedError


class ReentrantCallbackGroup(CallbackGroup):
    """Any number of its callbacks may run in parallel."""

    def can_execute(self, entity):
        return True

    def beginning_execution(self, entity):
        return True

    def ending_execution(self, entity):
        pass


class MutuallyExclusiveCallbackGroup(CallbackGroup):
    """One of its callbacks at a time (the default group of a node is one of these)."""

    def __init__(self):
        super().__init__()
        self._active_entity = None
        self._lock = threading.Lock()

    def can_execute(self, entity):
        with self._lock:
            return self._active_entity is None

    def beginning_execution(self, entity):
        with self._lock:
            if self._active_entity is None:
                self._active_entity = entity
                return True
        return False

    def ending_execution(self, entity):
        with self._lock:
            self._active_entity = None
