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

"""Tests for the Whisper feature encoder, its window policy, its disk cache and cascade ASR."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
import re

import numpy as np
import pytest
from tinyalign_ros import model_files
from tinyalign_ros.encoder import EncoderError, FeatureCache, n_feature_frames, WhisperEncoder, WindowPolicy
from tinyalign_ros.model_files import weights_sha256

SR = 16000


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    """Deterministic test audio: noise stands in for speech when the model is random anyway."""
    return (np.random.default_rng(seed).standard_normal(int(round(seconds * SR))) * 0.1).astype(np.float32)


@pytest.fixture(scope='module')
def tiny(tiny_whisper_path: Path) -> WhisperEncoder:
    return WhisperEncoder(tiny_whisper_path, cpu_threads=1)


# --- window policy ---------------------------------------------------------------------------


def test_window_for_picks_smallest_window_that_holds_the_audio() -> None:
    policy = WindowPolicy()
    assert policy.window_for(1) == 5.0
    assert policy.window_for(5 * SR) == 5.0
    assert policy.window_for(5 * SR + 1) == 10.0
    assert policy.window_for(12 * SR) == 20.0
    assert policy.window_for(30 * SR) == 30.0
    with pytest.raises(EncoderError, match='longer than the largest'):
        policy.window_for(30 * SR + 1)
    with pytest.raises(EncoderError, match='empty'):
        policy.window_for(0)


def test_window_policy_sorts_and_validates() -> None:
    assert WindowPolicy((10, 2.5)).windows_s == (2.5, 10.0)
    for bad in [(), (0.0,), (31.0,), (5.01,), (5.0, 5.0), (-1.0,)]:
        with pytest.raises(ValueError):
            WindowPolicy(bad)


def test_window_policy_key_changes_with_windows() -> None:
    assert WindowPolicy().key() == WindowPolicy((30, 20, 10, 5)).key()
    assert WindowPolicy().key() != WindowPolicy((30.0,)).key()
    assert WindowPolicy((5.0, 30.0)).key() != WindowPolicy((10.0, 30.0)).key()


def test_n_feature_frames_is_ceil_of_20ms_capped_by_window() -> None:
    assert n_feature_frames(1, 5.0) == 1
    assert n_feature_frames(320, 5.0) == 1
    assert n_feature_frames(321, 5.0) == 2
    assert n_feature_frames(5 * SR, 5.0) == 250
    assert n_feature_frames(5 * SR + 1, 5.0) == 250  # capped


# --- features on the tiny model ---------------------------------------------------------------


def test_identity_of_tiny_model(tiny: WhisperEncoder, tiny_whisper_path: Path) -> None:
    expected = hashlib.sha256((tiny_whisper_path / 'model.bin').read_bytes()).hexdigest()
    assert tiny.identity == {'name': tiny_whisper_path.name, 'sha256': expected, 'd_model': 64}
    assert tiny.d_model == 64


@pytest.mark.parametrize('seconds', [1 / SR, 0.02, 0.5, 3.3, 5.0, 5.01, 12.0, 30.0])
def test_feature_shapes(tiny: WhisperEncoder, seconds: float) -> None:
    audio = noise(seconds)
    feats = tiny.features(audio)
    assert feats.dtype == np.float32
    assert feats.shape == (math.ceil(len(audio) / 320), 64)
    assert np.isfinite(feats).all()


def test_only_the_fitted_window_is_encoded(tiny: WhisperEncoder) -> None:
    """A 3 s utterance becomes 500 mel frames (5 s) and 250 encoder frames, not 3000/1500."""
    audio = noise(3.0)
    mel = tiny.log_mel(audio, tiny.policy.window_for(len(audio)))
    assert mel.shape == (80, 500)
    full = tiny._encode(mel[None])
    assert full.shape == (1, 250, 64)
    np.testing.assert_array_equal(tiny.features(audio), full[0, :150])


def test_features_use_faster_whisper_extractor_on_zero_padded_audio(tiny: WhisperEncoder) -> None:
    audio = noise(2.0)
    padded = np.concatenate([audio, np.zeros(3 * SR, np.float32)])
    expected = tiny.model.feature_extractor(padded, padding=0)
    np.testing.assert_array_equal(tiny.log_mel(audio, 5.0), expected)


def test_identical_audio_gives_identical_features(tiny: WhisperEncoder) -> None:
    a = tiny.features(noise(2.0, seed=1))
    b = tiny.features(noise(2.0, seed=1).astype(np.float64))  # dtype does not matter, samples do
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, tiny.features(noise(2.0, seed=2)))


def test_features_batch_matches_single_calls_in_order(tiny: WhisperEncoder) -> None:
    audios = [noise(1.0, 1), noise(7.0, 2), noise(2.0, 3), noise(4.9, 4)]
    before = tiny.encode_calls
    batch = tiny.features_batch(audios, batch_size=8)
    assert tiny.encode_calls - before == 2  # one call per window size (5 s and 10 s)
    for audio, feats in zip(audios, batch):
        np.testing.assert_allclose(feats, tiny.features(audio), rtol=1e-4, atol=1e-4)


def test_features_timed_reports_seconds(tiny: WhisperEncoder) -> None:
    feats, seconds = tiny.features_timed(noise(1.0))
    assert feats.shape == (50, 64)
    assert 0.0 < seconds < 30.0


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    'audio, message',
    [
        (np.zeros(0, np.float32), 'empty'),
        (np.zeros(30 * SR + 1, np.float32), 'longer than the largest'),
        (np.zeros((SR, 2), np.float32), 'mono'),
        (np.full(SR, np.nan, np.float32), 'NaN'),
        (np.zeros(SR, np.int16), 'float'),
    ],
)
def test_bad_audio_raises_encoder_error(tiny: WhisperEncoder, audio: np.ndarray, message: str) -> None:
    with pytest.raises(EncoderError, match=message):
        tiny.features(audio)


def test_missing_model_folder_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / 'nope'
    with pytest.raises(EncoderError, match=re.escape(str(missing))):
        WhisperEncoder(missing)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(EncoderError, match='missing model.bin'):
        WhisperEncoder(tmp_path / 'empty')


def test_folder_without_tokenizer_is_refused_before_any_download(tmp_path: Path, tiny_whisper_path: Path) -> None:
    folder = tmp_path / 'no_tokenizer'
    folder.mkdir()
    (folder / 'model.bin').write_bytes((tiny_whisper_path / 'model.bin').read_bytes())
    with pytest.raises(EncoderError, match='tokenizer.json'):
        WhisperEncoder(folder)


# --- cache ------------------------------------------------------------------------------------


def test_cache_hit_returns_identical_array_without_encoding(tiny_whisper_path: Path, tmp_path: Path) -> None:
    enc = WhisperEncoder(tiny_whisper_path, cache_dir=tmp_path / 'cache', cpu_threads=1)
    audio = noise(2.5, seed=7)
    first = enc.features(audio)
    assert enc.encode_calls == 1
    files = list((tmp_path / 'cache').rglob('*.npy'))
    assert len(files) == 1
    np.testing.assert_array_equal(np.load(files[0], allow_pickle=False), first)
    second = enc.features(audio)
    assert enc.encode_calls == 1, 'a cache hit must not run the encoder'
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float32
    # A new encoder (a new process, as far as the cache can tell) hits the same file.
    again = WhisperEncoder(tiny_whisper_path, cache_dir=tmp_path / 'cache', cpu_threads=1)
    np.testing.assert_array_equal(again.features(audio), first)
    assert again.encode_calls == 0


def test_cache_key_changes_with_audio_policy_and_model(tiny: WhisperEncoder, tiny_whisper_path: Path,
                                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    from fixtures.tiny_whisper import build_tiny_whisper

    audio = noise(1.0)
    key = tiny.cache_key(audio)
    assert key == tiny.cache_key(audio.copy())
    assert key != tiny.cache_key(noise(1.0, seed=9))
    other_policy = WhisperEncoder(tiny_whisper_path, policy=WindowPolicy((30.0,)))
    assert other_policy.cache_key(audio) != key
    other_model = WhisperEncoder(build_tiny_whisper(tmp_path_factory.mktemp('tiny_whisper_seed1'), seed=1))
    assert other_model.sha256 != tiny.sha256
    assert other_model.cache_key(audio) != key


@pytest.mark.parametrize('damage', ['garbage', 'truncated', 'pickled', 'wrong_shape'])
def test_damaged_cache_file_is_ignored_and_rewritten(tiny_whisper_path: Path, tmp_path: Path, damage: str) -> None:
    enc = WhisperEncoder(tiny_whisper_path, cache_dir=tmp_path, cpu_threads=1)
    audio = noise(1.5, seed=3)
    good = enc.features(audio)
    path = enc.cache.path(enc.cache_key(audio))
    if damage == 'garbage':
        path.write_bytes(b'not a numpy file at all')
    elif damage == 'truncated':
        path.write_bytes(path.read_bytes()[:100])
    elif damage == 'pickled':
        np.save(path, np.array([{'evil': 1}], dtype=object), allow_pickle=True)
    else:
        np.save(path, np.zeros((3, 64), np.float32))
    calls = enc.encode_calls
    np.testing.assert_array_equal(enc.features(audio), good)
    assert enc.encode_calls == calls + 1
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), good)


def test_feature_cache_put_is_atomic_and_rejects_bad_keys(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.put('abcdef0123', arr)
    np.testing.assert_array_equal(cache.get('abcdef0123'), arr)
    assert not list(tmp_path.rglob('*.tmp')), 'temporary files must be renamed or removed'
    assert cache.get('0123456789') is None
    for bad in ['../../etc/passwd', 'short', 'a/b/c/d/e/f']:
        with pytest.raises(ValueError):
            cache.get(bad)


def test_model_sha_is_memoized_on_disk_and_refreshed_when_file_changes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv('TINYALIGN_CACHE', str(tmp_path / 'root'))
    weights = tmp_path / 'model.bin'
    weights.write_bytes(b'one')
    assert weights_sha256(weights) == hashlib.sha256(b'one').hexdigest()
    assert len(list((tmp_path / 'root' / 'sha256').glob('*.json'))) == 1
    # A fresh process trusts the disk memo while path, size and mtime are unchanged ...
    memo = next((tmp_path / 'root' / 'sha256').glob('*.json'))
    record = json.loads(memo.read_text())
    memo.write_text(json.dumps({**record, 'sha256': 'f' * 64}))
    monkeypatch.setattr(model_files, '_SHA_MEMO', {})
    assert weights_sha256(weights) == 'f' * 64
    # ... and hashes again once the file changes (new size and mtime).
    weights.write_bytes(b'second')
    assert weights_sha256(weights) == hashlib.sha256(b'second').hexdigest()


# --- cascade ASR ------------------------------------------------------------------------------


def test_transcribe_runs_offline_on_tiny_model(tiny: WhisperEncoder) -> None:
    text = tiny.transcribe(noise(2.0), beam_size=2)
    assert isinstance(text, str)
    assert text == text.strip()
    with pytest.raises(EncoderError, match='empty'):
        tiny.transcribe(np.zeros(0, np.float32))
    with pytest.raises(ValueError):
        tiny.transcribe(noise(1.0), beam_size=0)


# --- the embedded tiny.en ---------------------------------------------------------------------

FOX = 'The quick brown fox jumps over the lazy dog.'


@pytest.fixture(scope='module')
def real(real_whisper_path: Path) -> WhisperEncoder:
    return WhisperEncoder()


@pytest.fixture(scope='module')
def fox_audio() -> np.ndarray:
    from tinyalign_ros.synth import synthesize

    return synthesize(FOX)


def _words(text: str) -> str:
    return ' '.join(re.sub(r"[^a-z0-9' ]+", ' ', text.lower()).split())


@pytest.mark.real
def test_real_identity(real: WhisperEncoder) -> None:
    assert real.identity['d_model'] == 384
    assert real.identity['name'] == 'faster-whisper-tiny.en'
    assert re.fullmatch(r'[0-9a-f]{64}', real.identity['sha256'])


# Measured over 16 syntheses (espeak-ng en-us, 160 wpm): greedy gives 'The quick round-fark jump
# over the lazy dog.' (WER 0.333) or '... lazy nog.' (0.444) about half the time each, because sox
# dithers randomly when it converts to 16 bit, so no two syntheses are bit-identical; beam 5 gives
# 'The quick brown fox jump over the lazy dog.' (0.111) every time. Thresholds allow the measured
# worst case (greedy) or one more word error than measured (beam 5).
@pytest.mark.real
@pytest.mark.parametrize('beam_size, max_wer', [(1, 0.45), (5, 0.25)])
def test_real_cascade_transcribes_synthesized_sentence(real: WhisperEncoder, fox_audio: np.ndarray,
                                                       beam_size: int, max_wer: float) -> None:
    import jiwer

    hypothesis = real.transcribe(fox_audio, beam_size=beam_size)
    wer = jiwer.wer(_words(FOX), _words(hypothesis))
    assert wer <= max_wer, f'{hypothesis!r}: WER {wer:.3f}'


@pytest.mark.real
def test_real_fitted_window_features_agree_with_30s_window_on_speech(real: WhisperEncoder,
                                                                     fox_audio: np.ndarray) -> None:
    """
    The windowing trade-off: the fitted window sees less padding, so features shift a little.

    Measured on this sentence (3.2 s, 5 s window, 16 syntheses): mean cosine 0.983 over the speech
    frames, 5th percentile 0.971, worst frame 0.95; a 1.2 s command drops to a mean of 0.96.
    Close, not equal: the projector must be trained on the same windowing it is used with.
    """
    full = WhisperEncoder(policy=WindowPolicy((30.0,)))
    fitted, padded = real.features(fox_audio), full.features(fox_audio)
    assert fitted.shape == padded.shape
    frames = np.pad(fox_audio, (0, len(fitted) * 320 - len(fox_audio))).reshape(len(fitted), 320)
    speech = np.sqrt((frames ** 2).mean(axis=1)) > 0.01
    assert speech.sum() > 0.5 * len(fitted)
    cos = (fitted * padded).sum(1) / np.linalg.norm(fitted, axis=1) / np.linalg.norm(padded, axis=1)
    assert cos[speech].mean() >= 0.97, cos[speech].mean()
    assert np.percentile(cos[speech], 5) >= 0.94, np.percentile(cos[speech], 5)
    assert not np.allclose(fitted, padded, atol=1e-3), 'the two windowings should not coincide'


# ------------------------------------------------------------------ Whisper's reading of a fitted window

TB, EOT = 1000, 900  # a timestamp_begin and end-of-text id for the token-level tests


def _ts(seconds: float) -> int:
    return TB + round(seconds / 0.02)


def test_window_text_ids_stops_where_the_decoder_starts_over() -> None:
    from tinyalign_ros.encoder import window_text_ids

    # one segment, then a second opened where the speech ends: only the first is read
    looped = [_ts(0.0), 1, 2, 3, _ts(2.0), _ts(2.0), 1, 2, 3, _ts(3.9)]
    assert window_text_ids(looped, TB, EOT, audio_s=2.2) == [1, 2, 3]
    # a timestamp running backwards ends the reading
    assert window_text_ids([_ts(0.0), 1, 2, _ts(1.0), _ts(0.0), 1, 2], TB, EOT, audio_s=4.0) == [1, 2]
    # ... and so does one past the audio's end
    assert window_text_ids([_ts(0.0), 1, _ts(1.0), _ts(1.0), 2, _ts(4.5), 3], TB, EOT, audio_s=3.0) == [1, 2]
    # two segments inside the speech are both read; special tokens are dropped
    two = [_ts(0.0), 1, 2, _ts(1.5), _ts(1.5), 3, 4, _ts(3.0), EOT]
    assert window_text_ids(two, TB, EOT, audio_s=3.2) == [1, 2, 3, 4]


def test_cut_repeat_drops_only_a_tail_that_restarts_the_reading() -> None:
    from tinyalign_ros.encoder import cut_repeat

    assert cut_repeat('Turn on the lights. Turn on the') == 'Turn on the lights.'
    assert cut_repeat('What is 3 plus 4? What is 3 plus 4? What is') == 'What is 3 plus 4?'
    # a sentence that uses its first words again inside keeps them
    inside = 'The invention of movable letters may be considered as the invention of printing.'
    assert cut_repeat(inside) == inside
    assert cut_repeat('Stop. Stop.') == 'Stop. Stop.'  # two words: nothing to tell a loop from a command
    assert cut_repeat('') == ''


@pytest.mark.real
def test_real_fitted_window_transcription_reads_a_sentence_once(real: WhisperEncoder, fox_audio: np.ndarray) -> None:
    """
    Auto mode's Whisper fallback: the same window the projector read, decoded with its stop rules.

    Without them the decoder reads the sentence again and again until its 448-token limit.
    """
    import jiwer

    encoding = real.encode_window(fox_audio)
    np.testing.assert_allclose(encoding.features, real.features(fox_audio), atol=1e-4)
    hypothesis = real.transcribe_encoded(encoding)
    wer = jiwer.wer(_words(FOX), _words(hypothesis))
    assert wer <= 0.45, f'{hypothesis!r}: WER {wer:.3f}'
    assert len(hypothesis.split()) <= 2 * len(FOX.split()), hypothesis
