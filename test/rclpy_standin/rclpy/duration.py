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
