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
Audio messages -> float32 16 kHz samples, for both packages named ``audio_common_msgs``, without ROS.

Two incompatible message packages share the name (see docs/ros2.md):

- **ros-drivers** (audio_common 0.4.0, released as binaries): ``AudioData`` holds raw bytes in
  ``uint8[] data``; ``AudioDataStamped`` adds a header. The format is not in the message: it comes
  from the latched ``audio_info`` topic (``AudioInfo``: channels, sample_rate, sample_format,
  coding_format) or from parameters when nobody publishes one.
- **mgonzs13** (used by whisper_ros): ``AudioData`` holds typed arrays (``int16_data``,
  ``float32_data``, ...); ``Audio`` pairs it with an ``AudioInfo`` (PortAudio ``format`` code,
  channels, rate, chunk); ``AudioStamped`` adds a header. Every message describes itself.

This module only reads attributes, so it works on the message objects of a ROS node and on those
that the ``rosbags`` library deserializes from a bag (numpy arrays instead of ``array.array``); it
never imports a message package, so the engine (:mod:`tinyalign_ros.rosbag`) and the nodes
(:mod:`tinyalign_ros.nodes.ros_audio`, which builds messages) share it. Decoding is done by
:mod:`tinyalign_ros.audio`; this module picks the bytes and the format out of a message and checks
sizes first, so a malformed or oversized message costs nothing and is reported clearly.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinyalign_ros.audio import (AudioError, format_from_portaudio, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, normalize_format,
                                 PcmStream, SAMPLE_RATE, sample_width)

FLAVOUR_ROS_DRIVERS = 'ros-drivers'
FLAVOUR_MGONZS13 = 'mgonzs13'
FLAVOURS = (FLAVOUR_ROS_DRIVERS, FLAVOUR_MGONZS13)

# Message names each flavour publishes audio with; the first is the default.
MESSAGE_NAMES = {
    FLAVOUR_ROS_DRIVERS: ('AudioData', 'AudioDataStamped'),
    FLAVOUR_MGONZS13: ('AudioStamped', 'Audio'),
}

# mgonzs13 typed array fields by sample format, and the PortAudio codes for the reverse direction.
TYPED_FIELDS = {'F32LE': 'float32_data', 'S32LE': 'int32_data', 'S16LE': 'int16_data',
                'S8': 'int8_data', 'U8': 'uint8_data'}
PORTAUDIO_CODES = {'F32LE': 1, 'S32LE': 2, 'S16LE': 8, 'S8': 16, 'U8': 32}
ARRAY_CODES = {'F32LE': 'f', 'S32LE': 'i', 'S16LE': 'h', 'S8': 'b', 'U8': 'B'}
NUMPY_TYPES = {'F32LE': np.float32, 'S32LE': np.int32, 'S16LE': np.int16, 'S8': np.int8, 'U8': np.uint8}

# Coding formats of the ros-drivers AudioInfo that mean raw PCM (compressed audio is refused).
PCM_CODINGS = ('', 'wave', 'wav', 'pcm', 'raw')

MAX_CHANNELS = 32
# Default cap on the bytes of one audio message: 5 s of 96 kHz stereo float32 fits; a message may
# legally hold hundreds of megabytes, which must be refused before anything copies or decodes it.
MAX_MESSAGE_BYTES = 4_000_000
# Longest string field of an AudioInfo that is read at all (sample_format, coding_format).
MAX_INFO_STRING = 64


class AudioMessageError(AudioError):
    """An audio message this node cannot use (wrong layout, format, size); the message says why."""


class CompressedAudioError(AudioMessageError):
    """The AudioInfo says the stream is compressed (audio_capture's default is mp3): not decodable."""


# -- formats ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioFormat:
    """How the samples of a stream are stored."""

    sample_format: str = 'S16LE'
    channels: int = 1
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        object.__setattr__(self, 'sample_format', normalize_format(self.sample_format))
        if isinstance(self.channels, bool) or not isinstance(self.channels, (int, np.integer)) \
                or not 1 <= self.channels <= MAX_CHANNELS:
            raise AudioMessageError(f'channels must be 1..{MAX_CHANNELS}, got {self.channels!r}')
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, (int, np.integer)) \
                or not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise AudioMessageError(
                f'sample_rate must be {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {self.sample_rate!r}')
        object.__setattr__(self, 'channels', int(self.channels))
        object.__setattr__(self, 'sample_rate', int(self.sample_rate))

    @property
    def frame_bytes(self) -> int:
        return sample_width(self.sample_format) * self.channels

    def describe(self) -> str:
        return f'{self.sample_format} {self.channels} ch {self.sample_rate} Hz'


def _info_string(info: Any, name: str) -> str:
    """Read a short string field of an AudioInfo; an oversized one is refused without being echoed."""
    value = str(getattr(info, name, '') or '')
    if len(value) > MAX_INFO_STRING:
        raise AudioMessageError(f'AudioInfo.{name} is {len(value)} characters long; at most {MAX_INFO_STRING}')
    return value


def format_from_info(info: Any) -> AudioFormat:
    """Read an ``AudioInfo`` of either flavour; CompressedAudioError for a compressed stream."""
    try:
        if hasattr(info, 'sample_format'):  # ros-drivers
            coding = _info_string(info, 'coding_format').strip().lower()
            if coding not in PCM_CODINGS:
                raise CompressedAudioError(
                    f'audio_info says the stream is {coding!r} (compressed); only raw PCM (wave) is supported: '
                    'start audio_capture with format:=wave')
            return AudioFormat(_info_string(info, 'sample_format'), int(info.channels), int(info.sample_rate))
        if hasattr(info, 'format'):  # mgonzs13
            return AudioFormat(format_from_portaudio(int(info.format)), int(info.channels), int(info.rate))
    except AudioMessageError:
        raise
    except (AudioError, TypeError, ValueError) as exc:
        raise AudioMessageError(f'unusable AudioInfo: {exc}') from exc
    raise AudioMessageError(f'{type(info).__name__} is not an audio_common_msgs AudioInfo')


# -- reading messages -------------------------------------------------------------------------
@dataclass
class AudioPayload:
    """The samples of one message, and the format when the message carries it."""

    data: Any  # bytes-like (ros-drivers) or a typed array (mgonzs13)
    fmt: AudioFormat | None
    stamp: Any = None  # builtin_interfaces/Time of a stamped message
    frame_id: str = ''

    @property
    def typed(self) -> bool:
        return self.fmt is not None and not _is_bytes_like(self.data)


def _is_bytes_like(data: Any) -> bool:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return True
    if isinstance(data, array.array):
        return data.typecode == 'B'
    if isinstance(data, np.ndarray):
        return data.dtype == np.uint8
    return isinstance(data, list)


def unpack(msg: Any) -> AudioPayload:
    """Find the samples (and format, for mgonzs13) in any audio message of either flavour."""
    stamp, frame_id = None, ''
    inner = msg
    if hasattr(msg, 'header') and hasattr(msg, 'audio'):
        stamp, frame_id = msg.header.stamp, msg.header.frame_id
        inner = msg.audio
    if hasattr(inner, 'data') and not hasattr(inner, 'audio_data'):  # ros-drivers AudioData
        return AudioPayload(inner.data, None, stamp, frame_id)
    if hasattr(inner, 'audio_data') and hasattr(inner, 'info'):  # mgonzs13 Audio
        fmt = format_from_info(inner.info)
        field_name = TYPED_FIELDS[fmt.sample_format]
        values = getattr(inner.audio_data, field_name)
        if len(values) == 0:
            others = [f'{name} ({len(getattr(inner.audio_data, name, ()))})' for name in TYPED_FIELDS.values()
                      if name != field_name and len(getattr(inner.audio_data, name, ())) > 0]
            hint = f'; samples are in {", ".join(others)}: is info.format right?' if others else ''
            raise AudioMessageError(f'info.format says {fmt.sample_format} but {field_name} is empty{hint}')
        return AudioPayload(values, fmt, stamp, frame_id)
    raise AudioMessageError(f'{type(msg).__name__} is not an audio_common_msgs audio message')


def frames_in(payload: AudioPayload, fmt: AudioFormat) -> int:
    """Frames a payload holds, from its length only (no decoding)."""
    n = len(payload.data)
    if payload.typed:
        return n // fmt.channels
    return n // fmt.frame_bytes


def payload_bytes(payload: AudioPayload) -> int:
    """Bytes the samples of a payload take, from its length and item size only."""
    data = payload.data
    itemsize = getattr(data, 'itemsize', None)
    if itemsize is None:
        itemsize = 1 if _is_bytes_like(data) else 8
    return len(data) * int(itemsize)


def check_duration(payload: AudioPayload, fmt: AudioFormat, max_seconds: float | None,
                   max_bytes: int | None = None) -> float:
    """Seconds of audio in a payload; raise before decoding when it is empty, too big or too long."""
    if len(payload.data) == 0:
        raise AudioMessageError('audio message is empty')
    if max_bytes is not None:
        size = payload_bytes(payload)
        if size > max_bytes:
            raise AudioMessageError(f'audio message holds {size} bytes, more than the {max_bytes} allowed per message')
    seconds = frames_in(payload, fmt) / fmt.sample_rate
    if max_seconds is not None and seconds > max_seconds:
        raise AudioMessageError(
            f'audio message holds {seconds:.1f} s of {fmt.describe()} audio, more than the '
            f'{max_seconds:g} s allowed per message: is the sample format or rate right?')
    return seconds


class AudioDecoder:
    """
    Turns one topic's messages into a continuous float32 16 kHz stream.

    The format comes from the message (mgonzs13), else from the last ``AudioInfo`` (ros-drivers),
    else from the configured default. One resampler is kept per stream, so a 44.1 kHz stream
    decodes without clicks at message boundaries; it restarts whenever the format changes.
    """

    def __init__(self, default: AudioFormat, max_message_s: float = 5.0, use_info: bool = True,
                 max_message_bytes: int | None = MAX_MESSAGE_BYTES) -> None:
        self.default = default
        self.max_message_s = max_message_s
        self.max_message_bytes = max_message_bytes
        self.use_info = use_info
        self.info_format: AudioFormat | None = None
        # Set while the AudioInfo says the stream is compressed: its bytes are not PCM, so they are
        # refused (not decoded as noise) until an AudioInfo announces PCM again.
        self.compressed: str = ''
        self.current: AudioFormat | None = None
        self._stream: PcmStream | None = None
        self.received_s = 0.0

    def set_info(self, info: Any) -> AudioFormat:
        try:
            fmt = format_from_info(info)
        except CompressedAudioError as exc:
            if self.use_info:
                self.compressed = str(exc)
            raise
        if self.use_info:
            self.info_format = fmt
            self.compressed = ''
        return fmt

    def decode(self, msg: Any, flush: bool = False) -> np.ndarray:
        """
        Return the float32 16 kHz samples of one message.

        ``flush`` also returns what the resampler holds back: use it when every message is a whole
        utterance, so no audio leaks into the next one.
        """
        payload = unpack(msg)
        if payload.fmt is None and self.compressed:
            raise CompressedAudioError(f'dropped until PCM arrives: {self.compressed}')
        fmt = payload.fmt or self.info_format or self.default
        seconds = check_duration(payload, fmt, self.max_message_s, self.max_message_bytes)
        if fmt != self.current or self._stream is None:
            self._stream = PcmStream(fmt.sample_format, fmt.channels, fmt.sample_rate)
            self.current = fmt
        try:
            samples = self._stream.convert(payload.data)
        except AudioError as exc:
            self._stream = None  # start clean after a bad message
            raise AudioMessageError(f'{fmt.describe()}: {exc}') from exc
        if flush:
            tail = self._stream.finish()
            if tail.size:
                samples = np.concatenate([samples, tail])
        if samples.size and not np.isfinite(samples).all():
            self._stream = None
            raise AudioMessageError(f'{fmt.describe()}: audio decodes to NaN/Inf samples')
        self.received_s += seconds
        return samples


# -- writing samples --------------------------------------------------------------------------
def float_to_samples(samples: np.ndarray, sample_format: str) -> np.ndarray:
    """float32 in [-1, 1] -> the integer (or float) samples of ``sample_format``."""
    name = normalize_format(sample_format)
    x = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    if name == 'F32LE':
        return x.astype(np.float32)
    if name == 'U8':
        return np.clip(np.round(x * 128.0 + 128.0), 0, 255).astype(np.uint8)
    bits = {'S16LE': 16, 'S32LE': 32, 'S8': 8}[name]
    full = float(2 ** (bits - 1))
    return np.clip(np.round(x * full), -full, full - 1).astype(NUMPY_TYPES[name])
