"""rclpy.clock.Clock (system time)."""

import time as _time
from enum import IntEnum

from rclpy.time import Time


class ClockType(IntEnum):
    UNINITIALIZED = 0
    ROS_TIME = 1
    SYSTEM_TIME = 2
    STEADY_TIME = 3


class Clock:
    def __init__(self, *, clock_type=ClockType.SYSTEM_TIME):
        self.clock_type = clock_type

    def now(self):
        return Time(nanoseconds=_time.time_ns())


class ROSClock(Clock):
    def __init__(self):
        super().__init__(clock_type=ClockType.ROS_TIME)
