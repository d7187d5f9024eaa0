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

"""Tests for tinyalign_ros.audio: PCM decoding, downmix, resampling, validation, file reading."""

from __future__ import annotations

import array
import time

import numpy as np
import pytest
import soundfile as sf
import soxr
from tinyalign_ros import audio
from tinyalign_ros.audio import (
    AudioError, AudioFileError, AudioFormatError, AudioTooLongError, duration_s, EmptyAudioError, format_from_portaudio,
    load_audio, NonFiniteAudioError, normalize_format, pcm_to_float, PcmStream, SAMPLE_RATE, sample_width, to_mono_16k,
    typed_array_to_float, validate,
)

TONE_HZ = 440.0
# Edge samples where the resampler's filter sees the signal start/stop; compared only inside.
EDGE = 200


def tone(rate: int, seconds: float = 0.25, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float64)


def multichannel(mono: np.ndarray, channels: int) -> np.ndarray:
    """Channels that differ from each other but whose mean is ``mono`` (tests mean downmix)."""
    if channels == 1:
        return mono[:, None]
    offsets = np.linspace(-0.3, 0.3, channels)
    offsets -= offsets.mean()
    return mono[:, None] + offsets[None, :] * 0.5


def encode(frames: np.ndarray, sample_format: str) -> bytes:
    """Float frames (frames, channels) in [-1, 1] -> interleaved PCM bytes."""
    flat = frames.reshape(-1)
    if sample_format == 'S16LE':
        return np.round(flat * 32767).astype('<i2').tobytes()
    if sample_format == 'S32LE':
        return np.round(flat * 2147483647).astype('<i4').tobytes()
    if sample_format == 'F32LE':
        return flat.astype('<f4').tobytes()
    if sample_format == 'U8':
        return (np.round(flat * 127) + 128).astype('u1').tobytes()
    if sample_format == 'S8':
        return np.round(flat * 127).astype('i1').tobytes()
    raise AssertionError(sample_format)


TOLERANCE = {'S16LE': 2e-3, 'S32LE': 2e-3, 'F32LE': 2e-3, 'U8': 2e-2, 'S8': 2e-2}


@pytest.mark.parametrize('sample_format', ['S16LE', 'S32LE', 'F32LE', 'U8', 'S8'])
@pytest.mark.parametrize('channels', [1, 2, 3])
@pytest.mark.parametrize('rate', [16000, 44100, 8000])
def test_pcm_round_trip(sample_format: str, channels: int, rate: int) -> None:
    source = tone(rate)
    data = encode(multichannel(source, channels), sample_format)
    out = pcm_to_float(data, sample_format, channels=channels, sample_rate=rate)
    expected = tone(SAMPLE_RATE)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - len(expected)) <= 1
    n = min(len(out), len(expected))
    error = np.abs(out[EDGE:n - EDGE] - expected[EDGE:n - EDGE]).max()
    assert error < TOLERANCE[sample_format], error


@pytest.mark.parametrize('rate', [22050, 48000, 96000])
def test_other_rates_keep_duration_and_pitch(rate: int) -> None:
    out = pcm_to_float(encode(tone(rate, 0.5)[:, None], 'S16LE'), 'S16LE', sample_rate=rate)
    assert abs(len(out) - SAMPLE_RATE // 2) <= 1
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(out)
    assert abs(peak_hz - TONE_HZ) < 4


def test_speech_round_trip_stereo_48k() -> None:
    from tinyalign_ros.synth import synthesize

    speech = synthesize('Turn left at the door.')
    at_48k = soxr.resample(speech, SAMPLE_RATE, 48000)
    stereo = np.stack([at_48k, at_48k], axis=1)
    out = pcm_to_float(encode(stereo, 'S16LE'), 's16le', channels=2, sample_rate=48000)
    assert abs(len(out) - len(speech)) <= 1
    n = min(len(out), len(speech))
    rms_error = np.sqrt(np.mean((out[:n] - speech[:n]) ** 2))
    assert rms_error < 0.05 * np.sqrt(np.mean(speech ** 2))


def test_byte_like_inputs_decode_identically() -> None:
    data = encode(tone(SAMPLE_RATE)[:, None], 'S16LE')
    reference = pcm_to_float(data, 'S16LE')
    variants = [
        bytearray(data), memoryview(data), array.array('B', data),
        np.frombuffer(data, np.uint8), list(data),
    ]
    for variant in variants:
        np.testing.assert_array_equal(pcm_to_float(variant, 'S16LE'), reference)


def test_typed_arrays_from_the_other_audio_common() -> None:
    x = tone(SAMPLE_RATE)
    cases = [
        (array.array('h', np.round(x * 32767).astype(np.int16)), 'S16LE', 2e-4),
        (array.array('i', np.round(x * 2147483647).astype(np.int32)), 'S32LE', 2e-4),
        (array.array('f', x.astype(np.float32)), 'F32LE', 1e-6),
        (array.array('b', np.round(x * 127).astype(np.int8)), 'S8', 1e-2),
        (array.array('B', (np.round(x * 127) + 128).astype(np.uint8)), 'U8', 1e-2),
        (np.round(x * 32767).astype(np.int16).tolist(), 'S16LE', 2e-4),
    ]
    for values, sample_format, tol in cases:
        out = typed_array_to_float(values, sample_format)
        assert out.dtype == np.float32
        assert np.abs(out - x).max() < tol, sample_format


def test_pcm_to_float_hands_typed_arrays_on() -> None:
    x = tone(SAMPLE_RATE)
    ints = np.round(x * 32767).astype(np.int16)
    from_bytes = pcm_to_float(ints.tobytes(), 'S16LE')
    np.testing.assert_array_equal(pcm_to_float(array.array('h', ints), 'S16LE'), from_bytes)
    np.testing.assert_array_equal(pcm_to_float(ints, 'S16LE'), from_bytes)
    with pytest.raises(AudioFormatError, match='integer samples'):
        pcm_to_float(array.array('f', x.astype(np.float32)), 'S16LE')


def test_typed_arrays_must_match_format() -> None:
    with pytest.raises(AudioFormatError, match='integer samples'):
        typed_array_to_float(array.array('f', [0.1, 0.2]), 'S16LE')
    with pytest.raises(AudioFormatError, match='float samples'):
        typed_array_to_float(array.array('h', [1, 2]), 'F32LE')
    with pytest.raises(AudioFormatError, match='do not fit'):
        typed_array_to_float([0, 40000], 'S16LE')
    with pytest.raises(AudioFormatError, match='do not fit'):
        typed_array_to_float(array.array('b', [-1, 5]), 'U8')
    with pytest.raises(AudioFormatError, match='frames'):
        typed_array_to_float(array.array('h', [1, 2, 3]), 'S16LE', channels=2)
    with pytest.raises(EmptyAudioError):
        typed_array_to_float(array.array('h'), 'S16LE')
    # Wider integer types are fine when the values fit.
    out = typed_array_to_float(array.array('q', [0, 2 ** 30]), 'S32LE')
    assert out[1] == pytest.approx(0.5)


def test_mono_downmix_is_the_channel_mean() -> None:
    left = np.full(1000, 0.5, np.float32)
    right = np.full(1000, -0.1, np.float32)
    stereo = np.stack([left, right], axis=1)
    np.testing.assert_allclose(to_mono_16k(stereo, SAMPLE_RATE), 0.2, atol=1e-6)
    out = pcm_to_float(encode(stereo, 'F32LE'), 'F32LE', channels=2)
    np.testing.assert_allclose(out, 0.2, atol=1e-6)


def test_formats_and_portaudio_codes() -> None:
    assert normalize_format(' s16le ') == 'S16LE'
    assert [format_from_portaudio(c) for c in (1, 2, 8, 16, 32)] == [
        'F32LE', 'S32LE', 'S16LE', 'S8', 'U8']
    assert [sample_width(f) for f in ('S16LE', 'S32LE', 'F32LE', 'U8', 's8')] == [2, 4, 4, 1, 1]
    with pytest.raises(AudioFormatError, match='paInt24'):
        format_from_portaudio(4)
    with pytest.raises(AudioFormatError, match='unknown PortAudio'):
        format_from_portaudio(3)
    with pytest.raises(AudioFormatError, match='integer'):
        format_from_portaudio('8')
    with pytest.raises(AudioFormatError, match='unknown sample_format'):
        pcm_to_float(b'\x00\x00', 'S24LE')
    with pytest.raises(AudioFormatError, match='string'):
        normalize_format(8)


@pytest.mark.parametrize('kwargs, error, message', [
    ({'data': b''}, EmptyAudioError, 'empty'),
    ({'data': []}, EmptyAudioError, 'empty'),
    ({'data': b'\x00\x01\x02'}, AudioFormatError, 'whole number'),
    ({'data': b'\x00' * 6, 'channels': 2}, AudioFormatError, 'whole number'),
    ({'data': b'\x00' * 8, 'channels': 0}, AudioFormatError, 'channels'),
    ({'data': b'\x00' * 8, 'channels': -2}, AudioFormatError, 'channels'),
    ({'data': b'\x00' * 8, 'channels': 1.5}, AudioFormatError, 'channels'),
    ({'data': b'\x00' * 8, 'channels': True}, AudioFormatError, 'channels'),
    ({'data': b'\x00' * 8, 'sample_rate': 999}, AudioFormatError, 'outside'),
    ({'data': b'\x00' * 8, 'sample_rate': 384001}, AudioFormatError, 'outside'),
    ({'data': b'\x00' * 8, 'sample_rate': 16000.5}, AudioFormatError, 'whole number'),
    ({'data': b'\x00' * 8, 'sample_rate': float('nan')}, AudioFormatError, 'whole number'),
    ({'data': b'\x00' * 64000, 'max_seconds': 1.0}, AudioTooLongError, 'longer'),
    ({'data': [0, 300]}, AudioFormatError, '0..255'),
    ({'data': [0.5, 0.25]}, AudioFormatError, '0..255'),
    ({'data': np.zeros((2, 4), np.uint8)}, AudioFormatError, 'flat'),
    ({'data': 12345}, AudioFormatError, 'cannot read'),
])
def test_bad_pcm_is_refused(kwargs: dict, error: type, message: str) -> None:
    kwargs.setdefault('sample_format', 'S16LE')
    with pytest.raises(error, match=message):
        pcm_to_float(**kwargs)


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_float_pcm_is_refused(bad: float) -> None:
    values = np.zeros(100, '<f4')
    values[37] = bad
    with pytest.raises(NonFiniteAudioError, match='F32LE'):
        pcm_to_float(values.tobytes(), 'F32LE')
    with pytest.raises(NonFiniteAudioError):
        typed_array_to_float(array.array('f', values), 'F32LE', sample_rate=44100)


def test_too_long_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError('decoded audio that should have been refused from its size')

    monkeypatch.setattr(audio, '_scale_and_downmix', must_not_decode)
    ten_seconds = b'\x00' * (2 * 2 * 48000 * 10)
    with pytest.raises(AudioTooLongError, match='10.00 s'):
        pcm_to_float(ten_seconds, 'S16LE', channels=2, sample_rate=48000, max_seconds=5)
    with pytest.raises(AudioTooLongError):
        pcm_to_float(array.array('h', bytes(64000)), 'S16LE', max_seconds=1)
    with pytest.raises(AudioTooLongError):
        pcm_to_float([0] * 64000, 'S16LE', max_seconds=1)
    # A long message is refused in about the time it takes to look at its length.
    huge = bytearray(2 * 16000 * 600)
    start = time.perf_counter()
    with pytest.raises(AudioTooLongError):
        pcm_to_float(huge, 'S16LE', max_seconds=30)
    assert time.perf_counter() - start < 0.05


def test_validate() -> None:
    out = validate(np.linspace(-1, 1, 100))
    assert out.dtype == np.float32 and out.flags['C_CONTIGUOUS']
    strided = np.zeros(200, np.float32)[::2]
    assert validate(strided).flags['C_CONTIGUOUS']
    with pytest.raises(EmptyAudioError):
        validate(np.zeros(0, np.float32))
    with pytest.raises(EmptyAudioError, match='at least 400'):
        validate(np.zeros(399, np.float32), min_samples=400)
    with pytest.raises(NonFiniteAudioError, match='1 NaN'):
        validate(np.array([0.0, np.nan, 0.1], np.float32))
    with pytest.raises(NonFiniteAudioError):
        validate(np.array([np.inf], np.float32))
    with pytest.raises(AudioTooLongError):
        validate(np.zeros(SAMPLE_RATE + 1, np.float32), max_seconds=1.0)
    assert len(validate(np.zeros(SAMPLE_RATE, np.float32), max_seconds=1.0)) == SAMPLE_RATE
    with pytest.raises(AudioFormatError, match='pcm_to_float'):
        validate(np.zeros(10, np.int16))
    with pytest.raises(AudioFormatError, match='mono'):
        validate(np.zeros((10, 2), np.float32))
    assert issubclass(AudioError, ValueError)


def test_to_mono_16k_and_duration() -> None:
    out = to_mono_16k(tone(8000, 1.0).astype(np.float32), 8000)
    assert len(out) == SAMPLE_RATE and out.dtype == np.float32
    assert duration_s(out) == pytest.approx(1.0)
    same = np.arange(10, dtype=np.float32) / 10
    np.testing.assert_array_equal(to_mono_16k(same, SAMPLE_RATE), same)
    with pytest.raises(AudioFormatError, match='float'):
        to_mono_16k(np.zeros(10, np.int16), SAMPLE_RATE)
    with pytest.raises(AudioFormatError, match='outside'):
        to_mono_16k(np.zeros(10, np.float32), 500)
    with pytest.raises(AudioFormatError, match='channels'):
        to_mono_16k(np.zeros((10, 2, 2), np.float32), SAMPLE_RATE)


@pytest.mark.parametrize('suffix, subtype, rate, channels', [
    ('wav', 'PCM_16', 44100, 2),
    ('wav', 'FLOAT', 8000, 1),
    ('flac', 'PCM_16', 16000, 1),
    ('flac', 'PCM_24', 48000, 2),
])
def test_load_audio_files(tmp_path, suffix: str, subtype: str, rate: int, channels: int) -> None:
    path = tmp_path / f'tone.{suffix}'
    sf.write(path, multichannel(tone(rate, 0.5), channels), rate, subtype=subtype)
    out = load_audio(path)
    expected = tone(SAMPLE_RATE, 0.5)
    assert out.dtype == np.float32 and abs(len(out) - len(expected)) <= 1
    n = min(len(out), len(expected))
    assert np.abs(out[EDGE:n - EDGE] - expected[EDGE:n - EDGE]).max() < 2e-3


def test_load_audio_errors(tmp_path) -> None:
    with pytest.raises(AudioFileError, match='not found'):
        load_audio(tmp_path / 'missing.wav')
    with pytest.raises(AudioFileError, match='not found'):
        load_audio(tmp_path)
    garbage = tmp_path / 'garbage.wav'
    garbage.write_text('this is not audio')
    with pytest.raises(AudioFileError, match='cannot read'):
        load_audio(garbage)
    long_file = tmp_path / 'long.flac'
    sf.write(long_file, np.zeros(16000 * 3, np.float32), 16000)
    with pytest.raises(AudioTooLongError):
        load_audio(long_file, max_seconds=2.0)
    assert len(load_audio(long_file, max_seconds=None)) == 16000 * 3
    empty = tmp_path / 'empty.wav'
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(EmptyAudioError):
        load_audio(empty)


def test_pcm_stream_matches_one_shot_resampling() -> None:
    rate = 44100
    source = tone(rate, 1.0)
    data = encode(source[:, None], 'S16LE')
    stream = PcmStream('S16LE', sample_rate=rate)
    pieces = [stream.convert(data[i:i + 2048]) for i in range(0, len(data), 2048)]
    pieces.append(stream.finish())
    joined = np.concatenate(pieces)
    one_shot = pcm_to_float(data, 'S16LE', sample_rate=rate)
    assert abs(len(joined) - len(one_shot)) <= 1
    n = min(len(joined), len(one_shot))
    assert np.abs(joined[:n] - one_shot[:n]).max() < 1e-3
    # At 16 kHz the stream is a plain decoder, and typed arrays work too.
    passthrough = PcmStream('s16le')
    ints = array.array('h', [0, 16384, -16384])
    np.testing.assert_array_equal(passthrough.convert(ints), [0.0, 0.5, -0.5])
    assert len(passthrough.finish()) == 0
    with pytest.raises(AudioFormatError):
        PcmStream('S16LE', channels=0)
