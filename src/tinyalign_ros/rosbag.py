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
Audio out of a rosbag2 (sqlite3 or mcap), read with the ``rosbags`` library: no ROS installation needed.

The engine reads an operator's recorded speech from bags (:mod:`tinyalign_ros.personalization.sources`)
and the file publisher node plays them; both go through :func:`read_bag_audio`, which decodes either
``audio_common_msgs`` flavour with :mod:`tinyalign_ros.audio_messages`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyalign_ros.audio import SAMPLE_RATE
from tinyalign_ros.audio_messages import AudioDecoder, AudioFormat, FLAVOUR_MGONZS13, FLAVOUR_ROS_DRIVERS

# Storage files of a rosbag2 (sqlite3, mcap).
ROSBAG_SUFFIXES = ('.db3', '.mcap')

# Message definitions, for reading bags recorded without them (Humble's sqlite3 bags).
MSG_DEFINITIONS = {
    FLAVOUR_ROS_DRIVERS: {
        'audio_common_msgs/msg/AudioData': 'uint8[] data\n',
        'audio_common_msgs/msg/AudioDataStamped': 'std_msgs/Header header\naudio_common_msgs/AudioData audio\n',
        'audio_common_msgs/msg/AudioInfo': ('uint8 channels\nuint32 sample_rate\nstring sample_format\n'
                                            'uint32 bitrate\nstring coding_format\n'),
    },
    FLAVOUR_MGONZS13: {
        'audio_common_msgs/msg/AudioData': ('float32[] float32_data\nint32[] int32_data\nint16[] int16_data\n'
                                            'int8[] int8_data\nuint8[] uint8_data\n'),
        'audio_common_msgs/msg/AudioInfo': 'int32 format\nint32 channels\nint32 rate\nint32 chunk\n',
        'audio_common_msgs/msg/Audio': 'audio_common_msgs/AudioData audio_data\naudio_common_msgs/AudioInfo info\n',
        'audio_common_msgs/msg/AudioStamped': 'std_msgs/Header header\naudio_common_msgs/Audio audio\n',
    },
}


class BagError(ValueError):
    """A rosbag2 that holds no usable audio topic."""


@dataclass
class BagAudio:
    """The audio of one bag topic, decoded to float32 16 kHz, with receive times."""

    topic: str
    msgtype: str
    flavour: str
    chunks: list[tuple[int, np.ndarray]]  # (bag timestamp [ns], samples)
    errors: int = 0

    @property
    def samples(self) -> np.ndarray:
        if not self.chunks:
            return np.zeros(0, np.float32)
        return np.concatenate([c for _t, c in self.chunks]).astype(np.float32, copy=False)

    @property
    def duration_s(self) -> float:
        return sum(c.size for _t, c in self.chunks) / SAMPLE_RATE


def read_bag_audio(path: str, topic: str = '', default: AudioFormat | None = None,
                   max_message_s: float | None = 5.0) -> BagAudio:
    """
    Read an audio topic of either flavour from a rosbag2 (sqlite3 or mcap) with ``rosbags``.

    Bags recorded on Humble carry no message definitions; the flavour is then guessed from the type
    name (``AudioStamped``/``Audio`` are mgonzs13, ``AudioData`` is ros-drivers unless the bag's
    definition shows typed arrays) and the definitions above are used. The sample format of a
    ros-drivers topic comes from an ``AudioInfo`` topic in the bag, else from ``default``.
    Malformed messages are skipped and counted in ``errors``.
    """
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    bag = Path(path).expanduser()
    if not bag.exists():
        raise BagError(f'rosbag {bag} does not exist')
    root = bag if bag.is_dir() else bag.parent
    with Reader(root) as reader:
        connections = list(reader.connections)
        audio = [c for c in connections if _is_audio_type(c.msgtype) and (not topic or c.topic == topic)]
        if not audio:
            found = ', '.join(f'{c.topic} ({c.msgtype})' for c in connections) or 'nothing'
            wanted = f'topic {topic!r}' if topic else 'an audio_common_msgs audio topic'
            raise BagError(f'rosbag {bag} has no {wanted}; it holds {found}')
        chosen = audio[0]
        flavour = flavour_of_bag_type(chosen.msgtype, getattr(getattr(chosen, 'msgdef', None), 'data', '') or '')
        infos = [c for c in connections if c.msgtype == 'audio_common_msgs/msg/AudioInfo'] \
            if flavour == FLAVOUR_ROS_DRIVERS else []
        typestore = get_typestore(Stores.ROS2_HUMBLE)
        types: dict[str, Any] = {}
        for connection in [chosen] + infos:
            types.update(_bag_types(connection))
        if chosen.msgtype not in types:
            for name, text in MSG_DEFINITIONS[flavour].items():
                types.update(get_types_from_msg(text, name))
        typestore.register({k: v for k, v in types.items() if k not in typestore.fielddefs})

        decoder = AudioDecoder(default or AudioFormat(), max_message_s=max_message_s)
        chunks: list[tuple[int, np.ndarray]] = []
        errors = 0
        first_error: Exception | None = None
        for connection, timestamp, raw in reader.messages(connections=[chosen] + infos):
            try:
                msg = typestore.deserialize_cdr(raw, connection.msgtype)
                if connection.msgtype.endswith('/AudioInfo'):
                    decoder.set_info(msg)
                else:
                    chunks.append((timestamp, decoder.decode(msg)))
            except Exception as exc:  # noqa: BLE001 - one bad message is skipped and counted
                errors += 1
                first_error = first_error or exc
    if not chunks and errors:
        raise BagError(f'no message of {chosen.topic} in {bag} could be decoded: {first_error}')
    return BagAudio(chosen.topic, chosen.msgtype, flavour, chunks, errors)


def is_rosbag(path: Path) -> bool:
    """Tell whether ``path`` is a rosbag2 folder (metadata.yaml or storage files) or one of its storage files."""
    if path.is_file():
        return path.suffix in ROSBAG_SUFFIXES
    return path.is_dir() and ((path / 'metadata.yaml').is_file()
                              or any(p.suffix in ROSBAG_SUFFIXES for p in path.iterdir()))


def _is_audio_type(msgtype: str) -> bool:
    return msgtype.startswith('audio_common_msgs/') and msgtype.rsplit('/', 1)[-1] in (
        'AudioData', 'AudioDataStamped', 'Audio', 'AudioStamped')


def _bag_types(connection: Any) -> dict[str, Any]:
    """Type definitions a bag connection carries (empty for bags recorded without them)."""
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    msgdef = getattr(connection, 'msgdef', None)
    data = getattr(msgdef, 'data', '') or ''
    if not data.strip():
        return {}
    if getattr(getattr(msgdef, 'format', None), 'name', 'MSG') == 'IDL':
        sep = '=' * 80 + '\n'
        types: dict[str, Any] = {}
        chunks = data.split(sep)[1:] if data.startswith(f'{sep}IDL: ') else ['IDL: x\n' + data]
        for chunk in chunks:
            types.update(get_types_from_idl(chunk.split('\n', 1)[1]))
        return types
    return get_types_from_msg(data, connection.msgtype)


def flavour_of_bag_type(msgtype: str, msgdef: str = '') -> str:
    """Guess a flavour from a bag connection's type name (and definition text when present)."""
    name = msgtype.rsplit('/', 1)[-1]
    if name in ('Audio', 'AudioStamped'):
        return FLAVOUR_MGONZS13
    if name == 'AudioData' and msgdef:
        return FLAVOUR_MGONZS13 if 'int16_data' in msgdef else FLAVOUR_ROS_DRIVERS
    return FLAVOUR_ROS_DRIVERS
