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
On-device personalization: learn one operator's voice from a few minutes of speech, safely.

A goal flows through the modules in one direction:

- :mod:`.api`: the job contract (request, progress, result, the job and store Protocols, the
  backend loader) that the nodes and the CLI are written against; it loads without torch.
- :mod:`.job`: :class:`~.job.PersonalizationJob` runs the phases, and :func:`~.job.ros_backend`
  is the factory the node loads;
- :mod:`.config` (the run's defaults), :mod:`.sources` (folder and rosbag speech),
  :mod:`.sentences` (general speech and the canary), :mod:`.methods` (training part of the projector),
  :mod:`.gate` (keep the adapter? which mode?), :mod:`.progress` (the reports), :mod:`.report`
  (the plot): the parts of a run;
- :mod:`.store`: where the operator's recordings and adapters end up.

Import the modules themselves: this package imports nothing, so the contract stays light.
"""
