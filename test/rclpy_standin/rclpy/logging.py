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
rclpy.logging: named loggers with rcutils' extra keyword arguments (throttle, once, skip_first).

Records go to Python logging (logger ``rclpy.<name>``) and to ``RECORDS`` so stand-in tests can
look at what a node logged.
"""

from enum import IntEnum
import logging as _logging
import threading
import time as _time

RECORDS = []
_LOCK = threading.Lock()


class LoggingSeverity(IntEnum):
    UNSET = 0
    DEBUG = 10
    INFO = 20
    WARN = 30
    ERROR = 40
    FATAL = 50


class RcutilsLogger:
    def __init__(self, name=''):
        self.name = name
        self._py = _logging.getLogger('rclpy.' + name if name else 'rclpy')
        self._sites = {}

    def get_child(self, name):
        return RcutilsLogger(f'{self.name}.{name}' if self.name else name)

    def set_level(self, level):
        self._py.setLevel(int(level))

    def get_effective_level(self):
        return LoggingSeverity(self._py.getEffectiveLevel() or 0)

    def log(self, message, severity, **kwargs):
        allowed = {'throttle_duration_sec', 'throttle_time_source_type', 'once', 'skip_first', 'name'}
        unknown = set(kwargs) - allowed
        if unknown:
            raise TypeError(f'unsupported logging arguments {sorted(unknown)}')
        site = (str(message) if kwargs.get('once') else None, severity, kwargs.get('throttle_duration_sec'))
        now = _time.monotonic()
        with _LOCK:
            if kwargs.get('once'):
                if site in self._sites:
                    return False
                self._sites[site] = now
            period = kwargs.get('throttle_duration_sec')
            if period:
                key = ('throttle', severity, _caller_key())
                last = self._sites.get(key)
                if last is not None and now - last < period:
                    return False
                self._sites[key] = now
            RECORDS.append((self.name, LoggingSeverity(severity).name, str(message)))
        self._py.log(int(severity), '[%s] %s', self.name, message)
        return True

    def debug(self, message, **kwargs):
        return self.log(message, LoggingSeverity.DEBUG, **kwargs)

    def info(self, message, **kwargs):
        return self.log(message, LoggingSeverity.INFO, **kwargs)

    def warning(self, message, **kwargs):
        return self.log(message, LoggingSeverity.WARN, **kwargs)

    warn = warning

    def error(self, message, **kwargs):
        return self.log(message, LoggingSeverity.ERROR, **kwargs)

    def fatal(self, message, **kwargs):
        return self.log(message, LoggingSeverity.FATAL, **kwargs)


def _caller_key():
    import sys
    frame = sys._getframe(3)
    return (frame.f_code.co_filename, frame.f_lineno)


def get_logger(name):
    return RcutilsLogger(name)
