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
Conventions of the package's own messages (tinyalign_msgs) that the node's topics, services and action share.

A float that was not measured is written as :data:`NOT_MEASURED` (documented in
AssistantResponse.msg, Metric.msg and Personalize.action) rather than NaN: Humble's rosidl_python
only accepts NaN since a late backport. Engine metrics become ``Metric`` lists in one place so the
adapter services and the personalize result report them alike.
"""

from __future__ import annotations

from tinyalign_msgs.msg import Metric

from tinyalign_ros.nodes.parameters import clip
from tinyalign_ros.nodes.ros_audio import finite_or

NOT_MEASURED = -1.0


def metrics_to_msgs(metrics: dict[str, float]) -> list[Metric]:
    return [Metric(name=clip(str(k)), value=finite_or(v, NOT_MEASURED)) for k, v in sorted(metrics.items())]
