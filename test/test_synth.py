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

"""espeak-ng synthesis: single utterances, voices, and resumable deterministic corpora."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tinyalign_ros import synth
from tinyalign_ros.data import load_dataset
from tinyalign_ros.synth import (
    check_voice, DEFAULT_VOICES, HELDOUT_VOICES, read_sentences, SAMPLE_RATE, SynthError, synthesize, synthesize_corpus,
)

SENTENCES = [
    'the robot turned left at the door',
    'please bring me a cup of water',
    'what time is it in the kitchen',
    'stop moving and wait for me here',
    'a much longer sentence that has more than eight words in it for the filter',
]


def _median_f0(samples: np.ndarray) -> float:
    """Crude autocorrelation pitch estimate over loud 40 ms frames (enough to tell male from female)."""
    frame, estimates = 640, []
    lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 60
    for start in range(0, len(samples) - frame, frame):
        x = samples[start:start + frame]
        if np.sqrt(np.mean(x ** 2)) < 0.02:
            continue
        ac = np.correlate(x, x, 'full')[frame - 1:]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            estimates.append(SAMPLE_RATE / lag)
    return float(np.median(estimates))


def test_synthesize_returns_plausible_speech() -> None:
    audio = synthesize('hello robot, this is a short test sentence', rate=160)
    assert audio.dtype == np.float32 and audio.ndim == 1
    seconds = len(audio) / SAMPLE_RATE
    assert 1.5 < seconds < 5.0  # eight words at 160 wpm is about 3 s
    assert np.sqrt(np.mean(audio ** 2)) > 0.01
    faster = synthesize('hello robot, this is a short test sentence', rate=320)
    assert len(faster) < 0.75 * len(audio)


def test_text_starting_with_dash_is_spoken_not_parsed_as_option() -> None:
    assert len(synthesize('-x marks the spot')) / SAMPLE_RATE > 0.5


def test_empty_text_is_rejected() -> None:
    with pytest.raises(SynthError, match='empty text'):
        synthesize('   ')


def test_variants_change_the_voice() -> None:
    low, high = synthesize('one two three four five', 'en-us'), synthesize('one two three four five', 'en-us+f3')
    assert _median_f0(high) > 1.5 * _median_f0(low)


def test_every_listed_voice_sounds_different() -> None:
    voices = DEFAULT_VOICES + HELDOUT_VOICES
    assert len(DEFAULT_VOICES) >= 6 and HELDOUT_VOICES
    assert not set(DEFAULT_VOICES) & set(HELDOUT_VOICES)
    digests = {hashlib.sha256(synthesize('good morning', v).tobytes()).hexdigest() for v in voices}
    assert len(digests) == len(voices)


@pytest.mark.parametrize('voice, message', [
    ('no-such-voice', "unknown espeak-ng voice 'no-such-voice'"),
    ('en-us+nosuchvariant', "unknown espeak-ng variant 'nosuchvariant' in voice 'en-us\\+nosuchvariant'"),
    ('en-gb+f1', "ignores the variant in voice 'en-gb\\+f1'"),  # espeak-ng silently drops it
])
def test_unknown_voice_raises_with_its_name(voice: str, message: str) -> None:
    with pytest.raises(SynthError, match=message):
        synthesize('hello', voice)
    with pytest.raises(SynthError, match=message):
        check_voice(voice)


def test_missing_tool_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = synth.shutil.which
    monkeypatch.setattr(synth.shutil, 'which', lambda tool: None if tool == 'sox' else real_which(tool))
    with pytest.raises(SynthError, match='missing sox: install with `apt-get install sox`'):
        synthesize('hello')
    monkeypatch.setattr(synth.shutil, 'which', lambda tool: None if tool in ('sox', 'flite') else real_which(tool))
    with pytest.raises(SynthError, match='missing sox, flite: install with `apt-get install sox flite`'):
        synthesize('hello', voice='flite:slt')
    with pytest.raises(SynthError, match='missing sox'):
        synthesize_corpus(SENTENCES, '/nonexistent/never-created', ['en-us'], [160])


def test_read_sentences_filters_by_words(tmp_path: Path) -> None:
    path = tmp_path / 's.txt'
    path.write_text('one\n\n   \ntwo  words\nthree words here\nfour words are here\n', encoding='utf-8')
    assert read_sentences(path) == ['one', 'two words', 'three words here', 'four words are here']
    assert read_sentences(path, max_words=3, min_words=2) == ['two words', 'three words here']
    with pytest.raises(ValueError, match='max_words'):
        read_sentences(path, max_words=1, min_words=2)


def _corpus(out: Path, seed: int = 0, **kwargs) -> Path:
    args = {'voices': ['en-us', 'en-us+f3'], 'rates': [150, 190], 'pitches': [45, 55], 'n': 4, 'seed': seed,
            'max_words': 8, 'progress': False}
    args.update(kwargs)
    return synthesize_corpus(SENTENCES, out, **args)


def test_corpus_is_deterministic_and_loadable(tmp_path: Path) -> None:
    first = _corpus(tmp_path / 'a')
    second = _corpus(tmp_path / 'b', workers=1)
    assert first == tmp_path / 'a' / 'manifest.jsonl'
    assert first.read_text() == second.read_text()  # relative audio paths: byte-identical manifests
    assert first.read_text() != _corpus(tmp_path / 'c', seed=1).read_text()
    records = [json.loads(line) for line in first.read_text().splitlines()]
    assert len(records) == 4
    assert {r['voice'] for r in records} == {'en-us', 'en-us+f3'}  # balanced: both voices used twice
    assert sorted(r['voice'] for r in records).count('en-us') == 2
    assert all(r['rate'] in (150, 190) and r['pitch'] in (45, 55) for r in records)
    assert all(r['text'] != SENTENCES[-1] for r in records)  # longer than max_words
    items = load_dataset(first)
    assert [i.meta['voice'] for i in items] == [r['voice'] for r in records]
    for item in items:
        info = sf.info(str(item.audio))
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == 'PCM_16'
        assert item.audio.read_bytes() == (tmp_path / 'b' / 'wavs' / item.audio.name).read_bytes()


def test_corpus_cycles_sentences_when_n_exceeds_them(tmp_path: Path) -> None:
    items = load_dataset(_corpus(tmp_path, n=6, voices=['en-us']))
    assert len(items) == 6 and len({i.id for i in items}) == 6
    assert {i.text for i in items} == set(SENTENCES[:4])


def test_corpus_resume_reuses_complete_wavs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = _corpus(tmp_path)
    wavs = sorted((tmp_path / 'wavs').glob('*.wav'))
    mtimes = {w: w.stat().st_mtime_ns for w in wavs}
    text = manifest.read_text()
    calls: list[str] = []
    real = synth.synthesize

    def counting(text_: str, **kwargs) -> np.ndarray:
        calls.append(text_)
        return real(text_, **kwargs)

    monkeypatch.setattr(synth, 'synthesize', counting)
    manifest.unlink()  # as after an interrupted run: wavs there, manifest not yet written
    assert _corpus(tmp_path).read_text() == text
    assert calls == []
    assert {w: w.stat().st_mtime_ns for w in wavs} == mtimes
    wavs[0].unlink()
    wavs[1].write_bytes(b'RIFF truncated')  # an incomplete file is redone, not trusted
    _corpus(tmp_path)
    assert len(calls) == 2
    assert wavs[0].is_file() and sf.info(str(wavs[1])).frames > 0
    assert wavs[2].stat().st_mtime_ns == mtimes[wavs[2]]
    assert not list((tmp_path / 'wavs').glob('.*.tmp'))


def test_corpus_rejects_bad_voice_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(SynthError, match="'en-us\\+nosuchvariant'"):
        _corpus(tmp_path, voices=['en-us', 'en-us+nosuchvariant'])
    assert not list(tmp_path.rglob('*.wav')) and not (tmp_path / 'manifest.jsonl').exists()


@pytest.mark.parametrize('kwargs, message', [
    ({'rates': [20]}, 'outside espeak-ng range'),
    ({'pitches': [120]}, 'outside espeak-ng range 0-99'),
    ({'voices': []}, 'at least one value'),
    ({'max_words': 2}, 'no sentences'),
    ({'n': 0}, 'n must be'),
    ({'workers': 0}, 'workers must be'),
])
def test_corpus_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _corpus(tmp_path, **kwargs)


@pytest.mark.parametrize('voice', ['flite:slt', 'flite:kal16', 'festival:ked_diphone'])
def test_other_engines_speak_at_16khz_and_follow_the_rate(voice: str) -> None:
    slow = synthesize('Please bring me the red cup from the kitchen.', voice=voice, rate=120)
    fast = synthesize('Please bring me the red cup from the kitchen.', voice=voice, rate=220)
    assert slow.dtype == np.float32 and np.abs(slow).max() > 0.05
    assert slow.size > 1.4 * fast.size  # the rate reaches the engine as a duration stretch


def test_unknown_engine_voices_are_refused_by_name() -> None:
    with pytest.raises(SynthError, match='flite has no voice'):
        check_voice('flite:nobody')
    with pytest.raises(SynthError, match='festival has no voice'):
        check_voice('festival:nobody')
    with pytest.raises(SynthError, match='unknown speech engine'):
        check_voice('pico:en')


def test_a_corpus_records_each_utterance_condition_and_reuses_it(tmp_path: Path) -> None:
    from tinyalign_ros.augment import AugmentConfig

    config = AugmentConfig(p_clean=0.0, p_noise=1.0)
    manifest = synthesize_corpus(SENTENCES, tmp_path, ['en-us', 'flite:slt'], [160], n=4, augment_config=config,
                                 progress=False)
    first = manifest.read_text()
    assert first.count('"aug": "') == 4 and 'dB' in first and '"flite:slt"' in first
    again = synthesize_corpus(SENTENCES, tmp_path, ['en-us', 'flite:slt'], [160], n=4, augment_config=config,
                              progress=False)
    assert again.read_text() == first  # reused wavs report the same conditions
    plain = synthesize_corpus(SENTENCES, tmp_path / 'plain', ['en-us'], [160], n=2, progress=False)
    assert '"aug"' not in plain.read_text()
