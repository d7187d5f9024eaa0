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
The assistant's audio input: audio topic in, utterances out, and what arrived, for diagnostics.

Audio comes from outside in either ``audio_common_msgs`` flavour, stamped or not, as PCM or
(misconfigured) compressed, from a microphone that streams or a push-to-talk button, and on a
robot the middleware may lose messages. :class:`AudioInput` subscribes (on activate), decodes
each message (:class:`tinyalign_ros.audio_messages.AudioDecoder`), cuts utterances (Silero VAD,
or one per message), dates each one in ROS time, and hands it on; anything malformed is counted
and dropped, never fatal. The counts feed the ``audio input`` diagnostics status.

The audio callbacks run in their own mutually exclusive group: chunks stay in order and the
segmenter is not thread-safe. The node owns the input (composition) and passes itself (parameters,
logger, clock, subscriptions) and where utterances go.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import threading
import time
from typing import Any, Callable

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from tinyalign_ros.audio_messages import AudioDecoder, AudioFormat, CompressedAudioError
from tinyalign_ros.nodes import diagnostics as diag
from tinyalign_ros.nodes.parameters import clip, info_topic_for, MAX_FRAME_ID_CHARS
from tinyalign_ros.nodes.ros_audio import info_class, message_class, resolve_flavour
from tinyalign_ros.segmenter import Segmenter, SegmenterConfig, Utterance

try:  # Jazzy's name; Humble only has rclpy.qos_event (Jazzy still ships it, deprecated)
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # pragma: no cover - Humble
    try:
        from rclpy.qos_event import SubscriptionEventCallbacks
    except ImportError:
        SubscriptionEventCallbacks = None


@dataclass
class _Counters:
    """What the audio input reports; updated from the audio callbacks and the middleware's events under a lock."""

    audio_messages: int = 0
    compressed_dropped: int = 0
    compressed_reported: int = 0
    last_compressed: str = ''
    lost_messages: int = 0  # reported by the middleware (message_lost QoS events)
    lost_reported: int = 0
    audio_errors: int = 0
    audio_errors_reported: int = 0
    last_audio_error: str = ''
    last_audio_time: float | None = None
    info_messages: int = 0
    utterances: int = 0
    messages_since_report: int = 0
    seconds_since_report: float = 0.0


class AudioInput:
    """
    Subscribes to the audio topic of ``node`` and calls ``on_utterance(utterance, frame_id, stamp_ns)``.

    ``frame_id`` is what the response carries (``response.frame_id`` or the message's own) and
    ``stamp_ns`` the ROS time of the utterance's last sample. Configured from the ``audio.*``,
    ``segmentation`` and ``segmenter.*`` parameters when created (a flavour that is not installed
    fails here, before any model loads).
    """

    def __init__(self, node: Node, on_utterance: Callable[[Utterance, str, int], None]) -> None:
        self._node = node
        self._on_utterance = on_utterance
        p = self._param
        self._lock = threading.Lock()
        self._counters = _Counters()
        self.flavour = resolve_flavour(p('audio.flavour'))
        self.message_type = message_class(self.flavour, p('audio.message'))
        self._decoder = AudioDecoder(
            AudioFormat(p('audio.sample_format'), p('audio.channels'), p('audio.sample_rate')),
            max_message_s=p('audio.max_message_s'), use_info=p('audio.use_info_topic'),
            max_message_bytes=p('audio.max_message_bytes'))
        self._stream_s = 0.0  # seconds of audio fed to the segmenter (its time base)
        self.segmenter_config = SegmenterConfig(
            threshold=p('segmenter.threshold'), min_speech_s=p('segmenter.min_speech_s'),
            max_utterance_s=p('segmenter.max_utterance_s'), padding_s=p('segmenter.padding_s'),
            end_silence_s=max(p('segmenter.end_silence_s'), p('segmenter.padding_s')),
            max_buffer_s=max(p('segmenter.max_buffer_s'), p('segmenter.max_utterance_s') + 5.0))
        self._segmenter = Segmenter(self.segmenter_config) if p('segmentation') == 'vad' else None
        self._max_utterance_samples = int(p('segmenter.max_utterance_s') * 16000)
        self._group = MutuallyExclusiveCallbackGroup()
        self._audio_sub: Any = None
        self._info_sub: Any = None

    @property
    def topic(self) -> str:
        """Return the resolved audio topic."""
        return self._node.resolve_topic_name(self._param('audio.topic'))

    def _param(self, name: str) -> Any:
        return self._node.get_parameter(name).value

    def subscribe(self) -> None:
        """Audio and AudioInfo subscriptions (created on activate, destroyed on deactivate)."""
        p = self._param
        # Best effort receives from reliable and best-effort publishers alike.
        audio_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p('audio.qos_depth'),
                               reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
        self._audio_sub = self._subscribe_audio(p('audio.topic'), audio_qos)
        self._info_sub = None
        if p('audio.use_info_topic') and self.flavour == 'ros-drivers':
            # Volatile: a transient-local subscription does not match the volatile audio_info
            # publisher of older audio_capture releases; a volatile one matches both, and
            # audio_capture republishes audio_info every 5 s.
            info_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                  reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.VOLATILE)
            self._info_sub = self._node.create_subscription(
                info_class(), info_topic_for(p('audio.topic'), p('audio.info_topic')), self._on_audio_info,
                info_qos, callback_group=self._group)

    def unsubscribe(self) -> None:
        """Destroy the subscriptions (deactivate, cleanup); safe when there are none."""
        for subscription in (self._audio_sub, self._info_sub):
            if subscription is not None:
                self._node.destroy_subscription(subscription)
        self._audio_sub = self._info_sub = None

    def _subscribe_audio(self, topic: str, qos: QoSProfile) -> Any:
        """Subscribe to audio, counting what the middleware reports lost where rclpy exposes it."""
        if SubscriptionEventCallbacks is not None:
            try:
                return self._node.create_subscription(
                    self.message_type, topic, self._on_audio, qos, callback_group=self._group,
                    event_callbacks=SubscriptionEventCallbacks(message_lost=self._on_message_lost))
            except (TypeError, NotImplementedError) as exc:  # an RMW without the event
                self._node.get_logger().info(f'lost-message events unavailable ({exc}); counting arrivals only')
        return self._node.create_subscription(self.message_type, topic, self._on_audio, qos,
                                              callback_group=self._group)

    def _on_message_lost(self, info: Any) -> None:
        change = int(getattr(info, 'total_count_change', 0) or 0)
        with self._lock:
            self._counters.lost_messages += max(change, 0)
        self._node.get_logger().warning(f'the middleware lost {change} audio message(s) (total {info.total_count})',
                                        throttle_duration_sec=5.0)

    def _on_audio_info(self, msg: Any) -> None:
        try:
            fmt = self._decoder.set_info(msg)
        except CompressedAudioError as exc:
            with self._lock:
                self._counters.info_messages += 1
                self._counters.last_compressed = str(exc)
            self._node.get_logger().error(f'{exc}; audio is dropped until PCM arrives', throttle_duration_sec=30.0)
            return
        except Exception as exc:  # noqa: BLE001 - malformed input is counted, never fatal
            self._audio_error(f'audio_info: {exc}')
            return
        with self._lock:
            self._counters.info_messages += 1
            self._counters.last_compressed = ''
        self._node.get_logger().info(f'audio format from {self._info_sub.topic_name}: {fmt.describe()}', once=True)

    def _on_audio(self, msg: Any) -> None:
        received_ns = self._node.get_clock().now().nanoseconds
        try:
            samples = self._decoder.decode(msg, flush=self._segmenter is None)
            end_ns, frame_id = self._message_end(msg, received_ns)
            if self._segmenter is not None:
                utterances = self._segmenter.feed(samples)
            else:
                utterances = [self._whole_message_utterance(samples)] if samples.size else []
        except CompressedAudioError as exc:
            with self._lock:
                self._counters.compressed_dropped += 1
                self._counters.last_compressed = str(exc)
            return
        except Exception as exc:  # noqa: BLE001 - the fuzz tests feed anything; the node must survive
            self._audio_error(str(exc))
            return
        self._stream_s += samples.size / 16000.0
        with self._lock:
            self._counters.audio_messages += 1
            self._counters.messages_since_report += 1
            self._counters.seconds_since_report += samples.size / 16000.0
            self._counters.last_audio_time = time.monotonic()
        for utterance in utterances:
            # The segmenter's times count the audio fed to it; the message just fed ends at end_ns.
            behind_s = max(self._stream_s - utterance.end_s, 0.0) if self._segmenter is not None else 0.0
            with self._lock:
                self._counters.utterances += 1
            self._on_utterance(utterance, frame_id, end_ns - int(behind_s * 1e9))

    def _message_end(self, msg: Any, received_ns: int) -> tuple[int, str]:
        """
        ROS time of the last sample of ``msg`` and the frame_id its response carries.

        A stamped message's header stamp is taken as the time of its last sample (audio_capture
        and mgonzs13's audio_capturer stamp when a chunk is complete); unstamped audio is dated
        by its arrival.
        """
        header = getattr(msg, 'header', None)
        stamp_ns = 0
        frame_id = ''
        if header is not None:
            stamp_ns = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
            frame_id = str(header.frame_id)
            if len(frame_id) > MAX_FRAME_ID_CHARS:  # not a frame id: do not echo it into every response
                frame_id = ''
        configured = self._param('response.frame_id')
        return (stamp_ns if stamp_ns > 0 else received_ns), (configured or frame_id)

    def _whole_message_utterance(self, samples: np.ndarray) -> Utterance:
        truncated = samples.size > self._max_utterance_samples
        audio = samples[:self._max_utterance_samples]
        return Utterance(audio=audio, start_s=0.0, end_s=audio.size / 16000.0, index=0, truncated=truncated)

    def _audio_error(self, text: str) -> None:
        with self._lock:
            self._counters.audio_errors += 1
            self._counters.last_audio_error = clip(text, 400)
        self._node.get_logger().warning(f'dropped an audio message: {clip(text, 400)}', throttle_duration_sec=5.0)

    def statistics(self) -> dict[str, Any]:
        """Return a snapshot of the counts (for the node's statistics)."""
        with self._lock:
            c = replace(self._counters)
        return {'audio_messages': c.audio_messages, 'audio_errors': c.audio_errors,
                'last_audio_error': c.last_audio_error, 'info_messages': c.info_messages,
                'utterances': c.utterances, 'compressed_dropped': c.compressed_dropped,
                'lost_messages': c.lost_messages}

    def diagnostic_status(self, name: str, now: float, elapsed: float, active: bool) -> diag.Status:
        """
        Return the ``audio input`` status; rates and new problems count since the previous status.

        ``now`` is the report's monotonic time, ``elapsed`` the seconds since the previous report
        and ``active`` whether the node is active.
        """
        with self._lock:
            c = self._counters
            msg_rate = c.messages_since_report / elapsed
            audio_rate = c.seconds_since_report / elapsed
            c.messages_since_report, c.seconds_since_report = 0, 0.0
            new_errors = c.audio_errors - c.audio_errors_reported
            c.audio_errors_reported = c.audio_errors
            new_compressed = c.compressed_dropped - c.compressed_reported
            c.compressed_reported = c.compressed_dropped
            new_lost = c.lost_messages - c.lost_reported
            c.lost_reported = c.lost_messages
            snapshot = replace(c)
        stale = self._param('diagnostics.stale_audio_s')
        fmt = self._decoder.current or self._decoder.info_format or self._decoder.default
        source = 'message' if self.flavour == 'mgonzs13' else \
            ('audio_info' if self._decoder.info_format else 'parameters')

        audio = diag.Status(f'{name}: audio input', values={
            'topic': self.topic, 'state': 'active' if active else 'inactive',
            'flavour': self.flavour, 'message type': self.message_type.__name__,
            'format': fmt.describe(), 'format from': source, 'messages/s': msg_rate,
            'audio s per s': audio_rate, 'expected audio s per s': self._param('audio.expected_rate'),
            'messages': snapshot.audio_messages,
            'lost messages (middleware)': snapshot.lost_messages,
            'compressed messages dropped': snapshot.compressed_dropped,
            'malformed messages': snapshot.audio_errors, 'last error': snapshot.last_audio_error,
            'utterances': snapshot.utterances,
            'segmenter buffered [s]': self._segmenter.buffered_s if self._segmenter else 0.0,
            'segmenter dropped [s]': self._segmenter.dropped_s if self._segmenter else 0.0})
        if snapshot.last_audio_time is None:
            audio.escalate(diag.WARN, 'no audio received yet')
        elif now - snapshot.last_audio_time > stale:
            audio.escalate(diag.WARN, f'no audio for {now - snapshot.last_audio_time:.0f} s')
        if new_errors:
            audio.escalate(diag.ERROR, f'{new_errors} malformed audio message(s): {snapshot.last_audio_error}')
        if snapshot.last_compressed:
            audio.escalate(diag.ERROR, f'{new_compressed} compressed message(s) dropped: {snapshot.last_compressed}')
        if new_lost:
            audio.escalate(diag.WARN, f'the middleware lost {new_lost} audio message(s): raise audio.qos_depth '
                           'or lower the load')
        expected = self._param('audio.expected_rate')
        if expected > 0 and msg_rate > 0 and audio_rate < 0.9 * expected:
            audio.escalate(diag.WARN, f'audio arrives at {audio_rate:.2f} s per s, expected {expected:.2f}: '
                           'messages are lost on the way')
        return audio
