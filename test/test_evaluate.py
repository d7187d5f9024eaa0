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
Tests for evaluation.

Every reading on a 3-utterance synthetic manifest with the tiny models, the plumbing from decoded ids
to WER, and the refusals of unusable datasets.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
from tinyalign_ros.audio import load_audio
from tinyalign_ros.data import Item, load_dataset, write_manifest
from tinyalign_ros.encoder import WhisperEncoder
from tinyalign_ros.evaluate import evaluate, Evaluation, READINGS, repeat_generation, REPEAT_PROMPT
from tinyalign_ros.llm import LLM
from tinyalign_ros.projector import build_projector, Projector, ProjectorConfig
from tinyalign_ros.synth import synthesize
import torch

TEXTS = ('Turn left at the door.', 'Bring me the red cup.', 'The robot stops.')
METRICS = {'wer_nearest', 'wer_fused', 'wer_repeat', 'wer_repeat_text', 'wer_cascade', 'nll_audio', 'nll_text'}


@pytest.fixture(scope='module')
def items(tmp_path_factory: pytest.TempPathFactory) -> list[Item]:
    folder = tmp_path_factory.mktemp('corpus')
    (folder / 'wavs').mkdir()
    made = []
    for i, text in enumerate(TEXTS):
        wav = folder / 'wavs' / f'utt{i}.wav'
        sf.write(str(wav), synthesize(text, rate=180), 16000, subtype='PCM_16')
        made.append(Item(f'utt{i}', wav, text))
    return load_dataset(write_manifest(made, folder / 'manifest.jsonl'))


@pytest.fixture(scope='module')
def projector(encoder: WhisperEncoder, llm: LLM) -> Projector:
    """Random and bound to the whole vocabulary; never blank, so every utterance injects tokens."""
    torch.manual_seed(0)
    projector = build_projector(ProjectorConfig(encoder_dim=encoder.d_model, llm_dim=llm.hidden_size, d_model=32,
                                                n_layers=1, n_heads=4, ff_dim=64, dropout=0.0))
    projector.bind_llm(llm.embedding_matrix)
    projector.blank.bias.data.fill_(-50.0)
    return projector.eval()


def test_fused_reading_with_weight_zero_is_the_nearest_reading(
        items: list[Item], encoder: WhisperEncoder, llm: LLM, projector: Projector) -> None:
    from tinyalign_ros.fusion import FusionConfig
    plain = evaluate(items, encoder, llm, projector, readings=('nearest', 'fused'), fusion=FusionConfig(weight=0.0))
    assert [r['fused'] for r in plain.details] == [r['nearest'] for r in plain.details]
    assert plain.metrics['wer_fused'] == plain.metrics['wer_nearest']


def test_all_readings_on_a_small_manifest(items: list[Item], encoder: WhisperEncoder, llm: LLM,
                                          projector: Projector) -> None:
    calls: list[tuple[int, int]] = []
    result = evaluate(items, encoder, llm, projector, progress=lambda done, total: calls.append((done, total)))
    assert isinstance(result, Evaluation)
    assert result.n == 3
    assert set(result.metrics) == METRICS
    for name in ('wer_nearest', 'wer_fused', 'wer_repeat', 'wer_repeat_text', 'wer_cascade'):
        assert isinstance(result.metrics[name], float) and result.metrics[name] >= 0, name
    for name in ('nll_audio', 'nll_text'):
        assert math.isfinite(result.metrics[name]) and result.metrics[name] > 0, name
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert [row['id'] for row in result.details] == ['utt0', 'utt1', 'utt2']
    assert [row['ref'] for row in result.details] == list(TEXTS)
    for row in result.details:
        assert {'nearest', 'fused', 'repeat', 'repeat_text', 'cascade'} <= set(row)
        assert all(isinstance(row[k], str) for k in ('nearest', 'fused', 'repeat', 'repeat_text', 'cascade'))
    assert result.seconds > 0
    data = result.to_dict()
    assert {'n', 'seconds'} | METRICS == set(data)
    assert 'details' in result.to_dict(with_details=True)


def test_repeat_reads_what_the_aligned_path_injects_and_reuses_the_prompt_cache(
        items: list[Item], encoder: WhisperEncoder, llm: LLM, projector: Projector) -> None:
    """
    Check the repeat reading: the LLM is given the fused reading's mix, as the assistant gives it.

    The raw projected frames are not what the aligned path injects, so a repeat of them would judge
    a path the product never takes. The repeat prompt's cached keys and values change no word.
    """
    from tinyalign_ros.fusion import fuse, FusionConfig
    from tinyalign_ros.llm import PromptConfig

    fusion = FusionConfig()
    result = evaluate(items, encoder, llm, projector, readings=('repeat', 'repeat_text'), fusion=fusion)
    context, after = llm.prompt_parts(PromptConfig())
    for item, row in zip(items, result.details):
        target = llm.tokenize(item.text)
        _ids, mix = fuse(projector, llm, encoder.features(load_audio(item.audio)), context, fusion, after[0])
        fresh = llm.generate(llm.build_inputs(mix, REPEAT_PROMPT), repeat_generation(target)).text.strip()
        text = llm.generate(llm.build_text_inputs(item.text, REPEAT_PROMPT), repeat_generation(target)).text.strip()
        assert (row['repeat'], row['repeat_text']) == (fresh, text)


def test_nll_readings_match_the_llm_scores(items: list[Item], encoder: WhisperEncoder, llm: LLM,
                                           projector: Projector) -> None:
    result = evaluate(items[:1], encoder, llm, projector, readings=('nll',))
    item = items[0]
    target = llm.tokenize(item.text)
    text_inputs = llm.build_text_inputs(item.text, REPEAT_PROMPT)
    assert result.metrics['nll_text'] == pytest.approx(llm.nll(text_inputs, target), abs=1e-4)
    feats = encoder.features(np.asarray(sf.read(str(item.audio), dtype='float32')[0]))
    audio_inputs = llm.build_inputs(projector.project(feats), REPEAT_PROMPT)
    assert result.metrics['nll_audio'] == pytest.approx(llm.nll(audio_inputs, target), abs=1e-4)


def test_each_half_of_the_nll_reading_alone(items: list[Item], encoder: WhisperEncoder, llm: LLM,
                                            projector: Projector, monkeypatch: pytest.MonkeyPatch) -> None:
    """Personalization asks for the audio's NLL only: the text's must cost no LLM pass."""
    both = evaluate(items[:1], encoder, llm, projector, readings=('nll',)).metrics
    calls: list[int] = []
    nll = llm.nll
    monkeypatch.setattr(llm, 'nll', lambda inputs, target: calls.append(1) or nll(inputs, target))
    audio = evaluate(items[:1], encoder, llm, projector, readings=('nll_audio',)).metrics
    assert len(calls) == 1 and audio['nll_text'] is None
    assert audio['nll_audio'] == pytest.approx(both['nll_audio'], abs=1e-6)
    text = evaluate(items[:1], encoder, llm, projector, readings=('nll_text',)).metrics
    assert len(calls) == 2 and text['nll_audio'] is None
    assert text['nll_text'] == pytest.approx(both['nll_text'], abs=1e-6)
    with pytest.raises(ValueError, match='unknown readings'):
        evaluate(items[:1], encoder, llm, projector, readings=('nll_both',))


def test_a_subset_of_readings_leaves_the_others_none(items: list[Item], encoder: WhisperEncoder, llm: LLM,
                                                     projector: Projector) -> None:
    result = evaluate(items, encoder, llm, projector, readings=('nearest',))
    assert set(result.metrics) == METRICS
    assert result.metrics['wer_nearest'] is not None
    assert all(result.metrics[k] is None for k in METRICS - {'wer_nearest'})
    assert all(set(row) == {'id', 'ref', 'nearest'} for row in result.details)


def test_without_a_projector_only_text_and_cascade_readings_are_scored(items: list[Item], encoder: WhisperEncoder,
                                                                       llm: LLM) -> None:
    result = evaluate(items, encoder, llm, None, readings=('nearest', 'repeat', 'repeat_text', 'nll'))
    assert result.metrics['wer_nearest'] is None and result.metrics['wer_repeat'] is None
    assert result.metrics['nll_audio'] is None
    assert result.metrics['wer_repeat_text'] is not None and result.metrics['nll_text'] is not None


def test_forced_decoding_gives_zero_wer(items: list[Item], encoder: WhisperEncoder, llm: LLM,
                                        projector: Projector, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Force decode_ids to the true ids of each item: the reading must score exactly 0.0.

    With one word dropped from one item it must score exactly 1 / (number of reference words).
    """
    truth = iter([llm.tokenize(item.text) for item in items])
    monkeypatch.setattr(projector, 'decode_ids', lambda feats, pieces=None: next(truth))
    result = evaluate(items, encoder, llm, projector, readings=('nearest',))
    assert result.metrics['wer_nearest'] == 0.0
    assert [row['nearest'] for row in result.details] == list(TEXTS)

    n_words = sum(len(text.split()) for text in TEXTS)
    hyps = [TEXTS[0], 'Bring me the cup.', TEXTS[2]]
    truth = iter([llm.tokenize(text) for text in hyps])
    monkeypatch.setattr(projector, 'decode_ids', lambda feats, pieces=None: next(truth))
    result = evaluate(items, encoder, llm, projector, readings=('nearest',))
    assert result.metrics['wer_nearest'] == pytest.approx(round(1 / n_words, 4))


def test_supplied_features_are_used_instead_of_encoding(items: list[Item], encoder: WhisperEncoder, llm: LLM,
                                                        projector: Projector) -> None:
    cached = {item.id: encoder.features(np.asarray(sf.read(str(item.audio), dtype='float32')[0])) for item in items}
    asked: list[str] = []
    before = encoder.encode_calls
    result = evaluate(items, encoder, llm, projector, readings=('nearest', 'nll'),
                      features=lambda item: asked.append(item.id) or cached[item.id])
    assert encoder.encode_calls == before
    assert asked == ['utt0', 'utt1', 'utt2']
    again = evaluate(items, encoder, llm, projector, readings=('nearest', 'nll'))
    assert again.metrics == result.metrics


def test_an_utterance_the_projector_hears_nothing_in_is_scored_not_fatal(
        items: list[Item], encoder: WhisperEncoder, llm: LLM) -> None:
    """
    Score an utterance the projector hears nothing in as all words deleted.

    A projector that decodes every frame as blank emits no embedding; the evaluation must still
    finish and count every reference word as deleted, not stop at the first such utterance.
    """
    projector = build_projector(ProjectorConfig(encoder_dim=encoder.d_model, llm_dim=llm.hidden_size, d_model=32,
                                                n_layers=1, n_heads=4, ff_dim=64, dropout=0.0, blank_bias=1e4))
    projector.bind_llm(llm.embedding_matrix)
    result = evaluate(items, encoder, llm, projector.eval(), readings=('nearest', 'repeat', 'nll'))
    assert result.metrics['wer_nearest'] == 1.0
    assert result.metrics['wer_repeat'] == 1.0 and all(row['repeat'] == '' for row in result.details)


def test_repeat_generation_leaves_room_for_the_sentence() -> None:
    config = repeat_generation([1, 2, 3])
    assert config.max_new_tokens == 15 and not config.do_sample and config.stop == ('\n',)


def test_refusals(items: list[Item], encoder: WhisperEncoder, llm: LLM, projector: Projector) -> None:
    with pytest.raises(ValueError, match='empty'):
        evaluate([], encoder, llm, projector)
    unlabeled = [items[0], Item('x', items[1].audio, None)]
    with pytest.raises(ValueError, match='transcript'):
        evaluate(unlabeled, encoder, llm, projector, readings=('nearest',))
    with pytest.raises(ValueError, match='bleu'):
        evaluate(items, encoder, llm, projector, readings=('nearest', 'bleu'))
    assert set(READINGS) == {'nearest', 'fused', 'repeat', 'repeat_text', 'cascade', 'nll'}
