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
Tests for the spoken-QA reading.

Answer matching, the packaged sets, their synthesis into a manifest that carries the answers, and the
counting of correct answers per path and voice.
"""

from __future__ import annotations

import json
from pathlib import Path
import re
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from tinyalign_ros.adapter import save_adapter
from tinyalign_ros.cli import main
from tinyalign_ros.data import Item, load_dataset, write_manifest
from tinyalign_ros.encoder import WhisperEncoder
from tinyalign_ros.llm import GenerationConfig, GenerationResult, LLM, PromptConfig
from tinyalign_ros.pipeline import Response
from tinyalign_ros.projector import build_projector, ProjectorConfig
from tinyalign_ros.qa import (
    contains_answer, evaluate_qa, load_set, normalize, qa_items, QAError, sentence_of, synthesize_set,
)
import torch

# ------------------------------------------------------------------ matching


def test_normalize_lowercases_and_splits_punctuation_and_hyphens() -> None:
    assert normalize('Twenty-four hours, in a DAY!') == ['twenty', 'four', 'hours', 'in', 'a', 'day']
    assert normalize('Café') == ['cafe']


@pytest.mark.parametrize('answer,accepted,expected', [
    ('A spider has 8 legs.', ['eight', '8'], True),
    ('A spider has Eight legs.', ['eight', '8'], True),
    ('It has eighteen legs.', ['eight', '8'], False),       # whole words only
    ('There are twenty four hours.', ['twenty-four'], True),  # hyphenated form matches spaced words
    ('The Mona Lisa was painted by Leonardo da Vinci.', ['da Vinci'], True),
    ('Vinci da', ['da Vinci'], False),                       # a multi-word form must appear in order
    ('The capital of France is PARIS.', ['Paris'], True),
    ('', ['Paris'], False),
])
def test_contains_answer(answer: str, accepted: list[str], expected: bool) -> None:
    assert contains_answer(answer, accepted) is expected


# ------------------------------------------------------------------ the sets


def test_the_question_set_is_large_split_and_written_as_people_write() -> None:
    records = load_set('qa')
    assert len(records) >= 100
    dev = load_set('qa', 'dev')
    assert 0.25 <= len(dev) / len(records) <= 0.4 and {r['split'] for r in dev} == {'dev'}
    questions = [r['question'] for r in records]
    assert len(set(questions)) == len(questions)
    for question in questions:
        assert question[0].isupper() and question.endswith('?'), question
        assert not re.search(r'\d', question), f'numbers are spoken as words: {question}'
    assert all(r['answers'] and all(normalize(a) for a in r['answers']) for r in records)


def test_the_command_set_is_large_split_and_written_as_people_write() -> None:
    records = load_set('commands')
    assert len(records) >= 60
    assert 0.25 <= len(load_set('commands', 'dev')) / len(records) <= 0.4
    texts = [sentence_of(r) for r in records]
    assert len(set(texts)) == len(texts)
    for text in texts:
        assert text[0].isupper() and text[-1] in '.?!', text
        assert not re.search(r'\d', text), f'numbers are spoken as words: {text}'


def test_unknown_set_or_split_is_refused() -> None:
    with pytest.raises(QAError, match='unknown set'):
        load_set('weather')
    with pytest.raises(QAError, match='split'):
        load_set('qa', 'train')


def test_synthesized_set_asks_every_question_in_every_voice_and_keeps_the_answers(tmp_path: Path) -> None:
    dev = load_set('qa', 'dev')
    manifest = synthesize_set('qa', tmp_path / 'qa', ['en-us', 'en-us+f3'], split='dev', workers=1, progress=False)
    items = load_dataset(manifest)
    assert len(items) == 2 * len(dev)
    by_id = {r['id']: r for r in dev}
    for item in items:
        record = by_id[item.meta['qid']]
        assert item.text == record['question'] and item.meta['answers'] == record['answers']
        assert item.meta['split'] == 'dev' and item.meta['set'] == 'qa'
        assert item.id == f'{record["id"]}-{item.meta["voice"].replace("-", "_").replace("+", "_")}'
    for voice in ('en-us', 'en-us+f3'):
        assert sorted(it.meta['qid'] for it in items if it.meta['voice'] == voice) == sorted(by_id)
    assert qa_items(items) == items


def test_synth_set_command_with_augmentation(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = main(['synth', '--set', 'commands', '--split', 'dev', '--voices', 'en-us', '--augment',
                 '{"p_clean": 0.0, "p_noise": 1.0, "snr_db": [10, 10]}', '--out', str(tmp_path / 'c'),
                 '--workers', '1', '--json'])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out['set'] == 'commands'
    items = load_dataset(out['manifest'])
    assert len(items) == len(load_set('commands', 'dev'))
    assert all('10dB' in it.meta['aug'] and 'answers' not in it.meta for it in items)  # noise at 10 dB SNR


def test_synth_needs_text_or_set(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(['synth', '--out', str(tmp_path / 'x')]) == 2
    assert '--set' in capsys.readouterr().err


# ------------------------------------------------------------------ the reading


class _StubLLM:
    """Answers a text question from a table; counts how often it was asked."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def tokenize(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    def build_text_inputs(self, text: str, prompt: PromptConfig) -> str:
        return text

    def prompt_parts(self, prompt: PromptConfig) -> tuple[list[int], list[int]]:
        return [7, 8, 9], [10]

    def generate(self, inputs: str, config: GenerationConfig, on_token: Any = None,
                 question_tokens: int | None = None, prefix_ids: list[int] | None = None) -> GenerationResult:
        self.asked.append(inputs)
        assert question_tokens == len(inputs.split())
        assert prefix_ids == [7, 8, 9]  # the prompt's keys and values are reused across questions
        return GenerationResult(text=self.answers[inputs], first_token_s=0.1, total_s=0.3)


class _StubPipeline:
    """Cascade answers correctly for one voice only; aligned answers correctly once."""

    max_utterance_s = 30.0
    prompt = PromptConfig()
    generation = GenerationConfig()

    def __init__(self, llm: _StubLLM, audio_to_item: dict[str, Item]) -> None:
        self.llm = llm
        self.audio_to_item = audio_to_item

    def respond(self, audio: np.ndarray, mode: str) -> Response:
        item = self.audio_to_item[str(round(float(audio[0]), 3))]
        right = item.meta['answers'][0]
        if mode == 'cascade':
            text = f'It is {right}.' if item.meta['voice'] == 'a' else 'I do not know.'
        else:
            text = f'{right}!' if item.id == 'q1-a' else 'but but'
        latency = {'first_token': 100.0 if mode == 'cascade' else 50.0, 'total': 400.0}
        return Response(text=text, mode=mode, audio_s=1.0, latency_ms=latency,
                        transcript=item.text if mode == 'cascade' else None,
                        heard=item.text.lower() if mode == 'aligned' else None)


def test_accuracy_and_latency_are_counted_per_path_and_voice(tmp_path: Path) -> None:
    questions = {'q1': ('What is two plus two?', ['four', '4']), 'q2': ('What color is snow?', ['white'])}
    items: list[Item] = []
    lookup: dict[str, Item] = {}
    for n, (qid, (question, answers)) in enumerate(questions.items()):
        for voice in ('a', 'b'):
            marker = round(0.1 + 0.1 * len(items), 3)  # the first sample says which item this is
            wav = tmp_path / f'{qid}-{voice}.wav'
            sf.write(str(wav), np.full(1600, marker, dtype=np.float32), 16000, subtype='FLOAT')
            item = Item(f'{qid}-{voice}', wav, question, {'answers': answers, 'voice': voice})
            items.append(item)
            lookup[str(marker)] = item
    llm = _StubLLM({'What is two plus two?': 'Two plus two is 4.', 'What color is snow?': 'Snow is blue.'})
    result = evaluate_qa(items, _StubPipeline(llm, lookup))
    assert result.accuracy == {'text': 0.5, 'cascade': 0.5, 'aligned': 0.25}
    assert sorted(llm.asked) == sorted(q for q, _ in questions.values())  # once per question, not per voice
    assert result.per_voice == {'a': {'text': 0.5, 'cascade': 1.0, 'aligned': 0.5},
                                'b': {'text': 0.5, 'cascade': 0.0, 'aligned': 0.0}}
    assert result.latency_ms['text'] == {'first_token': 100.0, 'total': 300.0}
    assert result.latency_ms['cascade']['first_token'] == 100.0 and result.latency_ms['aligned']['first_token'] == 50.0
    out = result.to_dict(with_details=True)
    assert out['aligned_over_cascade'] == 0.5
    assert out['details'][0]['cascade']['heard'] == 'What is two plus two?'
    assert out['details'][0]['aligned']['heard'] == 'what is two plus two?'  # what the projector read
    only_text = evaluate_qa(items, _StubPipeline(llm, lookup), paths=['text'])
    assert only_text.accuracy['cascade'] is None and only_text.latency_ms['aligned'] is None


def test_items_without_answers_are_refused(tmp_path: Path) -> None:
    wav = tmp_path / 'x.wav'
    sf.write(str(wav), np.zeros(1600, dtype=np.float32), 16000)
    with pytest.raises(QAError, match='answers'):
        qa_items([Item('x', wav, 'What is it?', {})])
    with pytest.raises(QAError, match='no items'):
        qa_items([])


@pytest.fixture(scope='module')
def qa_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    manifest = synthesize_set('qa', tmp_path_factory.mktemp('qa'), ['en-us'], split='dev', workers=1,
                              progress=False)
    items = load_dataset(manifest)[:3]  # three questions are enough for the plumbing
    return write_manifest(items, manifest.parent / 'three.jsonl')


@pytest.fixture(scope='module')
def tiny_adapter(tiny_whisper_path: Path, tiny_llm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save a random adapter for the tiny model pair, never blank, so the aligned path always answers."""
    encoder, llm = WhisperEncoder(tiny_whisper_path, cpu_threads=1), LLM(tiny_llm_path)
    torch.manual_seed(0)
    projector = build_projector(ProjectorConfig(encoder_dim=encoder.d_model, llm_dim=llm.hidden_size, d_model=32,
                                                n_layers=1, n_heads=4, ff_dim=64, dropout=0.0))
    projector.bind_llm(llm.embedding_matrix)
    projector.blank.bias.data.fill_(-50.0)
    path = tmp_path_factory.mktemp('adapters') / 'tiny-pair'
    return save_adapter(path, projector, {'encoder': encoder.identity, 'llm': llm.identity})


def test_evaluate_task_qa_end_to_end_with_tiny_models(capsys: pytest.CaptureFixture, qa_manifest: Path,
                                                      tiny_whisper_path: Path, tiny_llm_path: Path,
                                                      tiny_adapter: Path) -> None:
    models = ['--whisper', str(tiny_whisper_path), '--llm', str(tiny_llm_path), '--adapter', str(tiny_adapter)]
    code = main(['evaluate', '--task', 'qa', '--data', str(qa_manifest), '--details', '--json',
                 '--max-new-tokens', '6', *models])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = json.loads(captured.out)
    assert out['n'] == 3 and out['adapter'] == 'tiny-pair'
    assert set(out['accuracy']) == {'text', 'cascade', 'aligned'}
    assert all(0.0 <= v <= 1.0 for v in out['accuracy'].values())
    assert out['generation']['max_new_tokens'] == 6
    for row in out['details']:
        assert row['text']['correct'] == contains_answer(row['text']['answer'], row['answers'])
        assert row['aligned']['first_token'] > 0 and row['cascade']['total'] >= row['cascade']['first_token']


def test_evaluate_task_qa_refuses_a_manifest_without_answers(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                             tiny_whisper_path: Path, tiny_llm_path: Path) -> None:
    wav = tmp_path / 'x.wav'
    sf.write(str(wav), np.zeros(1600, dtype=np.float32), 16000)
    manifest = write_manifest([Item('x', wav, 'What is it?')], tmp_path / 'manifest.jsonl')
    code = main(['evaluate', '--task', 'qa', '--data', str(manifest), '--json',
                 '--whisper', str(tiny_whisper_path), '--llm', str(tiny_llm_path)])
    assert code == 2 and 'answers' in capsys.readouterr().err


def test_demo_asks_the_dev_questions_in_both_modes_and_counts_right_answers(
        capsys: pytest.CaptureFixture, tmp_path: Path, tiny_whisper_path: Path, tiny_llm_path: Path,
        tiny_adapter: Path) -> None:
    from tinyalign_ros.cli.demo import DEMO_QUESTION_IDS

    code = main(['demo', '--data', str(tmp_path), '--max-new-tokens', '4', '--whisper', str(tiny_whisper_path),
                 '--llm', str(tiny_llm_path), '--adapter', str(tiny_adapter)])
    out = capsys.readouterr().out
    assert code == 0
    dev = {r['id']: r for r in load_set('qa', 'dev')}
    for qid in DEMO_QUESTION_IDS:
        assert f'"{dev[qid]["question"]}"' in out
    for mode in ('aligned', 'cascade'):
        lines = [line for line in out.splitlines() if line.startswith(f'  [{mode:8}]')]
        assert len(lines) == len(DEMO_QUESTION_IDS) and all('first token' in line for line in lines)
        n_right = sum(line.split()[1] == 'right' for line in lines)
        assert f'{mode} {n_right}/{len(DEMO_QUESTION_IDS)}' in out
