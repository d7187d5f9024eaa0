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
Speech synthesis with three offline engines (espeak-ng, flite, festival) and sox.

Synthetic speech is how the project gets training data for the base adapter and speech for its
always-on tests without committing any recording: an engine speaks, sox converts to 16 kHz mono.
One engine is one way of making speech: a projector trained on espeak-ng's formant voices alone
learns espeak-ng. A voice is named ``ENGINE:NAME``; a bare name is an espeak-ng voice (accent +
speaker variant, e.g. ``en-us+f3``). ``flite:slt``, ``flite:awb`` and ``flite:rms`` are statistical
voices built from recordings of real speakers, ``flite:kal16`` a diphone voice; ``festival:NAME``
runs festival's ``text2wave`` (kal_diphone, ked_diphone, cmu_us_slt_arctic_hts).

A corpus mixes engines, voices, speaking rates and pitches, and can add the conditions of
:mod:`tinyalign_ros.augment` (noise, rooms, tempo); a few voices and the whole festival engine are
kept out of the training lists (:data:`HELDOUT_VOICES`, :data:`UNSEEN_ENGINE_VOICES`) to measure
how well training generalizes to an unheard speaker and an unheard synthesizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict
import functools
import hashlib
import io
import logging
import math
import os
from pathlib import Path
import random
import re
import shutil
import subprocess
import tempfile

import numpy as np
import soundfile as sf
from tqdm import tqdm

from .augment import augment, AugmentConfig

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000

# Training voices: base accent + espeak-ng variant (``+mN`` / ``+fN``). Each one was checked to
# change the audio (variants are silently ignored on some bases, e.g. ``en-gb+f1`` sounds exactly
# like ``en-gb``; British English has to be written ``en``) and to stay intelligible to Whisper
# tiny.en (WER 0.2-0.46 on six LJ sentences). Four low (about 95-105 Hz) and four high (175-205 Hz)
# voices. mbrola voices (``mb-*``) are not used: they need packages that are not installed.
DEFAULT_VOICES: tuple[str, ...] = (
    'en-us',
    'en-us+f3',
    'en+m3',
    'en+f2',
    'en-gb-scotland+f2',
    'en-gb-x-rp+m1',
    'en-us-nyc+f4',
    'en-gb-x-gbclan+m5',
)
# Voices never used by the default training list: unseen variants (m6, f1) and an unseen accent
# (Caribbean English with m7), for held-out-voice evaluation.
HELDOUT_VOICES: tuple[str, ...] = (
    'en-us+f1',
    'en-gb-x-rp+m6',
    'en-029+m7',
)
# flite voices used for training (all five that Debian's flite has but the 8 kHz kal; kal16 is the same
# diphone speaker at 16 kHz), and the voice family kept out of training entirely: festival's voices.
FLITE_VOICES: tuple[str, ...] = ('flite:slt', 'flite:awb', 'flite:rms', 'flite:kal16')
UNSEEN_ENGINE_VOICES: tuple[str, ...] = (
    'festival:ked_diphone',
    'festival:kal_diphone',
    'festival:cmu_us_slt_arctic_hts',
)
ENGINES: tuple[str, ...] = ('espeak', 'flite', 'festival')
DEFAULT_RATES: tuple[int, ...] = (140, 160, 180)
DEFAULT_PITCHES: tuple[int, ...] = (40, 50, 60)
RATE_RANGE = (80, 450)  # words per minute that espeak-ng accepts
_PROBE_TEXT = 'testing one two three'


class SynthError(RuntimeError):
    """espeak-ng or sox is missing or failed, or a voice does not exist."""


_ENGINE_TOOLS = {'espeak': 'espeak-ng', 'flite': 'flite', 'festival': 'text2wave'}
_ENGINE_PACKAGES = {'espeak-ng': 'espeak-ng', 'flite': 'flite', 'text2wave': 'festival', 'sox': 'sox'}


def split_voice(voice: str) -> tuple[str, str]:
    """``'flite:slt'`` -> ``('flite', 'slt')``; a bare name is an espeak-ng voice."""
    engine, sep, name = voice.partition(':')
    if not sep:
        return 'espeak', voice
    if engine not in ENGINES:
        raise SynthError(f'unknown speech engine {engine!r} in voice {voice!r} (engines: {", ".join(ENGINES)})')
    return engine, name


def require_tools(engines: Sequence[str] = ('espeak',)) -> None:
    """Fail with an actionable message when the synthesis tools are not installed."""
    tools = ['sox', *(_ENGINE_TOOLS[e] for e in engines)]
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        packages = ' '.join(dict.fromkeys(_ENGINE_PACKAGES[t] for t in missing))
        raise SynthError(
            f'missing {", ".join(missing)}: install with `apt-get install {packages}` '
            '(`make setup` does it for you)'
        )


def _espeak(text: str, voice: str, rate: int = 175, pitch: int = 50) -> subprocess.CompletedProcess:
    # "--" ends the options: a sentence starting with "-" would otherwise be parsed as a flag.
    return subprocess.run(
        ['espeak-ng', '-v', voice, '-s', str(int(rate)), '-p', str(int(pitch)), '--stdout', '--', text],
        capture_output=True, check=False,
    )


@functools.lru_cache(maxsize=1)
def _variant_names() -> frozenset[str]:
    listing = subprocess.run(['espeak-ng', '--voices=variant'], capture_output=True, text=True, check=False)
    return frozenset(re.findall(r'!v/(\S+)', listing.stdout))


@functools.lru_cache(maxsize=1)
def _voice_names() -> frozenset[str]:
    """Lower-cased language codes and voice files that ``espeak-ng -v`` resolves exactly."""
    listing = subprocess.run(['espeak-ng', '--voices'], capture_output=True, text=True, check=False)
    names: set[str] = set()
    for line in listing.stdout.splitlines()[1:]:
        fields = line.split()  # Pty Language Age/Gender VoiceName File (other-language priority)...
        if len(fields) < 5:
            continue
        names.update((fields[1], fields[4], fields[4].rsplit('/', 1)[-1]))
        names.update(re.findall(r'\(([^\s()]+) \d+\)', ' '.join(fields[5:])))
    return frozenset(name.lower() for name in names)


@functools.lru_cache(maxsize=None)
def _checked_voice(voice: str) -> str:
    base, _, variant = voice.partition('+')
    # espeak-ng falls back silently for near misses ("no-such-voice" speaks Norwegian), so the
    # base must be a listed language code or voice file, not merely accepted by espeak-ng.
    hint = ' (mbrola voices are not installed)' if base.startswith('mb') else ''
    if base.lower() not in _voice_names():
        raise SynthError(
            f'unknown espeak-ng voice {voice!r}{hint}: {base!r} is not a language code or voice file '
            'listed by `espeak-ng --voices` (English ones: `espeak-ng --voices=en`)'
        )
    if variant and variant not in _variant_names():
        raise SynthError(
            f'unknown espeak-ng variant {variant!r} in voice {voice!r} '
            '(variants are case-sensitive; list them with `espeak-ng --voices=variant`)'
        )
    plain = _espeak(_PROBE_TEXT, base)
    if plain.returncode != 0 or not plain.stdout:
        raise SynthError(
            f'unknown espeak-ng voice {voice!r}{hint}: {plain.stderr.decode(errors="replace").strip()} '
            '(list voices with `espeak-ng --voices=en`)'
        )
    if variant and _espeak(_PROBE_TEXT, voice).stdout == plain.stdout:
        raise SynthError(
            f'espeak-ng ignores the variant in voice {voice!r}: it sounds exactly like {base!r} '
            '(use the language code, e.g. "en+f3" rather than "en-gb+f3")'
        )
    return voice


def check_voice(voice: str) -> str:
    """
    Return ``voice`` if its engine really has it, else raise :class:`SynthError` naming it.

    espeak-ng falls back without a word when a voice is a near miss or a ``+variant`` is unknown
    or does not apply to that base, which would quietly make a "multi-speaker" corpus
    single-speaker; so the base must be listed, must speak, and a variant must exist and change
    the audio. flite and festival voices must be listed by the engine. Results are cached per process.
    """
    if not isinstance(voice, str) or not voice.strip() or voice != voice.strip():
        raise SynthError(f'bad voice name {voice!r}')
    engine, name = split_voice(voice)
    require_tools((engine,))
    if engine == 'flite':
        if name not in _flite_voices():
            raise SynthError(f'flite has no voice {name!r} (`flite -lv` lists: {" ".join(sorted(_flite_voices()))})')
        return voice
    if engine == 'festival':
        if name not in _festival_voices():
            raise SynthError(f'festival has no voice {name!r} (installed: {" ".join(sorted(_festival_voices()))})')
        return voice
    return _checked_voice(name)


@functools.lru_cache(maxsize=1)
def _flite_voices() -> frozenset[str]:
    listing = subprocess.run(['flite', '-lv'], capture_output=True, text=True, check=False)
    return frozenset(listing.stdout.split(':', 1)[-1].split())


@functools.lru_cache(maxsize=1)
def _festival_voices() -> frozenset[str]:
    roots = [Path('/usr/share/festival/voices'), Path('/usr/lib/festival/voices')]
    return frozenset(d.name for root in roots if root.is_dir() for lang in root.iterdir() if lang.is_dir()
                     for d in lang.iterdir() if d.is_dir())


def _engine_wav(text: str, voice: str, rate: int, pitch: int) -> bytes:
    """Run the voice's engine; returns WAV bytes at the engine's own rate."""
    engine, name = split_voice(voice)
    if engine == 'espeak':
        done = _espeak(text, name, rate, pitch)
        if done.returncode != 0 or not done.stdout:
            raise SynthError(f'espeak-ng failed for voice {voice!r}: {done.stderr.decode(errors="replace").strip()}')
        return done.stdout
    # Speaking rate as a duration stretch (175 wpm = the engines' normal pace); pitch is left to the
    # voice (the statistical voices have no pitch knob; augmentation shifts pitch for every engine).
    stretch = 175.0 / max(int(rate), 1)
    with tempfile.TemporaryDirectory(prefix='tinyalign-tts-') as tmp:
        wav = Path(tmp) / 'out.wav'
        if engine == 'flite':
            cmd = ['flite', '-voice', name, '--setf', f'duration_stretch={stretch:.3f}', '-t', text, '-o', str(wav)]
            done = subprocess.run(cmd, capture_output=True, check=False)
        else:
            # text2wave evaluates only the first form of an -eval string: one -eval per form.
            cmd = ['text2wave', '-eval', f'(voice_{name})', '-eval', f"(Parameter.set 'Duration_Stretch {stretch:.3f})",
                   '-o', str(wav)]
            done = subprocess.run(cmd, input=text.encode(), capture_output=True, check=False)
        if done.returncode != 0 or not wav.is_file() or wav.stat().st_size <= 44:
            raise SynthError(f'{engine} failed for voice {voice!r}: {done.stderr.decode(errors="replace").strip()}')
        return wav.read_bytes()


def synthesize(text: str, voice: str = 'en-us', rate: int = 160, pitch: int = 50) -> np.ndarray:
    """
    Speak ``text`` and return float32 mono samples at 16 kHz.

    ``rate`` is in words per minute and ``pitch`` in espeak's 0-99 scale; both vary the speaker
    so a corpus is not a single monotone voice.
    """
    if not text.strip():
        raise SynthError('cannot synthesize empty text')
    check_voice(voice)
    wav = _engine_wav(text, voice, rate, pitch)
    sox = subprocess.run(
        # -D: no dither, so the same text and voice always give the same samples (sox's dither
        # noise is random and would break corpus determinism and resume checks).
        ['sox', '-D', '-t', 'wav', '-', '-t', 'wav', '-r', str(SAMPLE_RATE), '-c', '1', '-b', '16', '-'],
        input=wav, capture_output=True, check=False,
    )
    if sox.returncode != 0:
        raise SynthError(f'sox failed: {sox.stderr.decode(errors="replace").strip()}')
    samples, sr = sf.read(io.BytesIO(sox.stdout), dtype='float32')
    if sr != SAMPLE_RATE:
        raise SynthError(f'sox returned {sr} Hz instead of {SAMPLE_RATE} Hz')
    return samples


def read_sentences(path: str | Path, max_words: int | None = None, min_words: int = 1) -> list[str]:
    """
    Read one sentence per line, skipping blank lines and those outside the word-count range.

    Long sentences are dropped rather than cut so that every transcript matches its audio; the
    word limit keeps utterances inside the encoder's shorter (cheaper) windows.
    """
    if max_words is not None and max_words < min_words:
        raise ValueError(f'max_words ({max_words}) is smaller than min_words ({min_words})')
    sentences = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            sentence = ' '.join(line.split())
            n_words = len(sentence.split())
            if n_words < max(min_words, 1) or (max_words is not None and n_words > max_words):
                continue
            sentences.append(sentence)
    return sentences


def _plan(
    sentences: Sequence[str], voices: Sequence[str], rates: Sequence[int], pitches: Sequence[int],
    n: int, seed: int,
) -> list[tuple[str, str, str, int, int]]:
    """
    Decide (id, text, voice, rate, pitch) for every utterance from the seed alone.

    Sentences are taken in a seeded shuffled order (cycling when ``n`` exceeds them); voices,
    rates and pitches are drawn from shuffled balanced lists so each value is used about equally.
    The id carries a hash of what is spoken and how, so a resumed run never mistakes an old wav
    made with other settings for its own.
    """
    rng = random.Random(seed)
    order = list(range(len(sentences)))
    rng.shuffle(order)

    def balanced(options: Sequence) -> list:
        values = list(options) * math.ceil(n / len(options))
        rng.shuffle(values)
        return values[:n]

    chosen_voices, chosen_rates, chosen_pitches = balanced(voices), balanced(rates), balanced(pitches)
    plan = []
    for i in range(n):
        text = sentences[order[i % len(order)]]
        voice, rate, pitch = chosen_voices[i], int(chosen_rates[i]), int(chosen_pitches[i])
        digest = hashlib.sha256(f'{text}\0{voice}\0{rate}\0{pitch}'.encode()).hexdigest()[:8]
        plan.append((f'syn{i:06d}-{digest}', text, voice, rate, pitch))
    return plan


def _seed_of(uid: str, seed: int) -> int:
    return int(hashlib.sha256(f'{seed}\0{uid}'.encode()).hexdigest()[:12], 16)


def _replay_condition(uid: str, seed: int, config: AugmentConfig) -> str:
    """Recover the condition a reused wav was made with: the same draws on a dummy signal name it."""
    _, condition = augment(np.full(1600, 0.1, dtype=np.float32), random.Random(_seed_of(uid, seed)), config)
    return condition


def _is_complete_wav(path: Path) -> bool:
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, sf.LibsndfileError):
        return False
    return info.frames > 0 and info.samplerate == SAMPLE_RATE


def _render(wav: Path, text: str, voice: str, rate: int, pitch: int,
            augment_config: AugmentConfig | None = None, augment_seed: int = 0) -> str | None:
    """
    Write one utterance unless a complete wav is already there.

    Returns the augmentation applied (``'clean'`` without augmentation), or None when the wav was
    already there (a resumed run; the manifest then reads the condition back from the plan).
    """
    if _is_complete_wav(wav):
        return None
    samples = synthesize(text, voice=voice, rate=rate, pitch=pitch)
    condition = 'clean'
    if augment_config is not None:
        samples, condition = augment(samples, random.Random(augment_seed), augment_config)
    tmp = wav.with_name(f'.{wav.name}.{os.getpid()}.tmp')
    try:
        sf.write(str(tmp), samples, SAMPLE_RATE, subtype='PCM_16', format='WAV')
        os.replace(tmp, wav)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return condition


def synthesize_corpus(
    sentences: list[str],
    out_dir: str | Path,
    voices: list[str],
    rates: list[int],
    pitches: list[int] | None = None,
    n: int | None = None,
    seed: int = 0,
    max_words: int | None = None,
    workers: int = 2,
    progress: bool = True,
    augment_config: AugmentConfig | None = None,
) -> Path:
    """
    Synthesize a corpus into ``out_dir/wavs/*.wav`` and ``out_dir/manifest.jsonl``; return the manifest.

    ``n`` utterances (default: one per sentence) are assigned sentence, voice, rate and pitch
    deterministically from ``seed``. Sentences longer than ``max_words`` are dropped first.
    ``pitches`` defaults to :data:`DEFAULT_PITCHES`. The run is resumable: wavs are written
    atomically, complete ones are reused, and the manifest (which also records voice, rate and
    pitch per utterance) is written last, so its presence means the corpus is whole. The engines
    and sox do the work in subprocesses, so a small thread pool (``workers``) parallelizes it.
    ``augment_config`` adds one drawn condition (noise, room, tempo, ...) per utterance, seeded by
    the utterance, and recorded in the manifest as ``aug``.
    """
    from tinyalign_ros.data import Item, write_manifest  # data does not import synth; no cycle

    require_tools(tuple(dict.fromkeys(split_voice(v)[0] for v in voices)))
    pitches = list(DEFAULT_PITCHES if pitches is None else pitches)
    if max_words is not None:
        sentences = [s for s in sentences if len(s.split()) <= max_words]
    sentences = [s for s in sentences if s.strip()]
    if not sentences:
        raise ValueError('no sentences to synthesize (empty list, or all longer than max_words)')
    if not voices or not rates or not pitches:
        raise ValueError('voices, rates and pitches must each list at least one value')
    bad_rates = [r for r in rates if not RATE_RANGE[0] <= int(r) <= RATE_RANGE[1]]
    if bad_rates:
        raise ValueError(f'rates {bad_rates} outside espeak-ng range {RATE_RANGE[0]}-{RATE_RANGE[1]} wpm')
    bad_pitches = [p for p in pitches if not 0 <= int(p) <= 99]
    if bad_pitches:
        raise ValueError(f'pitches {bad_pitches} outside espeak-ng range 0-99')
    if workers < 1:
        raise ValueError(f'workers must be >= 1, got {workers}')
    n = len(sentences) if n is None else n
    if n < 1:
        raise ValueError(f'n must be >= 1, got {n}')
    for voice in dict.fromkeys(voices):  # fail before any work, naming the bad voice
        check_voice(voice)

    out_dir = Path(out_dir)
    wav_dir = out_dir / 'wavs'
    wav_dir.mkdir(parents=True, exist_ok=True)
    plan = _plan(sentences, voices, rates, pitches, n, seed)
    if augment_config is not None:  # a different condition recipe must not reuse the old wavs
        recipe = hashlib.sha256(repr(sorted(asdict(augment_config).items())).encode()).hexdigest()[:6]
        plan = [(f'{uid}-a{recipe}', text, voice, rate, pitch) for uid, text, voice, rate, pitch in plan]
    conditions: dict[str, str] = {}
    made = 0
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(
        total=len(plan), desc='synthesizing', unit='utt', disable=not progress
    ) as bar:
        futures = {
            pool.submit(_render, wav_dir / f'{uid}.wav', text, voice, rate, pitch, augment_config,
                        _seed_of(uid, seed)): (uid, voice)
            for uid, text, voice, rate, pitch in plan
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    uid, voice = futures[future]
                    raise SynthError(f'synthesis of {uid} (voice {voice!r}) failed: {error}') from error
                condition = future.result()
                if condition is not None:
                    made += 1
                    conditions[futures[future][0]] = condition
                bar.update(1)
    log.info('corpus %s: %d synthesized, %d reused', out_dir, made, len(plan) - made)
    items = []
    for uid, text, voice, rate, pitch in plan:
        meta: dict[str, object] = {'voice': voice, 'rate': rate, 'pitch': pitch}
        if augment_config is not None:
            meta['aug'] = conditions.get(uid) or _replay_condition(uid, seed, augment_config)
        items.append(Item(uid, wav_dir / f'{uid}.wav', text, meta))
    return write_manifest(items, out_dir / 'manifest.jsonl')
