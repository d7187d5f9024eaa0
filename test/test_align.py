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

"""The base-adapter recipe end to end on the tiny models: corpus synthesis with a sentence split,
background encoding while training, evaluation on held-out voices, an adapter with its metadata,
and continuing from that adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyalign_ros.adapter import load_adapter
from tinyalign_ros.align import AlignRecipe, align, split_sentences
from tinyalign_ros.encoder import WhisperEncoder
from tinyalign_ros.llm import LLM
from tinyalign_ros.projector import ProjectorConfig
from tinyalign_ros.train import TrainConfig

SENTENCES = ('Turn left at the red door now.', 'Bring me the small blue cup please.',
             'The robot waits near the stairs.', 'Please move forward two steps.',
             'Where is the charging station today?', 'Stop before the kitchen table.')


def test_split_is_deterministic_and_disjoint() -> None:
    train_a, test_a = split_sentences(list(SENTENCES), 2, seed=3)
    train_b, test_b = split_sentences(list(SENTENCES), 2, seed=3)
    assert (train_a, test_a) == (train_b, test_b)
    assert len(test_a) == 2 and not set(train_a) & set(test_a)
    assert sorted(train_a + test_a) == sorted(SENTENCES)


def test_align_writes_an_adapter_and_can_continue_from_it(tiny_whisper_path: Path, tiny_llm_path: Path,
                                                          tmp_path: Path) -> None:
    text = tmp_path / 'sentences.txt'
    text.write_text('\n'.join(SENTENCES) + '\n')
    encoder = WhisperEncoder(tiny_whisper_path, cpu_threads=1, cache_dir=tmp_path / 'work' / 'features')
    llm = LLM(tiny_llm_path)
    recipe = AlignRecipe(n_test_sentences=2, max_words=10, train_rates=[160], train_pitches=[50],
                         test_rates=[160], test_pitches=[50], n_eval=2)
    config = TrainConfig(max_steps=4, eval_every=2, val_items=1, batch_size=2, warmup_steps=1)
    projector_config = ProjectorConfig(encoder_dim=encoder.d_model, llm_dim=llm.hidden_size, d_model=32,
                                       n_layers=1, n_heads=2, ff_dim=64)
    out = tmp_path / 'adapter'
    meta = align(text, tmp_path / 'work', out, encoder, llm, recipe, config, projector_config,
                 log=lambda _msg: None, progress=False)
    projector, saved = load_adapter(out, encoder.identity, llm.identity, llm.embedding_matrix)
    assert saved['training']['steps'] == 4 and saved['training']['objective'] == 'ctc'
    held = saved['metrics']['heldout_synthetic']
    assert held['n'] == 2 and held['wer_nearest'] is not None and held['wer_cascade'] is not None
    assert saved['data']['recipe']['n_test_sentences'] == 2 and meta['adapter_id'] == 'adapter'
    # the held-out sentences never reach the training manifest
    train_texts = (tmp_path / 'work' / 'corpus' / 'train' / 'manifest.jsonl').read_text()
    test_texts = (tmp_path / 'work' / 'corpus' / 'test' / 'manifest.jsonl').read_text()
    _, held_out = split_sentences(list(SENTENCES), 2, recipe.seed)
    assert all(s in test_texts and s not in train_texts for s in held_out)
    vocab = set(projector.vocab_ids.tolist())

    again = tmp_path / 'adapter2'
    meta2 = align(text, tmp_path / 'work', again, encoder, llm, recipe, config, log=lambda _msg: None,
                  progress=False, init=out)
    continued, _ = load_adapter(again, encoder.identity, llm.identity, llm.embedding_matrix)
    assert meta2['initialized_from'] == str(out)
    assert continued.config.d_model == 32  # the adapter's own config, not the default
    assert vocab <= set(continued.vocab_ids.tolist())


def test_align_refuses_an_adapter_for_other_models(tiny_whisper_path: Path, tiny_llm_path: Path,
                                                   tmp_path: Path) -> None:
    from tinyalign_ros.adapter import AdapterError, save_adapter
    from tinyalign_ros.projector import build_projector

    text = tmp_path / 'sentences.txt'
    text.write_text('\n'.join(SENTENCES) + '\n')
    encoder = WhisperEncoder(tiny_whisper_path, cpu_threads=1, cache_dir=tmp_path / 'work' / 'features')
    llm = LLM(tiny_llm_path)
    foreign = tmp_path / 'foreign'
    projector = build_projector(ProjectorConfig(encoder_dim=encoder.d_model, llm_dim=llm.hidden_size, d_model=32,
                                                n_layers=1, n_heads=2, ff_dim=64))
    save_adapter(foreign, projector, {'llm': {'sha256': 'another-model', 'hidden_size': llm.hidden_size}})
    recipe = AlignRecipe(n_test_sentences=2, max_words=10, train_rates=[160], train_pitches=[50],
                         test_rates=[160], test_pitches=[50], n_eval=2)
    with pytest.raises(AdapterError, match='made for llm'):
        align(text, tmp_path / 'work', tmp_path / 'out', encoder, llm, recipe, TrainConfig(max_steps=1),
              log=lambda _msg: None, progress=False, init=foreign)
