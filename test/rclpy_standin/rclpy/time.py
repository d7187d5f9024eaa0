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

"""rclpy.time.Time (system clock only in the stand-in)."""

from builtin_interfaces.msg import Time as TimeMsg

from rclpy.duration import Duration


class Time:
    def __init__(self, *, seconds=0, nanoseconds=0):
        total = int(seconds * 1e9) + int(nanoseconds)
        if total < 0:
            raise ValueError('Time must be non-negative')
        self._nanoseconds = total

    @property
    def nanoseconds(self):
        return self._nanoseconds

    def seconds_nanoseconds(self):
        return divmod(self._nanoseconds, 10**9)

    def to_msg(self):
        sec, nanosec = divmod(self._nanoseconds, 10**9)
        return TimeMsg(sec=int(sec), nanosec=int(nanosec))

    @classmethod
    def from_msg(cls, msg):
        return cls(seconds=msg.sec, nanoseconds=msg.nanosec)

    def __sub__(self, other):
        if isinstance(other, Time):
            return Duration(nanoseconds=self._nanoseconds - other._nanoseconds)
        return Time(nanoseconds=self._nanoseconds - other.nanoseconds)

    def __add__(self, other):
        return Time(nanoseconds=self._nanoseconds + other.nanoseconds)

    def __eq__(self, other):
        return isinstance(other, Time) and other._nanoseconds == self._nanoseconds

    def __lt__(self, other):
        return self._nanoseconds < other._nanoseconds
