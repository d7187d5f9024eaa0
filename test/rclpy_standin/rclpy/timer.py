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

"""rclpy.timer.Timer: a periodic callback; late calls are not queued up (like rcl timers)."""

import time


class Timer:
    def __init__(self, node, callback, period_sec, callback_group, autostart=True):
        if period_sec <= 0:
            raise ValueError('timer period must be positive')
        self._node = node
        self.callback = callback
        self.timer_period_ns = int(period_sec * 1e9)
        self.callback_group = callback_group
        self._canceled = not autostart
        self._next = time.monotonic() + period_sec

    @property
    def timer_period_sec(self):
        return self.timer_period_ns / 1e9

    def _deadline(self):
        return None if self._canceled else self._next

    def _ready(self):
        return not self._canceled and time.monotonic() >= self._next

    def _take(self):
        if not self._ready():
            return None
        now = time.monotonic()
        period = self.timer_period_sec
        self._next += period
        if self._next <= now:  # fell behind: skip missed periods
            self._next = now + period
        return self.callback

    def cancel(self):
        self._canceled = True

    def is_canceled(self):
        return self._canceled

    def reset(self):
        self._canceled = False
        self._next = time.monotonic() + self.timer_period_sec
        self._node.context.notify()

    def is_ready(self):
        return self._ready()

    def time_until_next_call(self):
        return None if self._canceled else int(max(0.0, self._next - time.monotonic()) * 1e9)

    def destroy(self):
        self._canceled = True
