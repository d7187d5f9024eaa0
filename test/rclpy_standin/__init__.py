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
A faithful in-process stand-in for the rclpy subset tinyalign_ros uses (see rclpy/__init__.py).

``install()`` makes ``import rclpy`` and the interface packages (std_msgs, diagnostic_msgs,
audio_common_msgs, tinyalign_msgs, ...) resolve to the stand-in. Only test/ros_env.py calls it,
and only when the real rclpy is not importable.
"""

from __future__ import annotations

from pathlib import Path
import sys

from . import msggen

HERE = Path(__file__).resolve().parent


def install(audio_flavour: str = 'ros-drivers') -> msggen.Registry:
    registry = msggen.install(audio_flavour)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return registry


def set_audio_flavour(flavour: str) -> None:
    """Switch which audio_common_msgs package exists (the two flavours share the name)."""
    msggen.install(flavour)
