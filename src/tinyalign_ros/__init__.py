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
tinyalign_ros: an aligned ASR-LLM voice assistant that learns its operator's voice on the robot.

The package is split into a ROS-free engine (audio, audio_messages, rosbag, segmenter, encoder,
projector, model_files, llm, adapter, pipeline, routing, evaluate, data, synth, memory, and the
``training/``, ``personalization/`` and ``cli/`` packages) and thin ROS 2 nodes under
``nodes/`` that only translate messages and parameters into engine calls. Nothing outside
``nodes/`` imports them or rclpy (``test/test_layout.py``).
"""

__version__ = '0.1.0'
