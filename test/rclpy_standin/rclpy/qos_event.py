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

"""rclpy.qos_event (Humble's module name): the subscription event callbacks the nodes use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class SubscriptionEventCallbacks:
    """Callbacks for QoS events of a subscription; only message_lost is delivered by the stand-in."""

    deadline: Callable[[Any], None] | None = None
    incompatible_qos: Callable[[Any], None] | None = None
    liveliness: Callable[[Any], None] | None = None
    message_lost: Callable[[Any], None] | None = None
    incompatible_type: Callable[[Any], None] | None = None
    matched: Callable[[Any], None] | None = None
    use_default_callbacks: bool = True
