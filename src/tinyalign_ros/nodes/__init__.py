"""Thin ROS 2 nodes over the engine: they translate messages and parameters, nothing more.

- :mod:`.assistant_node`: audio topic -> utterances -> pipeline -> responses; personalize action;
  adapter services; diagnostics.
- :mod:`.audio_file_publisher`: plays WAV/FLAC files or a rosbag2 audio topic onto a topic.
- :mod:`.ros_audio`: both ``audio_common_msgs`` flavours <-> float32 16 kHz samples.
- :mod:`.job_interface`: what the nodes need from the personalization engine (Protocols).

Only the node modules import rclpy; ``ros_audio`` and ``job_interface`` load without ROS.
"""
