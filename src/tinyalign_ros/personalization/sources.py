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
Where an operator's speech comes from: a dataset folder or a rosbag2 (enrollment answers arrive in the request).

Each source yields :class:`~tinyalign_ros.personalization.store.Recording` objects; a recording
without a transcript comes back with ``text`` None and is labeled by the job only when asked.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .api import SOURCE_FOLDER, SOURCE_ROSBAG
from .config import PersonalizeError
from .store import Recording
from ..audio import AudioError, load_audio, SAMPLE_RATE
from ..data import load_dataset


TRUST_HUMAN = 'human'
TRUST_PSEUDO = 'pseudo'


def recordings_from_folder(path: str | Path, max_utterance_s: float = 30.0,
                           skipped: list[str] | None = None) -> list[Recording]:
    """
    Read the recordings of a manifest or LJ-Speech-style folder (:func:`tinyalign_ros.data.load_dataset`).

    With a ``skipped`` list, a bad line or an unreadable, empty or absurd audio file is noted
    there and left out, so one bad file does not cost the operator the rest of the folder.
    """
    out = []
    for item in load_dataset(path, skipped):
        try:
            samples = load_audio(item.audio, max_seconds=max_utterance_s)
        except AudioError as exc:
            if skipped is None:
                raise
            skipped.append(f'{item.id}: {exc}')
            continue
        out.append(Recording(samples, item.text or None, item.id,
                             {'source': SOURCE_FOLDER, 'origin': str(item.audio)}))
    return out


def _speech_span(samples: np.ndarray, max_utterance_s: float) -> np.ndarray | None:
    """Cut ``samples`` to the part from the first detected speech to the last (Silero VAD), or None."""
    from ..segmenter import Segmenter, SegmenterConfig

    segmenter = Segmenter(SegmenterConfig(max_utterance_s=max_utterance_s, max_buffer_s=max(60.0, max_utterance_s * 2)))
    found = segmenter.feed(samples) + segmenter.flush()
    if not found:
        return None
    start, end = int(found[0].start_s * SAMPLE_RATE), int(found[-1].end_s * SAMPLE_RATE)
    span = samples[start:end]
    return span if 0 < span.size <= max_utterance_s * SAMPLE_RATE else None


def _bag_texts(path: str | Path, topic: str) -> list[tuple[int, str]]:
    """(timestamp ns, text) of the std_msgs/String messages on ``topic`` ('' = the only String topic)."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    bag = Path(path).expanduser()
    store = get_typestore(Stores.ROS2_HUMBLE)
    with Reader(bag if bag.is_dir() else bag.parent) as reader:
        strings = [c for c in reader.connections if c.msgtype == 'std_msgs/msg/String']
        chosen = [c for c in strings if c.topic == topic] if topic else strings
        if topic and not chosen:
            found = ', '.join(sorted({c.topic for c in strings})) or 'none'
            raise PersonalizeError(f'rosbag {bag} has no std_msgs/String topic {topic!r} (String topics: {found})')
        if not chosen:
            return []  # unlabeled speech (and an empty list would make rosbags read every topic)
        if len({c.topic for c in chosen}) > 1:
            raise PersonalizeError(f'rosbag {bag} has several String topics ({sorted({c.topic for c in chosen})}); '
                                   'name the transcript topic (topics = [audio topic, transcript topic])')
        texts = [(t, str(store.deserialize_cdr(raw, c.msgtype).data))
                 for c, t, raw in reader.messages(connections=chosen)]
    return sorted(texts)


def recordings_from_bag(path: str | Path, topics: Sequence[str] = (), max_utterance_s: float = 30.0) -> list[Recording]:
    """
    Utterances of a rosbag2 (sqlite3 or mcap) holding audio_common_msgs audio.

    ``topics`` = [audio topic, transcript topic] (either may be '' to pick the only one). With
    transcripts, each String message labels the audio recorded after it until the next one (the
    enrollment convention: the prompt is published, then read aloud); the speech inside each span is
    found with the VAD. Without transcripts the stream is cut into utterances by the VAD and they
    come back unlabeled (text None).
    """
    from ..rosbag import read_bag_audio
    from ..segmenter import Segmenter, SegmenterConfig

    audio_topic = topics[0] if len(topics) > 0 else ''
    text_topic = topics[1] if len(topics) > 1 else ''
    bag_audio = read_bag_audio(str(path), audio_topic, max_message_s=max_utterance_s)
    texts = _bag_texts(path, text_topic)
    meta = {'source': SOURCE_ROSBAG, 'origin': str(path), 'topic': bag_audio.topic}
    out: list[Recording] = []
    if texts:
        bounds = [t for t, _text in texts] + [math.inf]
        for i, (start, text) in enumerate(texts):
            chunks = [c for t, c in bag_audio.chunks if start <= t < bounds[i + 1]]
            if not chunks:
                continue
            span = _speech_span(np.concatenate(chunks), max_utterance_s)
            if span is not None and text.strip():
                out.append(Recording(span, text.strip(), '', {**meta, 'stamp_ns': int(start)}))
        return out
    segmenter = Segmenter(SegmenterConfig(max_utterance_s=min(max_utterance_s, 20.0)))
    for utterance in segmenter.feed(bag_audio.samples) + segmenter.flush():
        out.append(Recording(utterance.audio, None, '', {**meta, 'start_s': round(utterance.start_s, 3)}))
    return out
