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
Play WAV/FLAC files or a rosbag2 audio topic onto an audio topic, in real time, in either flavour.

For demos, tests and robots without a microphone: the assistant cannot tell this node from
``audio_capture`` (ros-drivers) or ``audio_capturer_node`` (mgonzs13). Files are decoded by the
engine (any rate, any channel count -> mono), followed by ``gap_s`` of silence so a VAD sees each
utterance end; bags are decoded with :func:`tinyalign_ros.rosbag.read_bag_audio` (either
flavour in, the configured flavour out). The stream is cut into ``chunk_ms`` messages published by
a timer at ``rate`` times real time. For ros-drivers the format is announced on a latched
``audio_info`` topic (and repeated every 5 s, like audio_capture).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from tinyalign_ros.audio import load_audio, SAMPLE_FORMATS, SAMPLE_RATE
from tinyalign_ros.audio_messages import AudioFormat, FLAVOUR_ROS_DRIVERS, FLAVOURS, MESSAGE_NAMES
from tinyalign_ros.nodes.ros_audio import encode, info_class, info_message, message_class, resolve_flavour
from tinyalign_ros.rosbag import read_bag_audio

try:
    from rclpy.executors import ExternalShutdownException
except ImportError:  # pragma: no cover
    class ExternalShutdownException(Exception):  # type: ignore[no-redef]
        pass

INFO_PERIOD_S = 5.0


def _descriptor(description: str, read_only: bool = True, int_range: tuple[int, int] | None = None,
                float_range: tuple[float, float] | None = None) -> ParameterDescriptor:
    d = ParameterDescriptor(description=description, read_only=read_only)
    if int_range:
        d.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)]
    if float_range:
        d.floating_point_range = [FloatingPointRange(from_value=float(float_range[0]),
                                                     to_value=float(float_range[1]), step=0.0)]
    return d


class AudioFilePublisher(Node):
    """Publishes audio from files or a bag; ``done`` is set when everything was played (no loop)."""

    def __init__(self, node_name: str = 'audio_file_publisher', **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        # An empty list would infer BYTE_ARRAY in rclpy; declare the type instead of a default.
        self.declare_parameter('files', Parameter.Type.STRING_ARRAY,
                               _descriptor('WAV/FLAC files to play in order (any rate; mixed down to mono).'))
        self.declare_parameter('bag', '', _descriptor('rosbag2 folder or file to play instead of files.'))
        self.declare_parameter('bag_topic', '', _descriptor('Audio topic in the bag; empty = the first one.'))
        self.declare_parameter('topic', 'audio', _descriptor('Audio topic to publish on.'))
        self.declare_parameter('info_topic', 'audio_info', _descriptor('AudioInfo topic (ros-drivers flavour).'))
        self.declare_parameter('flavour', 'auto', _descriptor(f'auto or one of {FLAVOURS}.'))
        self.declare_parameter('message', '', _descriptor(
            'Message type; empty = AudioData (ros-drivers) / AudioStamped (mgonzs13).'))
        self.declare_parameter('sample_format', 'S16LE', _descriptor(f'One of {SAMPLE_FORMATS}.'))
        self.declare_parameter('channels', 1, _descriptor('Channels to publish (mono is duplicated).',
                                                          int_range=(1, 32)))
        self.declare_parameter('sample_rate', SAMPLE_RATE, _descriptor('Sample rate to publish [Hz].',
                                                                       int_range=(1000, 384000)))
        self.declare_parameter('chunk_ms', 100.0, _descriptor('Audio per message [ms].', float_range=(5.0, 2000.0)))
        self.declare_parameter('rate', 1.0, _descriptor('Playback speed; 1.0 = real time.', float_range=(0.1, 100.0)))
        self.declare_parameter('gap_s', 1.0, _descriptor('Silence after each file [s].', float_range=(0.0, 30.0)))
        self.declare_parameter('loop', False, _descriptor('Start again after the last file.'))
        self.declare_parameter('wait_for_subscribers', 0, _descriptor(
            'Wait until this many subscribers are matched before playing.', int_range=(0, 100)))
        self.declare_parameter('frame_id', 'microphone', _descriptor('header.frame_id of stamped messages.'))
        self.declare_parameter('reliable', True, _descriptor(
            'Reliable QoS (audio_capture does this); false = best effort like SensorDataQoS.'))

        p = self._param
        self.flavour = resolve_flavour(p('flavour'))
        self.format = AudioFormat(p('sample_format'), p('channels'), p('sample_rate'))
        self._message = p('message') or MESSAGE_NAMES[self.flavour][0]
        self._chunk = max(1, int(round(self.format.sample_rate * p('chunk_ms') / 1000.0)))
        self._samples = self._load()
        self._position = 0
        self._wait_for = p('wait_for_subscribers')
        self._loop = p('loop')
        self.done = threading.Event()
        self.published = 0

        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                         reliability=ReliabilityPolicy.RELIABLE if p('reliable') else ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.VOLATILE)
        self._audio_pub = self.create_publisher(message_class(self.flavour, self._message), p('topic'), qos)
        self._info_pub = None
        if self.flavour == FLAVOUR_ROS_DRIVERS:
            latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self._info_pub = self.create_publisher(info_class(), p('info_topic'), latched)
            self._publish_info()
            self.create_timer(INFO_PERIOD_S, self._publish_info)
        self._timer = self.create_timer(self._chunk / self.format.sample_rate / p('rate'), self._tick)
        self.get_logger().info(
            f'playing {self.duration_s:.1f} s as {self.flavour} {self._message} '
            f'({self.format.describe()}) on {self._audio_pub.topic_name}')

    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    @property
    def duration_s(self) -> float:
        return self._samples.size / self.format.sample_rate

    def _load(self) -> np.ndarray:
        """Everything to play, as float32 mono at the publishing rate."""
        bag = self._param('bag')
        files = list(self.get_parameter_or('files', Parameter('files', Parameter.Type.STRING_ARRAY, [])).value or [])
        if bool(bag) == bool(files):
            raise ValueError('set exactly one of the parameters "files" and "bag"')
        gap = np.zeros(int(self._param('gap_s') * SAMPLE_RATE), np.float32)
        parts: list[np.ndarray] = []
        if bag:
            audio = read_bag_audio(bag, self._param('bag_topic'), default=self.format)
            if audio.errors:
                self.get_logger().warning(f'{audio.errors} message(s) of {audio.topic} could not be decoded')
            parts += [audio.samples, gap]
        for path in files:
            parts += [load_audio(path, max_seconds=None), gap]
        samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if self.format.sample_rate != SAMPLE_RATE and samples.size:
            import soxr
            samples = soxr.resample(samples, SAMPLE_RATE, self.format.sample_rate).astype(np.float32)
        if not samples.size:
            raise ValueError('nothing to play: the files/bag hold no audio')
        return samples

    def _publish_info(self) -> None:
        if self._info_pub is not None:
            self._info_pub.publish(info_message(self.flavour, self.format, self._chunk))

    def _tick(self) -> None:
        if self.done.is_set():
            return
        if self._wait_for and self._audio_pub.get_subscription_count() < self._wait_for:
            return
        self._wait_for = 0
        chunk = self._samples[self._position:self._position + self._chunk]
        msg = encode(chunk, self.flavour, self.format, self._message,
                     stamp=self.get_clock().now().to_msg(), frame_id=self._param('frame_id'))
        self._audio_pub.publish(msg)
        self.published += 1
        self._position += self._chunk
        if self._position >= self._samples.size:
            if self._loop:
                self._position = 0
            else:
                self._timer.cancel()
                self.done.set()
                self.get_logger().info(f'finished: {self.published} messages')


def main(args: list[str] | None = None) -> None:
    """``ros2 run tinyalign_ros audio_file_publisher --ros-args -p files:="[a.wav]"``; exits when done."""
    rclpy.init(args=args)
    node = None
    try:
        node = AudioFilePublisher()
        while rclpy.ok() and not node.done.is_set():
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == '__main__':
    main()
