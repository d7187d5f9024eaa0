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
Word and character error rates on normalized text.

Whisper writes "Hello, world!" where a transcript says "hello world"; without normalization the
punctuation and case alone would dominate the error rate. :func:`normalize_text` removes those
differences in the spirit of Whisper's basic normalizer, but deliberately simpler:

- Unicode NFKC, then lower case; typographic apostrophes become ``'``;
- hyphens and dashes become spaces ("twenty-one" -> "twenty one");
- punctuation and symbols become spaces, except an apostrophe inside a word ("don't") and a
  decimal point between digits ("3.5"); a comma between digits is dropped ("1,000" -> "1000");
- whitespace is collapsed.

Numbers are left as written: "21" and "twenty one" differ. Converting between them needs
language-specific rules that would make the metric harder to reason about, and both the LJ
Speech transcripts we evaluate on and Whisper's output mostly spell numbers the same way.

Rates are corpus-level (total edits / total reference words or characters), so long utterances
weigh more than short ones, as in the usual WER tables. Character rates count spaces.
"""

from __future__ import annotations

from collections.abc import Sequence
import re
from typing import Any
import unicodedata

import jiwer

_APOSTROPHES = str.maketrans({'\u2019': "'", '\u2018': "'", '\u02bc': "'", '\u2032': "'", '`': "'"})
_DASHES = frozenset('-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2e3a\u2e3b\ufe58\ufe63\uff0d')
_STRAY_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


def normalize_text(text: str) -> str:
    """Normalize a transcript for WER/CER (see the module docstring for the rules)."""
    text = unicodedata.normalize('NFKC', text).lower().translate(_APOSTROPHES)
    out: list[str] = []
    for i, ch in enumerate(text):
        between_digits = 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit()
        if ch == "'":
            out.append(ch)
        elif ch in '.,' and between_digits:
            out.append('.' if ch == '.' else '')
        elif ch in _DASHES or ch.isspace():
            out.append(' ')
        elif unicodedata.category(ch)[0] in 'PSC':  # punctuation, symbols, control/format
            out.append(' ')
        else:
            out.append(ch)
    return ' '.join(_STRAY_APOSTROPHE.sub(' ', ''.join(out)).split())


def _prepare(refs: Sequence[str], hyps: Sequence[str | None]) -> tuple[list[str], list[str]]:
    if isinstance(refs, str) or isinstance(hyps, str):
        raise TypeError('refs and hyps must be sequences of strings, not single strings')
    if len(refs) != len(hyps):
        raise ValueError(f'{len(refs)} references but {len(hyps)} hypotheses')
    # A missing hypothesis (None) is scored as saying nothing: every reference word is deleted.
    return [normalize_text(r) for r in refs], [normalize_text(h or '') for h in hyps]


def _word_errors(refs: list[str], hyps: list[str]) -> int:
    out = jiwer.process_words(refs, hyps)
    return out.substitutions + out.deletions + out.insertions


def wer(refs: Sequence[str], hyps: Sequence[str | None]) -> float:
    """
    Corpus word error rate: total word edits / total reference words, after normalization.

    An empty reference with a non-empty hypothesis adds insertions; a ValueError is raised when
    the references hold no word at all, since the rate is then undefined.
    """
    refs_n, hyps_n = _prepare(refs, hyps)
    total = sum(len(r.split()) for r in refs_n)
    if total == 0:
        raise ValueError('WER is undefined: the references contain no words after normalization')
    return _word_errors(refs_n, hyps_n) / total


def cer(refs: Sequence[str], hyps: Sequence[str | None]) -> float:
    """Corpus character error rate (spaces included) on normalized text; same rules as :func:`wer`."""
    refs_n, hyps_n = _prepare(refs, hyps)
    total = sum(len(r) for r in refs_n)
    if total == 0:
        raise ValueError('CER is undefined: the references contain no characters after normalization')
    out = jiwer.process_characters(refs_n, hyps_n)
    return (out.substitutions + out.deletions + out.insertions) / total


def utterance_details(
    ids: Sequence[str], refs: Sequence[str], hyps: Sequence[str | None]
) -> list[dict[str, Any]]:
    """
    Score each utterance for reports.

    Each row has ``id``, ``ref``, ``hyp`` (as given), ``ref_norm``, ``hyp_norm``, ``errors`` (word edits),
    ``ref_words`` and ``wer``.

    ``wer`` is None for an empty reference (the rate is undefined there); its ``errors`` still
    count the inserted words, which is what the corpus rate adds up.
    """
    refs_n, hyps_n = _prepare(refs, hyps)
    if len(ids) != len(refs):
        raise ValueError(f'{len(ids)} ids but {len(refs)} references')
    rows = []
    for uid, ref, hyp, ref_n, hyp_n in zip(ids, refs, hyps, refs_n, hyps_n):
        errors = _word_errors([ref_n], [hyp_n])
        n_words = len(ref_n.split())
        rows.append({
            'id': uid, 'ref': ref, 'hyp': hyp or '', 'ref_norm': ref_n, 'hyp_norm': hyp_n,
            'errors': errors, 'ref_words': n_words, 'wer': errors / n_words if n_words else None,
        })
    return rows
