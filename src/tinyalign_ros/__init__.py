"""tinyalign_ros: an aligned ASR-LLM voice assistant that learns its operator's voice on the robot.

The package is split into a ROS-free engine (audio, segmenter, encoder, projector, llm, adapter,
pipeline, train, personalize, evaluate, data, synth, cli) and thin ROS 2 nodes under ``nodes/``
that only translate messages and parameters into engine calls.
"""

__version__ = '0.1.0'
