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

"""rclpy.duration.Duration (nanosecond resolution)."""

from builtin_interfaces.msg import Duration as DurationMsg


class Duration:
    def __init__(self, *, seconds=0, nanoseconds=0):
        self._nanoseconds = int(seconds * 1e9) + int(nanoseconds)

    @property
    def nanoseconds(self):
        return self._nanoseconds

    def to_msg(self):
        sec, nanosec = divmod(self._nanoseconds, 10**9)
        return DurationMsg(sec=int(sec), nanosec=int(nanosec))

    def __eq__(self, other):
        return isinstance(other, Duration) and other.nanoseconds == self.nanoseconds

    def __lt__(self, other):
        return self.nanoseconds < other.nanoseconds
