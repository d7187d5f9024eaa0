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
The assistant text corpus: deterministic, cased and punctuated, broad.

Held-out templates never reach training. Built from Debian's WordNet and fortunes (installed by `make setup`).
"""

from __future__ import annotations

import json
from pathlib import Path
import random
import re

import pytest
from tinyalign_ros.corpus import (
    add_llm_source, build_corpus, CorpusConfig, CorpusError, coverage_draw, coverage_gaps, fortune_sentences, Grammar,
    llm_sentences, LLM_SOURCE, read_corpus, SOURCES, spell_number, tidy, wordnet_examples, WRITING_REQUEST,
)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lj = tmp_path_factory.mktemp('lj') / 'lj.txt'
    lj.write_text('The prisoner was taken to the court.\nIt was the custom of the day.\n')
    out = tmp_path_factory.mktemp('corpus')
    config = CorpusConfig(n_questions=3000, n_commands=2000, n_chat=400)
    build_corpus(out, lj, config, log=lambda _m: None)
    return out


def test_natural_sources_are_found_and_large() -> None:
    assert len(wordnet_examples()) > 30000
    assert len(fortune_sentences()) > 10000
    with pytest.raises(CorpusError, match='wordnet-base'):
        wordnet_examples(Path('/nonexistent'))


def test_corpus_is_deterministic_and_written_as_people_write(corpus: Path, tmp_path: Path) -> None:
    summary = json.loads((corpus / 'summary.json').read_text())
    assert summary['distinct_train_sentences'] > 60000
    assert summary['coverage']['top1000_covered'] > 0.9
    for source in SOURCES:
        lines = read_corpus(corpus, source)
        assert all(line[-1] in '.!?' and not re.search(r'\d', line) for line in lines)
        # Fortune lines that open with an ellipsis ("... and furthermore") keep it: 64 of about
        # 90,000 in the shipped corpus; every other line starts with a capital.
        capitalised = sum(line[0].isupper() for line in lines)
        assert capitalised >= 0.995 * len(lines), source
    questions = read_corpus(corpus, 'questions')
    assert sum(q.endswith('?') for q in questions) > 0.95 * len(questions)
    again = tmp_path / 'again'
    lj = tmp_path / 'lj.txt'
    lj.write_text('The prisoner was taken to the court.\nIt was the custom of the day.\n')
    build_corpus(again, lj, CorpusConfig(n_questions=3000, n_commands=2000, n_chat=400), log=lambda _m: None)
    assert read_corpus(again, 'commands') == read_corpus(corpus, 'commands')


def test_heldout_templates_and_sentences_never_reach_training(corpus: Path) -> None:
    for source in SOURCES:
        train = set(read_corpus(corpus, source))
        held = read_corpus(corpus, source, 'heldout')
        assert source == 'lj' or held  # this test's LJ text has two lines: 3% of it is nothing
        assert not train & set(held)
    summary = json.loads((corpus / 'summary.json').read_text())
    assert summary['sources']['questions_templates']['heldout']


def test_numbers_are_spoken_words_and_templates_are_broad() -> None:
    assert spell_number(312) == 'three hundred twelve'
    assert spell_number(21) == 'twenty-one'
    grammar = Grammar(random.Random(0))
    for kind in ('questions', 'commands', 'chat'):
        made = [fn() for fn in grammar.templates(kind).values()]
        # every template writes its own end mark and spells its numbers out
        assert all(m[-1] in '.!?' and not re.search(r'\d', m) and tidy(m) == m for m in made), kind
    objects = {grammar.templates('questions')['questions000']() for _ in range(200)}
    assert len(objects) > 150  # slots come from thousands of words, not a short list


# -- the LLM source: sentences written around the words the other sources lack -----------------------------


def test_coverage_gaps_are_frequent_words_heard_too_rarely_in_frequency_order() -> None:
    from wordfreq import top_n_list

    top = [w for w in top_n_list('en', 300) if re.fullmatch(r'[a-z]{3,}', w)]
    often, once = top[20], top[30]
    sentences = [f'{often.title()} {often}, {often}.', f'{once.title()}.']
    gaps = coverage_gaps(sentences, top_n=300, min_count=3)
    assert gaps == [w for w in top if w != often]  # three times is enough, once is not; frequency order
    assert coverage_gaps(sentences, top_n=300, min_count=1) == [w for w in top if w not in (often, once)]


def test_the_coverage_draw_plays_the_rarely_held_frequent_words_in_frequency_order() -> None:
    """
    Check what a round's coverage source holds: each rarely held frequent word ``per_word`` times.

    A word many pool sentences hold is left to the uniform draws; the rare ones are served most
    frequent first (so a short draw keeps the most useful), and the draw is the same for a seed.
    """
    from wordfreq import top_n_list

    top = [w for w in top_n_list('en', 3000) if re.fullmatch(r'[a-z]{4,}', w)]
    common, frequent_rare, less_rare = top[10], top[100], top[2000]
    pool = [f'{common.title()} zqx {k}.' for k in range(30)]  # "zqx" is no English word: never targeted
    pool += [f'{frequent_rare.title()} zqx {k}.' for k in range(3)]
    pool += [f'{less_rare.title()} zqx {k}.' for k in range(3)]
    drawn = coverage_draw(pool, 100, top_n=3000, per_word=2, max_pool_count=20, seed=0)
    assert drawn == coverage_draw(pool, 100, top_n=3000, per_word=2, max_pool_count=20, seed=0)
    assert len(set(drawn)) == len(drawn) and set(drawn) <= set(pool)

    def heard(word: str, sentences: list[str]) -> int:
        return sum(1 for s in sentences if word in s.lower().split())

    assert len(drawn) == 4 and heard(frequent_rare, drawn) == 2 and heard(less_rare, drawn) == 2
    assert heard(common, drawn) == 0  # 30 pool sentences hold it: a uniform draw plays it anyway
    assert heard(frequent_rare, drawn[:2]) == 2  # the more frequent word is served first
    assert coverage_draw(pool, 3, top_n=3000, per_word=2, max_pool_count=20, seed=0) == drawn[:3]
    wider = coverage_draw(pool, 100, top_n=3000, per_word=2, max_pool_count=40, seed=0)
    assert heard(common, wider[:2]) == 2 and len(wider) == 6  # held 30 times < 40: now it is served, first


def test_llm_sentences_keep_replies_that_use_the_word_as_people_write() -> None:
    replies = {
        'kettle': 'the kettle boiled over on the stove\nSecond line.',  # kept: first sentence, tidied
        'thunder': 'Thunderous applause followed.',  # not the word itself
        'lemon': 'A simple sentence using the word lemon is here.',  # talks about the request
        'garlic': 'I bought 3 heads of garlic.',  # digits are not spoken words
        'pillow': '',  # nothing written
        'saddle': 'He put the saddle on the horse. Then he rode away into the hills.',
    }
    asked: list[list[str]] = []

    def write(requests: list[str]) -> list[str]:
        asked.append(requests)
        return [replies[re.search(r'"(\w+)"', r).group(1)] for r in requests]

    kept = llm_sentences(list(replies), write, batch=4, log=lambda _m: None)
    assert kept == ['The kettle boiled over on the stove Second line.', 'He put the saddle on the horse.']
    assert [len(a) for a in asked] == [4, 2] and asked[0][0] == WRITING_REQUEST.format(word='kettle')


def test_the_llm_source_holds_out_whole_words_and_is_added_to_the_summary(corpus: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / 'text'
    shutil.copytree(corpus, folder)

    def write(requests: list[str]) -> list[str]:
        words = [re.search(r'"(\w+)"', r).group(1) for r in requests]
        return [f'They talked about the {w} all day.' for w in words]

    summary = add_llm_source(folder, write, CorpusConfig(heldout_share=0.2), top_n=3000, log=lambda _m: None)
    train_, held = read_corpus(folder, LLM_SOURCE, 'train'), read_corpus(folder, LLM_SOURCE, 'heldout')
    assert train_ and held and not set(train_) & set(held)
    held_words = {s.split()[4] for s in held}
    assert not any(set(s.lower().rstrip('.').split()) & held_words for s in train_)
    entry = json.loads((folder / 'summary.json').read_text())['sources'][LLM_SOURCE]
    assert entry == summary['sources'][LLM_SOURCE] and entry['train'] == len(train_)
    assert entry['words_asked'] == len(train_) + len(held)
    again = tmp_path / 'again'
    shutil.copytree(corpus, again)
    add_llm_source(again, write, CorpusConfig(heldout_share=0.2), top_n=3000, log=lambda _m: None)
    assert read_corpus(again, LLM_SOURCE, 'heldout') == held  # deterministic for a seed
    with pytest.raises(CorpusError, match='no built corpus'):
        add_llm_source(tmp_path / 'empty', write)
