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

r"""
Diagnostics for rqt_runtime_monitor / rqt_robot_monitor, built without diagnostic_updater.

The node publishes ``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics`` from its own timer.
``diagnostic_updater`` is not used: it would add a dependency and declare its own parameter, and
the statuses here are simple snapshots of counters the node keeps anyway.

Status levels are the message's own constants (bytes in rclpy: ``DiagnosticStatus.WARN`` is
``b'\x01'``), never plain ints, so the array is valid for the real message type.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
import math
import threading
from typing import Any, Iterable

import numpy as np

OK, WARN, ERROR, STALE = 'OK', 'WARN', 'ERROR', 'STALE'
# A status message or value longer than this is cut: fields copied from hostile input (a 100 kB
# sample_format) must not be repeated in every diagnostics message.
MAX_TEXT_CHARS = 200
_SEVERITY = {OK: 0, WARN: 1, ERROR: 2, STALE: 3}


class LatencyWindow:
    """The last ``size`` latencies of each kind, for percentiles (thread-safe)."""

    def __init__(self, size: int = 100) -> None:
        self.size = size
        self._values: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, kind: str, value_ms: float) -> None:
        if not math.isfinite(value_ms):
            return
        with self._lock:
            self._values.setdefault(kind, deque(maxlen=self.size)).append(float(value_ms))

    def percentiles(self, kind: str, qs: Iterable[float] = (50, 90)) -> dict[str, float]:
        with self._lock:
            values = list(self._values.get(kind, ()))
        if not values:
            return {}
        arr = np.asarray(values)
        out = {f'p{int(q)}': float(np.percentile(arr, q)) for q in qs}
        out['max'] = float(arr.max())
        out['n'] = float(len(values))
        return out


@dataclass
class Status:
    """One DiagnosticStatus, message-free (converted by :func:`to_message`)."""

    name: str
    level: str = OK
    message: str = 'ok'
    values: dict[str, Any] = field(default_factory=dict)

    def escalate(self, level: str, message: str) -> None:
        """Raise the level (never lower it); the first message of the highest level wins."""
        if _SEVERITY[level] > _SEVERITY[self.level]:
            self.level, self.message = level, message


def cut(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f'{text[:limit]}... ({len(text)} characters)'


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:.1f}' if math.isfinite(value) else 'n/a'
    if value is None:
        return ''
    return cut(str(value))


def latency_values(window: LatencyWindow, kind: str, label: str) -> dict[str, str]:
    stats = window.percentiles(kind)
    if not stats:
        return {f'{label} p50 [ms]': 'n/a'}
    return {f'{label} p50 [ms]': format_value(stats['p50']), f'{label} p90 [ms]': format_value(stats['p90']),
            f'{label} max [ms]': format_value(stats['max']), f'{label} samples': str(int(stats['n']))}


def to_message(statuses: list[Status], stamp: Any, hardware_id: str) -> Any:
    """Build the ``DiagnosticArray`` (imported here so this module loads without ROS)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    levels = {OK: DiagnosticStatus.OK, WARN: DiagnosticStatus.WARN, ERROR: DiagnosticStatus.ERROR,
              STALE: DiagnosticStatus.STALE}
    array = DiagnosticArray()
    array.header.stamp = stamp
    out = []
    for status in statuses:
        msg = DiagnosticStatus()
        msg.level = levels[status.level]
        msg.name = status.name
        msg.message = cut(status.message)
        msg.hardware_id = cut(hardware_id)
        msg.values = [KeyValue(key=cut(str(k)), value=format_value(v)) for k, v in status.values.items()]
        out.append(msg)
    array.status = out
    return array
