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
Thin ROS 2 nodes over the engine: they translate messages and parameters, nothing more.

- :mod:`.assistant_node`: audio topic -> utterances -> pipeline -> responses; the node's lifecycle
  and its pipeline worker, wiring the parts below.
- :mod:`.parameters`: the assistant's parameter table and the checks every value passes.
- :mod:`.audio_input`: the assistant's audio subscriptions, decoding and segmentation.
- :mod:`.adapter_manager`: which operator's adapter answers, switching it, the adapter services.
- :mod:`.personalize_server`: the assistant's personalize action (one goal at a time, enrollment).
- :mod:`.diagnostics`: ``/diagnostics`` statuses and latency percentiles.
- :mod:`.messages`: conventions of tinyalign_msgs shared by topics, services and the action.
- :mod:`.audio_file_publisher`: plays WAV/FLAC files or a rosbag2 audio topic onto a topic.
- :mod:`.ros_audio`: which ``audio_common_msgs`` flavour is installed, and building its messages.

Only the node modules import rclpy. The nodes call the engine and never the other way round: what
they need from it is ROS-free and lives there (:mod:`tinyalign_ros.audio_messages` reads audio
messages, :mod:`tinyalign_ros.rosbag` reads bags, :mod:`tinyalign_ros.personalization.api` is the
personalization job's contract); ``test/test_layout.py`` checks the direction.
"""
