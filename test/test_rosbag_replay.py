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
Rosbag replay: a bag written with rosbags is played into the assistant node.

The bag's audio_common_msgs types are registered from the .msg text; audio_file_publisher replays the
bag, and the assistant segments and answers each spoken question in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ros_env
from ros_env import FakePipeline, Spinner, wait_for
from rosbags.rosbag2 import Writer
from rosbags.typesys import get_types_from_msg, get_typestore, Stores
import soundfile as sf

import rclpy  # noqa: E402, I100
from rclpy.node import Node  # noqa: E402, I100
from rclpy.parameter import Parameter  # noqa: E402, I100
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402, I100

from tinyalign_ros import audio_messages, rosbag  # noqa: E402
from tinyalign_ros.nodes import ros_audio  # noqa: E402
from tinyalign_ros.synth import synthesize  # noqa: E402

INTERFACES = Path(__file__).resolve().parent / 'rclpy_standin' / 'interfaces' / 'audio_common_msgs'
QUESTIONS = ('What is the battery level?', 'Go to the kitchen, please.')


def typestore_for(flavour: str) -> Any:
    """Return a Humble typestore plus the audio_common_msgs of ``flavour``, parsed from the .msg files."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    types: dict[str, Any] = {}
    for path in sorted((INTERFACES / flavour / 'msg').glob('*.msg')):
        types.update(get_types_from_msg(path.read_text(), f'audio_common_msgs/msg/{path.stem}'))
    store.register(types)
    return store


def spoken_stream(rate: int) -> tuple[np.ndarray, list[float]]:
    """Two synthesized questions separated by silence, at ``rate``; and each question's length."""
    import soxr

    parts, lengths = [np.zeros(8000, np.float32)], []
    for text in QUESTIONS:
        speech = synthesize(text)
        lengths.append(speech.size / 16000)
        parts += [speech, np.zeros(24000, np.float32)]
    stream = np.concatenate(parts)
    return (soxr.resample(stream, 16000, rate).astype(np.float32) if rate != 16000 else stream), lengths


def write_bag(path: Path, flavour: str, rate: int, with_definitions: bool = True) -> list[float]:
    store = typestore_for(flavour)
    stream, lengths = spoken_stream(rate)
    chunk = rate // 10
    ns = 1_700_000_000 * 10**9
    with Writer(path, version=8) as writer:
        def extra(msgtype: str) -> dict[str, str]:
            # Humble's sqlite3 bags carry no message definitions: the reader must bring its own.
            return {} if with_definitions else {'msgdef': '', 'rihs01': store.hash_rihs01(msgtype)}
        if flavour == 'ros-drivers':
            AudioData = store.types['audio_common_msgs/msg/AudioData']
            AudioInfo = store.types['audio_common_msgs/msg/AudioInfo']
            info_conn = writer.add_connection('/audio_info', 'audio_common_msgs/msg/AudioInfo', typestore=store,
                                              **extra('audio_common_msgs/msg/AudioInfo'))
            audio_conn = writer.add_connection('/audio', 'audio_common_msgs/msg/AudioData', typestore=store,
                                               **extra('audio_common_msgs/msg/AudioData'))
            info = AudioInfo(channels=1, sample_rate=rate, sample_format='S16LE', bitrate=rate * 16,
                             coding_format='wave')
            writer.write(info_conn, ns, store.serialize_cdr(info, 'audio_common_msgs/msg/AudioInfo'))
        else:
            types = store.types
            audio_conn = writer.add_connection('/audio', 'audio_common_msgs/msg/AudioStamped', typestore=store,
                                               **extra('audio_common_msgs/msg/AudioStamped'))
        for k, start in enumerate(range(0, stream.size, chunk)):
            pcm = audio_messages.float_to_samples(stream[start:start + chunk], 'S16LE')
            stamp = ns + (k + 1) * 100_000_000
            if flavour == 'ros-drivers':
                msg = AudioData(data=np.frombuffer(pcm.tobytes(), np.uint8))
                writer.write(audio_conn, stamp, store.serialize_cdr(msg, 'audio_common_msgs/msg/AudioData'))
            else:
                empty = {name: np.zeros(0, dtype) for name, dtype in (
                    ('float32_data', np.float32), ('int32_data', np.int32), ('int8_data', np.int8),
                    ('uint8_data', np.uint8))}
                data = types['audio_common_msgs/msg/AudioData'](int16_data=pcm, **empty)
                info = types['audio_common_msgs/msg/AudioInfo'](format=8, channels=1, rate=rate, chunk=pcm.size)
                header = types['std_msgs/msg/Header'](
                    stamp=types['builtin_interfaces/msg/Time'](sec=stamp // 10**9, nanosec=stamp % 10**9),
                    frame_id='mic')
                msg = types['audio_common_msgs/msg/AudioStamped'](
                    header=header, audio=types['audio_common_msgs/msg/Audio'](audio_data=data, info=info))
                writer.write(audio_conn, stamp, store.serialize_cdr(msg, 'audio_common_msgs/msg/AudioStamped'))
    return lengths


@pytest.mark.parametrize('flavour,rate,definitions', [('ros-drivers', 22050, True), ('ros-drivers', 16000, False),
                                                      ('mgonzs13', 16000, True)])
def test_read_bag_audio_of_either_flavour(tmp_path: Path, flavour: str, rate: int, definitions: bool) -> None:
    bag = tmp_path / 'bag'
    write_bag(bag, flavour, rate, with_definitions=definitions)
    audio = rosbag.read_bag_audio(str(bag))
    expected, _lengths = spoken_stream(16000)
    assert audio.flavour == flavour and audio.topic == '/audio' and audio.errors == 0
    assert abs(audio.samples.size - expected.size) < 0.05 * 16000  # the stream resampler keeps a short tail
    timestamps = [t for t, _c in audio.chunks]
    assert timestamps == sorted(timestamps) and len(timestamps) == -(-expected.size * rate // 16000 // (rate // 10))


def test_bag_without_audio_is_refused(tmp_path: Path) -> None:
    store = get_typestore(Stores.ROS2_HUMBLE)
    with Writer(tmp_path / 'text_only', version=8) as writer:
        conn = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=store)
        writer.write(conn, 1, store.serialize_cdr(store.types['std_msgs/msg/String'](data='hi'), 'std_msgs/msg/String'))
    with pytest.raises(rosbag.BagError, match=r'no an audio_common_msgs audio topic.*/chatter'):
        rosbag.read_bag_audio(str(tmp_path / 'text_only'))
    with pytest.raises(rosbag.BagError, match='does not exist'):
        rosbag.read_bag_audio(str(tmp_path / 'missing'))


@pytest.fixture
def ros():
    ros_env.use_flavour(ros_env.available_flavours()[0])
    rclpy.init()
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        if isinstance(thing, Spinner):
            thing.stop()
        else:
            thing.destroy_node()
    rclpy.try_shutdown()


def test_replayed_bag_is_answered_question_by_question(ros: list[Any], tmp_path: Path) -> None:
    from tinyalign_msgs.msg import AssistantResponse
    from tinyalign_ros.nodes.assistant_node import AssistantNode
    from tinyalign_ros.nodes.audio_file_publisher import AudioFilePublisher

    bag = tmp_path / 'session'
    lengths = write_bag(bag, 'ros-drivers', 22050)
    flavour = ros_audio.detect_flavour()
    assistant = AssistantNode(pipeline=FakePipeline(), parameter_overrides=[
        Parameter('segmentation', value='vad'), Parameter('personalize.enabled', value=False)])
    ros.append(assistant)
    listener = Node('listener')
    ros.append(listener)
    responses: list[Any] = []
    listener.create_subscription(AssistantResponse, 'response', responses.append, QoSProfile(depth=10))
    player = AudioFilePublisher(parameter_overrides=[
        Parameter('bag', value=str(bag)), Parameter('rate', value=5.0), Parameter('flavour', value=flavour),
        Parameter('wait_for_subscribers', value=1), Parameter('gap_s', value=0.5)])
    ros.append(player)
    spinner = Spinner(assistant, listener, player).start()
    ros.append(spinner)
    wait_for(player.done.is_set, 20, 'bag played', spinner)
    wait_for(lambda: len(responses) == 2, 10, 'two answers', spinner)
    for response, length in zip(responses, lengths):
        assert length - 0.3 < response.audio_duration_s < length + 1.0
        assert response.text.startswith('heard ')
    assert assistant.statistics()['audio_errors'] == 0


def test_file_publisher_plays_files_in_the_installed_flavour(ros: list[Any], tmp_path: Path) -> None:
    from tinyalign_ros.nodes.audio_file_publisher import AudioFilePublisher

    flavour = ros_audio.detect_flavour()
    wav = tmp_path / 'stereo.wav'
    tone = ros_env.speech_like(0.6, rate=44100)
    sf.write(wav, np.stack([tone, tone], axis=1), 44100)
    received: list[Any] = []
    listener = Node('listener')
    ros.append(listener)
    listener.create_subscription(ros_audio.message_class(flavour), 'mic', received.append,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT))
    player = AudioFilePublisher(parameter_overrides=[
        Parameter('files', value=[str(wav)]), Parameter('topic', value='mic'), Parameter('rate', value=10.0),
        Parameter('chunk_ms', value=50.0), Parameter('gap_s', value=0.2), Parameter('sample_format', value='F32LE'),
        Parameter('wait_for_subscribers', value=1)])
    ros.append(player)
    spinner = Spinner(listener, player).start()
    ros.append(spinner)
    wait_for(player.done.is_set, 10, 'file played', spinner)
    wait_for(lambda: len(received) == player.published, 5, 'all chunks received', spinner)
    decoder = audio_messages.AudioDecoder(audio_messages.AudioFormat('F32LE'))
    samples = np.concatenate([decoder.decode(m) for m in received])
    assert player.published == 16  # (0.6 s + 0.2 s gap) / 50 ms
    assert abs(samples.size - 0.8 * 16000) <= 800
    assert 0.25 < np.max(np.abs(samples)) < 0.35  # the tone's amplitude survived resampling and F32LE


def test_file_publisher_needs_exactly_one_source(ros: list[Any]) -> None:
    from tinyalign_ros.nodes.audio_file_publisher import AudioFilePublisher

    with pytest.raises(ValueError, match='exactly one'):
        AudioFilePublisher()
