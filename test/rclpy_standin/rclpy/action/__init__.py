"""rclpy.action: ActionServer/ActionClient and the goal/cancel responses."""

from rclpy.action.client import ActionClient, ClientGoalHandle  # noqa: F401
from rclpy.action.server import (ActionServer, CancelResponse, GoalResponse,  # noqa: F401
                                 ServerGoalHandle)
