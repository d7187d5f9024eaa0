"""Stand-in for the C extension's exception type (real rclpy: rclpy._rclpy_pybind11.RCLError)."""


class RCLError(RuntimeError):
    """An error reported by the rcl layer, e.g. an invalid goal state transition."""
