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

"""WER/CER values worked out by hand, normalization rules and empty inputs."""

from __future__ import annotations

import pytest

from tinyalign_ros.metrics import cer, normalize_text, utterance_details, wer


@pytest.mark.parametrize('raw, expected', [
    ('Hello, World!', 'hello world'),
    ("Don't 'quote' me, dogs'", "don't quote me dogs"),
    ('rock ’n’ roll isn’t dead', "rock n roll isn't dead"),  # typographic apostrophes
    ('twenty-one — yes–no', 'twenty one yes no'),
    ('It costs $3.50, or 1,000 yen.', 'it costs 3.50 or 1000 yen'),  # numbers stay as written
    ('In 1845 there were 21', 'in 1845 there were 21'),
    ('Ｆｕｌｌ\u3000ｗｉｄｔｈ', 'full width'),  # NFKC
    ('  He said "hi"...\n\tok  ', 'he said hi ok'),
    ('Café NAÏVE', 'café naïve'),
    ('...!?', ''),
])
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_wer_by_hand() -> None:
    # "the cat sat on the mat" vs "the cat sit on mat": 1 substitution + 1 deletion over 6 words.
    assert wer(['the cat sat on the mat'], ['the cat sit on mat']) == pytest.approx(2 / 6)
    assert wer(['The cat, sat!'], ['the cat sat']) == 0.0  # only case and punctuation differ
    assert wer(['a b'], ['a b c d']) == pytest.approx(1.0)  # two insertions over two words
    assert wer(['a'], ['x y z']) == pytest.approx(3.0)  # WER is not capped at 1


def test_wer_is_corpus_level_not_mean_of_utterances() -> None:
    # Utterance WERs are 0 and 1 (mean 0.5), but the corpus has 2 edits over 6 words.
    assert wer(['a b c d', 'e f'], ['a b c d', 'x']) == pytest.approx(2 / 6)


def test_cer_by_hand() -> None:
    assert cer(['abcd'], ['abxd']) == pytest.approx(1 / 4)
    assert cer(['ab cd'], ['abcd']) == pytest.approx(1 / 5)  # the space counts as a character
    assert cer(['Hello!'], ['hello']) == 0.0
    assert cer(['ab', 'cd'], ['ab', '']) == pytest.approx(2 / 4)


def test_empty_hypotheses_delete_every_word() -> None:
    assert wer(['a b c'], ['']) == 1.0
    assert wer(['a b c', 'd'], [None, 'd']) == pytest.approx(3 / 4)
    assert cer(['abc'], ['']) == 1.0


def test_empty_reference_counts_insertions() -> None:
    assert wer(['', 'a b'], ['x y', 'a b']) == pytest.approx(2 / 2)
    assert wer(['', 'a b'], ['', 'a b']) == 0.0


def test_undefined_and_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match='undefined'):
        wer(['', '  '], ['a', ''])
    with pytest.raises(ValueError, match='undefined'):
        wer(['?!'], ['a'])  # empty after normalization
    with pytest.raises(ValueError, match='undefined'):
        cer([], [])
    with pytest.raises(ValueError, match='2 references but 1 hypotheses'):
        wer(['a', 'b'], ['a'])
    with pytest.raises(TypeError, match='not single strings'):
        wer('a b', 'a b')


def test_utterance_details() -> None:
    rows = utterance_details(['u1', 'u2', 'u3'], ['The cat sat.', '', 'a b c d'], ['the bat sat', 'oh', None])
    assert rows[0] == {
        'id': 'u1', 'ref': 'The cat sat.', 'hyp': 'the bat sat', 'ref_norm': 'the cat sat',
        'hyp_norm': 'the bat sat', 'errors': 1, 'ref_words': 3, 'wer': pytest.approx(1 / 3),
    }
    assert (rows[1]['errors'], rows[1]['ref_words'], rows[1]['wer']) == (1, 0, None)
    assert (rows[2]['hyp'], rows[2]['errors'], rows[2]['wer']) == ('', 4, 1.0)
    # The rows add up to the corpus rate.
    assert sum(r['errors'] for r in rows) / sum(r['ref_words'] for r in rows) == pytest.approx(
        wer(['The cat sat.', '', 'a b c d'], ['the bat sat', 'oh', None]))
    with pytest.raises(ValueError, match='2 ids but 3 references'):
        utterance_details(['u1', 'u2'], ['a', 'b', 'c'], ['a', 'b', 'c'])
