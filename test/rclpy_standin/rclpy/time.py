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
