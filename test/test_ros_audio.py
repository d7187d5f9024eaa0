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

"""Audio message translation for both audio_common_msgs flavours (audio_messages, nodes.ros_audio)."""

from __future__ import annotations

import array
import time
from types import SimpleNamespace

import numpy as np
import pytest
import ros_env
import soxr

from tinyalign_ros import audio_messages
from tinyalign_ros.audio import AudioError
from tinyalign_ros.audio_messages import AudioDecoder, AudioFormat, AudioMessageError
from tinyalign_ros.nodes import ros_audio

FLAVOURS = ros_env.available_flavours()


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    ros_env.use_flavour(request.param)
    return request.param


def tone(seconds: float, rate: int = 16000, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_detect_and_resolve_flavour(flavour: str) -> None:
    assert ros_audio.detect_flavour() == flavour
    assert ros_audio.resolve_flavour('auto') == flavour
    other = [f for f in ros_audio.FLAVOURS if f != flavour][0]
    with pytest.raises(ros_audio.FlavourError, match=f'installed audio_common_msgs is the {flavour}'):
        ros_audio.resolve_flavour(other)
    with pytest.raises(ros_audio.FlavourError, match='auto'):
        ros_audio.resolve_flavour('pulseaudio')


@pytest.mark.parametrize('sample_format', ['S16LE', 'S32LE', 'F32LE', 'U8', 'S8'])
def test_round_trip_every_format(flavour: str, sample_format: str) -> None:
    fmt = AudioFormat(sample_format, 1, 16000)
    audio = tone(0.2)
    msg = ros_audio.encode(audio, flavour, fmt)
    decoder = AudioDecoder(default=fmt)
    decoded = decoder.decode(msg)
    tolerance = {'U8': 1 / 64, 'S8': 1 / 64}.get(sample_format, 1e-4)
    assert decoded.shape == audio.shape
    assert np.max(np.abs(decoded - audio)) < tolerance


def test_encode_uses_array_fields_like_rosidl_expects(flavour: str) -> None:
    msg = ros_audio.encode(tone(0.05), flavour, AudioFormat('S16LE'))
    payload = audio_messages.unpack(msg)
    assert isinstance(payload.data, array.array), 'rosidl sequence fields must get array.array, not numpy'
    if flavour == 'mgonzs13':
        assert payload.fmt == AudioFormat('S16LE', 1, 16000)
        assert msg.audio.info.format == 8 and msg.audio.info.chunk == 800


def test_ros_drivers_format_comes_from_audio_info() -> None:
    ros_env.use_flavour('ros-drivers') if 'ros-drivers' in FLAVOURS else pytest.skip('ros-drivers not installed')
    fmt = AudioFormat('S16LE', 2, 44100)
    audio = tone(0.5, rate=44100)
    decoder = AudioDecoder(default=AudioFormat('S16LE', 1, 16000))
    decoder.set_info(ros_audio.info_message('ros-drivers', fmt))
    # Stream in 1024-frame messages, as audio_capture does; one resampler across messages.
    out = np.concatenate([decoder.decode(ros_audio.encode(audio[i:i + 1024], 'ros-drivers', fmt))
                          for i in range(0, audio.size, 1024)])
    expected = soxr.resample(audio, 44100, 16000, quality='HQ')
    # The stream resampler holds back its filter's tail (at most ~30 ms) until the stream ends.
    assert expected.size - 500 <= out.size <= expected.size
    n = out.size
    assert np.max(np.abs(out[:n] - expected[:n])) < 0.02
    assert decoder.current == fmt


def test_audio_info_is_ignored_when_disabled() -> None:
    ros_env.use_flavour('ros-drivers') if 'ros-drivers' in FLAVOURS else pytest.skip('ros-drivers not installed')
    decoder = AudioDecoder(default=AudioFormat('S16LE', 1, 16000), use_info=False)
    decoder.set_info(ros_audio.info_message('ros-drivers', AudioFormat('F32LE', 2, 8000)))
    decoder.decode(ros_audio.encode(tone(0.1), 'ros-drivers', AudioFormat('S16LE')))
    assert decoder.current == AudioFormat('S16LE', 1, 16000)


def test_format_from_info_of_both_layouts() -> None:
    drivers = SimpleNamespace(channels=2, sample_rate=48000, sample_format='s16le', bitrate=0, coding_format='wave')
    assert audio_messages.format_from_info(drivers) == AudioFormat('S16LE', 2, 48000)
    mp3 = SimpleNamespace(channels=1, sample_rate=16000, sample_format='S16LE', bitrate=0, coding_format='mp3')
    with pytest.raises(AudioMessageError, match='compressed'):
        audio_messages.format_from_info(mp3)
    portaudio = SimpleNamespace(format=1, channels=1, rate=22050, chunk=512)
    assert audio_messages.format_from_info(portaudio) == AudioFormat('F32LE', 1, 22050)
    with pytest.raises(AudioMessageError, match='paInt24'):
        audio_messages.format_from_info(SimpleNamespace(format=4, channels=1, rate=16000, chunk=512))
    with pytest.raises(AudioMessageError, match='channels'):
        audio_messages.format_from_info(SimpleNamespace(format=8, channels=0, rate=16000, chunk=512))
    with pytest.raises(AudioMessageError, match='sample_rate'):
        audio_messages.format_from_info(SimpleNamespace(format=8, channels=1, rate=10, chunk=512))


def test_malformed_messages_are_refused_with_reasons(flavour: str) -> None:
    decoder = AudioDecoder(default=AudioFormat('S16LE'), max_message_s=2.0)
    cls = ros_audio.message_class(flavour)
    empty = cls()
    if flavour == 'mgonzs13':
        with pytest.raises(AudioMessageError, match='unknown PortAudio format code 0'):
            decoder.decode(empty)  # a default message does not even say its format
        empty.audio.info.format, empty.audio.info.channels, empty.audio.info.rate = 8, 1, 16000
    with pytest.raises(AudioMessageError, match='empty'):
        decoder.decode(empty)
    huge = ros_audio.encode(np.zeros(16000 * 3, np.float32), flavour, AudioFormat('S16LE'))
    with pytest.raises(AudioMessageError, match='more than the 2 s allowed'):
        decoder.decode(huge)
    if flavour == 'ros-drivers':
        odd = cls()
        odd.data = array.array('B', b'\x01\x02\x03')
        with pytest.raises(AudioError, match='whole number'):
            decoder.decode(odd)
        decoder.set_info(ros_audio.info_message('ros-drivers', AudioFormat('F32LE')))
        nan = cls()
        nan.data = array.array('B', np.full(64, np.nan, np.float32).tobytes())
        with pytest.raises(AudioError, match='NaN'):
            decoder.decode(nan)
    else:
        msg = ros_audio.encode(tone(0.1), flavour, AudioFormat('S16LE'))
        msg.audio.info.format = 1  # says float32, but the samples are in int16_data
        with pytest.raises(AudioMessageError, match=r'float32_data is empty; samples are in int16_data'):
            decoder.decode(msg)
        nan = ros_audio.encode(tone(0.1), flavour, AudioFormat('F32LE'))
        nan.audio.audio_data.float32_data = array.array('f', [float('nan')] * 64)
        with pytest.raises(AudioError, match='NaN'):
            decoder.decode(nan)


def test_huge_message_is_refused_before_decoding() -> None:
    """A 10-minute message is rejected from its length: no time is spent converting it."""
    payload = audio_messages.AudioPayload(bytes(16000 * 2 * 600), None)
    started = time.perf_counter()
    with pytest.raises(AudioMessageError, match='600.0 s'):
        audio_messages.check_duration(payload, AudioFormat('S16LE'), 5.0)
    assert time.perf_counter() - started < 0.05


def test_unpack_reads_rosbags_style_objects_with_numpy_arrays() -> None:
    """Messages deserialized by rosbags hold numpy arrays; both layouts are still understood."""
    pcm = (tone(0.1) * 32767).astype(np.int16)
    drivers = SimpleNamespace(header=SimpleNamespace(stamp='t', frame_id='mic'),
                              audio=SimpleNamespace(data=np.frombuffer(pcm.tobytes(), np.uint8)))
    payload = audio_messages.unpack(drivers)
    assert payload.fmt is None and payload.frame_id == 'mic'
    out = AudioDecoder(AudioFormat('S16LE')).decode(drivers)
    assert out.size == pcm.size
    typed = SimpleNamespace(audio_data=SimpleNamespace(float32_data=np.zeros(0, np.float32), int32_data=[],
                                                       int16_data=pcm, int8_data=[], uint8_data=[]),
                            info=SimpleNamespace(format=8, channels=1, rate=16000, chunk=pcm.size))
    out = AudioDecoder(AudioFormat('F32LE')).decode(typed)
    assert out.size == pcm.size and np.max(np.abs(out - pcm / 32768.0)) < 1e-6
    with pytest.raises(AudioMessageError, match='not an audio_common_msgs audio message'):
        audio_messages.unpack(SimpleNamespace(foo=1))


def test_float_to_samples_clips_and_scales() -> None:
    x = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], np.float32)
    assert audio_messages.float_to_samples(x, 'S16LE').tolist() == [-32768, -32768, 0, 16384, 32767, 32767]
    assert audio_messages.float_to_samples(x, 'U8').tolist() == [0, 0, 128, 192, 255, 255]
    assert audio_messages.float_to_samples(x, 'S8').tolist() == [-128, -128, 0, 64, 127, 127]
    assert audio_messages.float_to_samples(x, 'F32LE').dtype == np.float32


def test_stereo_is_mixed_down(flavour: str) -> None:
    fmt = AudioFormat('S16LE', 2, 16000)
    msg = ros_audio.encode(tone(0.1), flavour, fmt)
    assert len(audio_messages.unpack(msg).data) == (3200 if flavour == 'mgonzs13' else 6400)
    out = AudioDecoder(default=fmt).decode(msg)
    assert out.size == 1600
