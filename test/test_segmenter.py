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

"""Tests for tinyalign_ros.segmenter: streaming VAD segmentation of synthesized speech."""

from __future__ import annotations

from dataclasses import dataclass
import itertools

import numpy as np
import pytest
from tinyalign_ros.segmenter import Segmenter, SegmenterConfig, SegmenterError, StreamingVad, Utterance, WINDOW

SR = 16000
START_TOL_S = 0.15
END_TOL_S = 0.2


@dataclass
class Stream:
    audio: np.ndarray
    speech: list[tuple[float, float]]  # true (start_s, end_s) of each spoken phrase


def energy_bounds(speech: np.ndarray, level: float = 0.02) -> tuple[int, int]:
    loud = np.flatnonzero(np.abs(speech) > level)
    return int(loud[0]), int(loud[-1]) + 1


def noise(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Quiet room noise: silence that is not digitally zero."""
    return rng.normal(0.0, 0.002, round(seconds * SR)).astype(np.float32)


@pytest.fixture(scope='module')
def phrases() -> tuple[np.ndarray, np.ndarray]:
    from tinyalign_ros.synth import synthesize

    return (synthesize('Hello robot, please bring me a cup of coffee.'),
            synthesize('What is the weather like today?'))


@pytest.fixture(scope='module')
def two_phrases(phrases: tuple[np.ndarray, np.ndarray]) -> Stream:
    """Make silence + speech + silence + speech + silence, with the true speech times."""
    rng = np.random.default_rng(7)
    parts = [noise(1.3, rng), phrases[0], noise(1.5, rng), phrases[1], noise(1.2, rng)]
    offsets = np.cumsum([0] + [len(p) for p in parts])
    speech = []
    for part_index in (1, 3):
        lo, hi = energy_bounds(parts[part_index])
        speech.append(((offsets[part_index] + lo) / SR, (offsets[part_index] + hi) / SR))
    return Stream(np.concatenate(parts), speech)


def run(segmenter: Segmenter, audio: np.ndarray, sizes: list[int],
        watch: list[float] | None = None) -> list[Utterance]:
    """Feed ``audio`` in chunks cycling through ``sizes``, then flush."""
    out: list[Utterance] = []
    position = 0
    for size in itertools.cycle(sizes):
        if position >= len(audio):
            break
        out += segmenter.feed(audio[position:position + size])
        position += size
        if watch is not None:
            watch.append(segmenter.buffered_s)
    return out + segmenter.flush()


def assert_exact(utterance: Utterance, audio: np.ndarray) -> None:
    """Check that the utterance is exactly the contiguous input between its start and end."""
    begin, end = round(utterance.start_s * SR), round(utterance.end_s * SR)
    assert begin == utterance.start_s * SR and end == utterance.end_s * SR
    assert utterance.audio.dtype == np.float32
    np.testing.assert_array_equal(utterance.audio, audio[begin:end])


def test_streaming_vad_equals_faster_whisper_one_shot(two_phrases: Stream) -> None:
    from faster_whisper.vad import get_vad_model

    audio = two_phrases.audio[:len(two_phrases.audio) // WINDOW * WINDOW]
    one_shot = get_vad_model()(audio.copy()).reshape(-1)
    vad = StreamingVad()
    blocks = [1, 3, 1, 17, 2, 40]
    probs, start = [], 0
    for n in itertools.cycle(blocks):
        if start >= len(audio):
            break
        probs.append(vad(audio[start:start + n * WINDOW]))
        start += n * WINDOW
    streamed = np.concatenate(probs)
    assert streamed.shape == one_shot.shape
    # faster-whisper zeroes the last 64 samples of the final window, so that one may differ.
    np.testing.assert_allclose(streamed[:-1], one_shot[:-1], atol=1e-5)
    assert streamed.max() > 0.9 and streamed.min() < 0.1


CHUNKINGS = {
    'one_second': [16000],
    'ten_ms': [160],
    'odd_sizes': [1, 7, 511, 513, 1023, 4321, 2],
    'random': list(np.random.default_rng(3).integers(1, 20000, 40)),
}


@pytest.mark.parametrize('name', list(CHUNKINGS))
def test_two_utterances_sample_exact(two_phrases: Stream, name: str) -> None:
    config = SegmenterConfig()
    segmenter = Segmenter(config)
    utterances = run(segmenter, two_phrases.audio, CHUNKINGS[name])
    assert [u.index for u in utterances] == [0, 1]
    for utterance, (true_start, true_end) in zip(utterances, two_phrases.speech):
        assert abs(utterance.speech_start_s - true_start) < START_TOL_S
        assert abs(utterance.speech_end_s - true_end) < END_TOL_S
        assert utterance.start_s == pytest.approx(utterance.speech_start_s - config.padding_s)
        assert utterance.end_s == pytest.approx(utterance.speech_end_s + config.padding_s)
        assert not utterance.truncated
        assert utterance.duration_s == pytest.approx(utterance.end_s - utterance.start_s)
        assert_exact(utterance, two_phrases.audio)
    emitted = sum(len(u.audio) for u in utterances) / SR
    assert segmenter.received_s == pytest.approx(len(two_phrases.audio) / SR)
    assert segmenter.buffered_s == 0.0
    assert segmenter.dropped_s == pytest.approx(segmenter.received_s - emitted)


def test_chunking_does_not_change_the_result(two_phrases: Stream) -> None:
    """1-sample chunks across the first speech onset give the same cut as one-second chunks."""
    onset = round(two_phrases.speech[0][0] * SR)
    head = two_phrases.audio[:onset + 3000]
    reference = run(Segmenter(), two_phrases.audio, [16000])
    segmenter = Segmenter()
    fed: list[Utterance] = []
    for sample in range(len(head)):
        fed += segmenter.feed(head[sample:sample + 1])
    assert segmenter.in_speech
    fed += run(segmenter, two_phrases.audio[len(head):], [997])
    assert [(u.start_s, u.end_s) for u in fed] == [(u.start_s, u.end_s) for u in reference]
    for utterance in fed:
        assert_exact(utterance, two_phrases.audio)


def test_padding_is_clipped_at_stream_start(phrases: tuple[np.ndarray, np.ndarray]) -> None:
    audio = np.concatenate([phrases[1], noise(1.0, np.random.default_rng(1))])
    utterances = run(Segmenter(SegmenterConfig(padding_s=0.5)), audio, [1234])
    assert len(utterances) == 1
    assert utterances[0].start_s == 0.0
    assert_exact(utterances[0], audio)


def test_max_length_cuts_and_pieces_join_up(phrases: tuple[np.ndarray, np.ndarray]) -> None:
    rng = np.random.default_rng(5)
    audio = np.concatenate([noise(1.0, rng), phrases[0], noise(1.0, rng)])
    config = SegmenterConfig(max_utterance_s=1.0, min_speech_s=0.1, max_buffer_s=2.0)
    watch: list[float] = []
    pieces = run(Segmenter(config), audio, [700], watch)
    assert len(pieces) >= 2 and any(p.truncated for p in pieces)
    for piece, following in zip(pieces, pieces[1:]):
        if piece.truncated:
            # Cut through speech: exactly the maximum, and the next piece continues seamlessly.
            assert len(piece.audio) == SR
            assert following.start_s == piece.end_s
    for piece in pieces:
        assert len(piece.audio) <= SR
        assert_exact(piece, audio)
    assert max(watch) <= config.max_buffer_s


def test_flush_emits_the_open_utterance(two_phrases: Stream) -> None:
    cut = round((two_phrases.speech[0][0] + 1.5) * SR)  # stream stops mid-sentence
    audio = two_phrases.audio[:cut]
    segmenter = Segmenter()
    for start in range(0, len(audio), 333):
        assert segmenter.feed(audio[start:start + 333]) == []
    assert segmenter.in_speech and segmenter.buffered_s > 1.5
    flushed = segmenter.flush()
    assert len(flushed) == 1 and not flushed[0].truncated
    assert flushed[0].end_s == cut / SR
    assert_exact(flushed[0], audio)
    assert segmenter.buffered_s == 0.0 and not segmenter.in_speech
    assert segmenter.flush() == []


def test_clock_runs_on_after_flush_and_restarts_after_reset(two_phrases: Stream) -> None:
    segmenter = Segmenter()
    first = run(segmenter, two_phrases.audio, [4000])
    second = run(segmenter, two_phrases.audio, [4000])
    offset = len(two_phrases.audio) / SR
    assert [u.index for u in second] == [2, 3]
    for a, b in zip(first, second):
        assert b.start_s == pytest.approx(a.start_s + offset)
        np.testing.assert_array_equal(a.audio, b.audio)
    segmenter.reset()
    again = run(segmenter, two_phrases.audio, [4000])
    assert [(u.index, u.start_s) for u in again] == [(u.index, u.start_s) for u in first]
    assert segmenter.received_s == pytest.approx(offset)


def test_short_speech_is_discarded(two_phrases: Stream) -> None:
    config = SegmenterConfig(min_speech_s=3.5, max_utterance_s=20.0)
    segmenter = Segmenter(config)
    assert run(segmenter, two_phrases.audio, [2000]) == []
    assert segmenter.dropped_s == pytest.approx(len(two_phrases.audio) / SR)


def test_memory_stays_bounded_on_long_silence() -> None:
    rng = np.random.default_rng(11)
    config = SegmenterConfig(max_buffer_s=30.0)
    segmenter = Segmenter(config)
    watch: list[float] = []
    total = 0
    for _ in range(90):
        chunk = noise(1.0, rng)
        assert segmenter.feed(chunk) == []
        total += len(chunk)
        watch.append(segmenter.buffered_s)
    # One huge chunk (longer than max_buffer_s) is processed in slices, not held whole.
    assert segmenter.feed(noise(45.0, rng)) == []
    total += 45 * SR
    watch.append(segmenter.buffered_s)
    assert max(watch) < 1.0
    assert segmenter.dropped_s == pytest.approx(total / SR - segmenter.buffered_s)
    assert segmenter.received_s == pytest.approx(total / SR)


@pytest.mark.parametrize('kwargs, message', [
    ({'threshold': 0.0}, 'threshold'),
    ({'threshold': 1.0}, 'threshold'),
    ({'threshold': float('nan')}, 'finite'),
    ({'threshold': 'high'}, 'number'),
    ({'padding_s': True}, 'number'),
    ({'padding_s': -0.1}, '>= 0'),
    ({'min_speech_s': -1.0}, '>= 0'),
    ({'end_silence_s': 0.0}, 'end_silence_s'),
    ({'padding_s': 0.8, 'end_silence_s': 0.6}, 'must not exceed'),
    ({'max_utterance_s': 0.4}, 'max_utterance_s'),
    ({'max_buffer_s': 20.5}, 'max_buffer_s'),
    ({'max_utterance_s': float('inf')}, 'finite'),
])
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(SegmenterError, match=message):
        SegmenterConfig(**kwargs)
    assert issubclass(SegmenterError, ValueError)


def test_bad_chunks_are_refused() -> None:
    segmenter = Segmenter()
    assert segmenter.feed(np.zeros(0, np.float32)) == []
    with pytest.raises(SegmenterError, match='pcm_to_float'):
        segmenter.feed(np.zeros(160, np.int16))
    with pytest.raises(SegmenterError, match='mono'):
        segmenter.feed(np.zeros((160, 2), np.float32))
    with pytest.raises(SegmenterError, match='NaN'):
        segmenter.feed(np.array([0.0, np.nan], np.float32))
    # float64 input is accepted and converted.
    assert segmenter.feed(np.zeros(1000)) == []
    assert segmenter.received_s == pytest.approx(1000 / SR)
