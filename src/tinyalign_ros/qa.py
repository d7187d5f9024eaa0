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
Spoken question answering: the reading a robot's user cares about.

Word error rates say how well the projector hears; they do not say whether the assistant answers.
This module asks spoken questions with known answers three ways and counts correct answers:

- ``text``: the LLM fed the true question as text (the ceiling: no speech at all);
- ``cascade``: Whisper's transcript fed to the same LLM (what robots run today);
- ``aligned``: the projected audio fed to the same LLM (this project's method).

An answer is correct when it contains one of the question's accepted answer keywords (any of
several written forms, e.g. ``["8", "eight"]``), compared case-insensitively on normalized text.

The question and command sets live in the package (``assets/sets``) so an installed package finds
them like it finds its base adapter; their text is written here, their audio is synthesized on
demand (:func:`synthesize_set`) and never stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
import json
from pathlib import Path
import re
import time
from typing import Any
import unicodedata

from .audio import load_audio
from .data import check_id, Item, load_dataset, write_manifest

SETS_DIR = Path(__file__).resolve().parent / 'assets' / 'sets'
SET_FILES = {'qa': SETS_DIR / 'qa_questions.jsonl', 'commands': SETS_DIR / 'commands.jsonl'}
SPLITS = ('dev', 'test')
PATHS = ('text', 'cascade', 'aligned')


class QAError(ValueError):
    """A question set or QA manifest that cannot be used."""


# --------------------------------------------------------------------------------------------
# Answer matching


def normalize(text: str) -> list[str]:
    """
    Lower-cased words without punctuation: 'Twenty-four.' -> ['twenty', 'four'].

    Hyphens and apostrophes split words, so 'twenty-four' and 'twenty four' compare equal, and
    accents are folded so 'café' and 'cafe' do too.
    """
    text = unicodedata.normalize('NFKD', text)
    text = ''.join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return re.findall(r'[a-z0-9]+', text)


def contains_answer(answer: str, accepted: Sequence[str]) -> bool:
    """Tell whether ``answer`` contains any accepted form as whole words ('eight' is not in 'eighteen')."""
    words = normalize(answer)
    for form in accepted:
        target = normalize(form)
        if not target:
            continue
        n = len(target)
        if any(words[i:i + n] == target for i in range(len(words) - n + 1)):
            return True
    return False


# --------------------------------------------------------------------------------------------
# The sets


def load_set(name: str, split: str | None = None) -> list[dict[str, Any]]:
    """
    Load the records of the ``qa`` or ``commands`` set, optionally one split, validated.

    Each record has ``id``, ``split`` and its sentence (``question`` for QA, ``text`` for commands);
    QA records also carry ``answers``, a non-empty list of accepted answer forms.
    """
    if name not in SET_FILES:
        raise QAError(f'unknown set {name!r}; choose from {sorted(SET_FILES)}')
    if split is not None and split not in SPLITS:
        raise QAError(f'split must be one of {SPLITS}, got {split!r}')
    path = SET_FILES[name]
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    key = 'question' if name == 'qa' else 'text'
    with open(path, encoding='utf-8') as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f'{path}:{lineno}'
            record = json.loads(line)
            check_id(record.get('id'), where)
            if record['id'] in seen:
                raise QAError(f'{where}: duplicate id {record["id"]!r}')
            seen.add(record['id'])
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise QAError(f'{where}: missing {key!r}')
            if record.get('split') not in SPLITS:
                raise QAError(f'{where}: split must be one of {SPLITS}')
            if name == 'qa':
                answers = record.get('answers')
                if not isinstance(answers, list) or not answers or not all(
                        isinstance(a, str) and normalize(a) for a in answers):
                    raise QAError(f'{where}: answers must be a non-empty list of words')
            if split is None or record['split'] == split:
                records.append(record)
    return records


def sentence_of(record: dict[str, Any]) -> str:
    """Return what is spoken for a set record: the question, or the command."""
    return record['question'] if 'question' in record else record['text']


def _voice_slug(voice: str) -> str:
    return re.sub(r'[^A-Za-z0-9]+', '_', voice).strip('_')


def synthesize_set(name: str, out_dir: str | Path, voices: Sequence[str], split: str | None = None,
                   rates: Sequence[int] = (160,), augment_config: Any = None, seed: int = 0, workers: int = 2,
                   progress: bool = True) -> Path:
    """
    Speak every sentence of a set once per voice; write ``out_dir/manifest.jsonl``; return it.

    Each voice gets its own sub-folder (one :func:`~tinyalign_ros.synth.synthesize_corpus` call,
    so every question is asked in every voice, and a run resumes voice by voice). The combined
    manifest's items keep the synthesizer's metadata (voice, rate, pitch, condition) and add the
    set record's ``set``, ``qid``, ``split`` and, for QA, ``answers``: the QA reading needs nothing
    else.
    """
    from .synth import synthesize_corpus

    records = load_set(name, split)
    if not records:
        raise QAError(f'set {name!r} has no {split} sentences')
    if not voices:
        raise QAError('give at least one voice')
    by_text = {sentence_of(r): r for r in records}
    if len(by_text) != len(records):
        raise QAError(f'set {name!r} repeats a sentence; each sentence must be unique')
    out_dir = Path(out_dir)
    items: list[Item] = []
    for voice in dict.fromkeys(voices):
        slug = _voice_slug(voice)
        manifest = synthesize_corpus(list(by_text), out_dir / slug, voices=[voice], rates=list(rates),
                                     n=len(records), seed=seed, workers=workers, progress=progress,
                                     augment_config=augment_config)
        for item in load_dataset(manifest):
            record = by_text[item.text or '']
            meta = dict(item.meta)
            meta.update({'set': name, 'qid': record['id'], 'split': record['split']})
            if 'answers' in record:
                meta['answers'] = list(record['answers'])
            items.append(Item(f'{record["id"]}-{slug}', item.audio, item.text, meta))
    items.sort(key=lambda it: it.id)
    return write_manifest(items, out_dir / 'manifest.jsonl')


# --------------------------------------------------------------------------------------------
# The reading


@dataclass
class QAResult:
    """Accuracy and latency of each path, overall and per voice, with every answer."""

    n: int
    accuracy: dict[str, float | None]
    latency_ms: dict[str, dict[str, float] | None]
    per_voice: dict[str, dict[str, float | None]] = field(default_factory=dict)
    details: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self, with_details: bool = False) -> dict[str, Any]:
        cascade, aligned = self.accuracy.get('cascade'), self.accuracy.get('aligned')
        ratio = round(aligned / cascade, 3) if aligned is not None and cascade else None
        out: dict[str, Any] = {'n': self.n, 'accuracy': self.accuracy, 'aligned_over_cascade': ratio,
                               'latency_ms': self.latency_ms, 'per_voice': self.per_voice,
                               'seconds': round(self.seconds, 1)}
        if with_details:
            out['details'] = self.details
        return out


def qa_items(items: Sequence[Item]) -> list[Item]:
    """Check that every item is a spoken question with its accepted answers."""
    if not items:
        raise QAError('the QA manifest has no items')
    for item in items:
        answers = item.meta.get('answers')
        if not item.text or not isinstance(answers, list) or not answers:
            raise QAError(f'item {item.id!r} needs its question as text and a non-empty "answers" list '
                          '(write the manifest with `tinyalign synth --set qa`)')
    return list(items)


def evaluate_qa(items: Sequence[Item], pipeline: Any, paths: Sequence[str] = PATHS,
                progress: Callable[[int, int], None] | None = None) -> QAResult:
    """
    Ask every spoken question on each path with the pipeline's own prompt and generation settings.

    The text path depends only on the question, so each distinct question is asked once and its
    answer is shared by all voices speaking it. Latency is the pipeline's (encoder and projector
    or transcription included) for the spoken paths, and the LLM's alone for the text path.
    """
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        raise QAError(f'unknown paths {unknown}; choose from {PATHS}')
    items = qa_items(items)
    start = time.perf_counter()
    llm = pipeline.llm
    text_cache: dict[str, dict[str, Any]] = {}
    details: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        answers = item.meta['answers']
        row: dict[str, Any] = {'id': item.id, 'question': item.text, 'answers': answers,
                               'voice': item.meta.get('voice')}
        if 'text' in paths:
            if item.text not in text_cache:
                inputs = llm.build_text_inputs(item.text, pipeline.prompt)
                result = llm.generate(inputs, pipeline.generation, question_tokens=len(llm.tokenize(item.text)),
                                      prefix_ids=llm.prompt_parts(pipeline.prompt)[0])
                text_cache[item.text] = {'answer': result.text, 'first_token': result.first_token_s * 1000.0,
                                         'total': result.total_s * 1000.0}
            row['text'] = dict(text_cache[item.text], correct=contains_answer(text_cache[item.text]['answer'],
                                                                              answers))
        spoken = [p for p in ('cascade', 'aligned') if p in paths]
        if spoken:
            audio = load_audio(item.audio, max_seconds=pipeline.max_utterance_s)
            for mode in spoken:
                response = pipeline.respond(audio, mode=mode)
                row[mode] = {'answer': response.text, 'correct': contains_answer(response.text, answers),
                             'first_token': response.latency_ms['first_token'],
                             'total': response.latency_ms['total']}
                heard = response.transcript if response.transcript is not None else response.heard
                if heard is not None:
                    row[mode]['heard'] = heard
        details.append(row)
        if progress is not None:
            progress(i + 1, len(items))
    accuracy = {p: _share([r[p]['correct'] for r in details]) if p in paths else None for p in PATHS}
    latency: dict[str, dict[str, float] | None] = {}
    for p in PATHS:
        if p not in paths:
            latency[p] = None
            continue
        rows = list(text_cache.values()) if p == 'text' else [r[p] for r in details]
        latency[p] = {k: round(sum(r[k] for r in rows) / len(rows), 1) for k in ('first_token', 'total')}
    voices = sorted({str(r['voice']) for r in details})
    per_voice = {v: {p: _share([r[p]['correct'] for r in details if str(r['voice']) == v]) if p in paths else None
                     for p in PATHS} for v in voices}
    return QAResult(n=len(items), accuracy=accuracy, latency_ms=latency, per_voice=per_voice, details=details,
                    seconds=time.perf_counter() - start)


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None
