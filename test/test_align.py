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
The base-adapter recipe end to end on the tiny models.

The recipe file as the one home of its defaults, multi-engine synthesis of the text mix with augmentation,
held-out families (unseen voices, the unseen engine, noisy commands), background encoding while training, an
open-vocabulary adapter with its metadata, and continuing from that adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tinyalign_ros.adapter import load_adapter
from tinyalign_ros.corpus import SOURCES
from tinyalign_ros.encoder import WhisperEncoder
from tinyalign_ros.llm import LLM
from tinyalign_ros.projector import ProjectorConfig
from tinyalign_ros.training.align import align, AlignRecipe, load_recipe, RecipeError
from tinyalign_ros.training.config import TrainConfig

TRAIN = {'questions': ['Where is the charging station today?', 'How many cups are on the table?'],
         'commands': ['Turn left at the red door now.', 'Bring me the small blue cup please.'],
         'wordnet': ['The robot waits near the stairs.'], 'fortunes': ['Please move forward two steps.'],
         'lj': ['Stop before the kitchen table.'], 'chat': ['Hello there.']}
HELD = {'questions': ['What colour is the sky at noon?'], 'commands': ['Open the gripper slowly.'],
        'wordnet': ['The cat slept on the warm mat.'], 'fortunes': ['Every cloud has a silver lining.'],
        'lj': ['The prisoner was taken away.'], 'chat': ['Good night.']}


def _text_corpus(work: Path) -> None:
    """Write a small built corpus in the layout `tinyalign corpus` writes (no WordNet needed)."""
    folder = work / 'corpus' / 'text'
    folder.mkdir(parents=True)
    for source in SOURCES:
        (folder / f'{source}.train.txt').write_text('\n'.join(TRAIN[source]) + '\n')
        (folder / f'{source}.heldout.txt').write_text('\n'.join(HELD[source]) + '\n')
    (folder / 'summary.json').write_text(json.dumps({'sources': {}}))


def _recipe() -> AlignRecipe:
    return AlignRecipe(mix={'questions': 3, 'commands': 3, 'wordnet': 1, 'fortunes': 1, 'lj': 1, 'chat': 1},
                       train_voices=['en-us', 'flite:kal16'], train_rates=[160], train_pitches=[50],
                       test_rates=[160], test_pitches=[50], n_test=2, n_eval=2)


def test_the_shipped_recipe_is_the_default_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    recipe, train_, projector = load_recipe()
    assert recipe == AlignRecipe()  # the dataclass reads its defaults from the same file
    assert TrainConfig.from_dict(train_).objective == 'ctc' and projector['type'] in ('concat_mlp', 'bridgeformer')
    assert any(v.startswith('flite:') for v in recipe.train_voices)
    assert not any(v.startswith('festival:') for v in recipe.train_voices)  # the unseen engine stays unseen
    bad = tmp_path / 'bad.yaml'
    bad.write_text('recipe:\n  mixx: {}\n')
    with pytest.raises(RecipeError, match='mixx'):
        load_recipe(bad)
    bad.write_text('train:\n  lr: -1\n')
    with pytest.raises(RecipeError):
        load_recipe(bad)


def test_align_writes_an_adapter_and_can_continue_from_it(tiny_whisper_path: Path, tiny_llm_path: Path,
                                                          tmp_path: Path) -> None:
    work = tmp_path / 'work'
    _text_corpus(work)
    encoder = WhisperEncoder(tiny_whisper_path, cpu_threads=1, cache_dir=work / 'features')
    llm = LLM(tiny_llm_path)
    recipe = _recipe()
    config = TrainConfig(max_steps=4, eval_every=2, val_items=1, batch_size=2, warmup_steps=1, negatives=8,
                         hard_negatives=2)
    projector_config = ProjectorConfig(encoder_dim=encoder.d_model, llm_dim=llm.hidden_size, d_model=32,
                                       n_layers=1, n_heads=2, ff_dim=64)
    out = tmp_path / 'adapter'
    meta = align(Path('unused.txt'), work, out, encoder, llm, recipe, config, projector_config,
                 log=lambda _msg: None, progress=False)
    projector, saved = load_adapter(out, encoder.identity, llm.identity, llm.embedding_matrix)
    assert saved['training']['steps'] == 4 and saved['training']['objective'] == 'ctc'
    assert set(saved['metrics']) == {'espeak_unseen_voices', 'festival_unseen_engine', 'noisy_commands'}
    for family in saved['metrics'].values():
        assert family['n'] == 2 and family['wer_nearest'] is not None and family['wer_cascade'] is not None
    assert meta['adapter_id'] == 'adapter'
    # the head is open: every token of the LLM, not only the training transcripts' tokens
    assert projector.vocab_ids.tolist() == list(range(llm.embedding_matrix.shape[0]))
    # held-out sentences and voices never reach a training manifest; noisy commands are augmented
    train_lines = [json.loads(line) for m in (work / 'corpus' / 'train').glob('*/manifest.jsonl')
                   for line in m.read_text().splitlines()]
    assert len(train_lines) == 10 and all(item['aug'] for item in train_lines)
    held = {s for texts in HELD.values() for s in texts}
    assert not held & {item['text'] for item in train_lines}
    noisy = [json.loads(line) for line in (work / 'corpus' / 'test' / 'noisy_commands' / 'manifest.jsonl')
             .read_text().splitlines()]
    assert all(item['aug'] != 'clean' and 'dB' in item['aug'] for item in noisy)
    festival = (work / 'corpus' / 'test' / 'festival_unseen_engine' / 'manifest.jsonl').read_text()
    assert all(json.loads(line)['voice'].startswith('festival:') for line in festival.splitlines())

    again = tmp_path / 'adapter2'
    meta2 = align(Path('unused.txt'), work, again, encoder, llm, recipe, config, log=lambda _msg: None,
                  progress=False, init=out)
    continued, _ = load_adapter(again, encoder.identity, llm.identity, llm.embedding_matrix)
    assert meta2['initialized_from'] == str(out)
    assert continued.config.d_model == 32  # the adapter's own config, not the default


def test_align_refuses_an_adapter_for_other_models(tiny_whisper_path: Path, tiny_llm_path: Path,
                                                   tmp_path: Path) -> None:
    from tinyalign_ros.adapter import AdapterError, save_adapter
    from tinyalign_ros.projector import build_projector

    work = tmp_path / 'work'
    _text_corpus(work)
    encoder = WhisperEncoder(tiny_whisper_path, cpu_threads=1, cache_dir=work / 'features')
    llm = LLM(tiny_llm_path)
    foreign = tmp_path / 'foreign'
    projector = build_projector(ProjectorConfig(encoder_dim=encoder.d_model, llm_dim=llm.hidden_size, d_model=32,
                                                n_layers=1, n_heads=2, ff_dim=64))
    save_adapter(foreign, projector, {'llm': {'sha256': 'another-model', 'hidden_size': llm.hidden_size}})
    with pytest.raises(AdapterError, match='made for llm'):
        align(Path('unused.txt'), work, tmp_path / 'out', encoder, llm, _recipe(), TrainConfig(max_steps=1),
              log=lambda _msg: None, progress=False, init=foreign)


def test_a_second_round_adds_new_utterances_and_keeps_the_first(tmp_path: Path) -> None:
    """
    Check that round 0 stays the one-round corpus and a second round adds a new draw.

    Round 0 is the corpus a one-round recipe makes (same files, same order); a second round adds a
    different draw of the training split, and nothing held out is drawn.
    """
    from dataclasses import replace

    from tinyalign_ros.data import load_dataset
    from tinyalign_ros.training.align import build_corpora

    TRAIN_MORE = {source: [f'{text[:-1]} number {k}.' for text in texts for k in range(4)]
                  for source, texts in TRAIN.items()}
    one, two = tmp_path / 'one', tmp_path / 'two'
    for work in (one, two):
        _text_corpus(work)
        for source, texts in TRAIN_MORE.items():
            (work / 'corpus' / 'text' / f'{source}.train.txt').write_text('\n'.join(texts) + '\n')
    recipe = replace(_recipe(), n_test=1)
    first, _ = build_corpora(Path('unused.txt'), one / 'corpus', recipe, progress=False, log=lambda _m: None)
    both, _ = build_corpora(Path('unused.txt'), two / 'corpus', replace(recipe, rounds=[0, 1]), progress=False,
                            log=lambda _m: None)
    assert len(first) == 1 and len(both) == 2

    def read(manifests: list[Path]) -> list[tuple[str, str, str]]:
        return [(item.text or '', str(item.meta.get('voice')), Path(item.audio).name)
                for m in manifests for item in load_dataset(m)]

    assert read(both[0]) == read(first[0])  # round 0 unchanged by a following round
    assert all(m.parent.name.endswith('.r1') for m in both[1])
    assert read(both[1]) != read(both[0])  # a new draw of sentences, voices and conditions
    held = {s for texts in HELD.values() for s in texts}
    assert not held & {text for text, _, _ in read(both[1])}


def test_the_recipe_refuses_bad_rounds(tmp_path: Path) -> None:
    bad = tmp_path / 'bad.yaml'
    for rounds in ('[]', '[0, 0]', '[-1]'):
        bad.write_text(f'recipe:\n  rounds: {rounds}\n')
        with pytest.raises(RecipeError, match='rounds'):
            load_recipe(bad)


def test_the_continuation_recipe_differs_from_the_base_one_only_where_it_says() -> None:
    """align_continue.yaml (the shipped adapter's second stage) keeps align.yaml's voices, rates and training."""
    from dataclasses import asdict

    from tinyalign_ros.training.align import RECIPE_FILE

    base, base_train, base_projector = load_recipe()
    more, more_train, more_projector = load_recipe(RECIPE_FILE.with_name('align_continue.yaml'))
    assert more.rounds == [1] and base.rounds == [0]  # a new draw, never the first stage's utterances
    assert {k: v for k, v in asdict(more).items() if k not in ('rounds', 'mix')} == \
        {k: v for k, v in asdict(base).items() if k not in ('rounds', 'mix')}
    assert set(more.mix) == set(base.mix) and more.mix['questions'] < base.mix['questions']
    assert more_projector == base_projector
    changed = {k for k in set(base_train) | set(more_train) if base_train.get(k) != more_train.get(k)}
    assert changed == {'lr', 'max_time_s'} and more_train['lr'] < base_train['lr']


def test_the_mix_names_known_sources_and_the_llm_source_needs_the_llm(tmp_path: Path) -> None:
    from tinyalign_ros.corpus import LLM_SOURCE
    from tinyalign_ros.training.align import build_corpora, RECIPE_FILE

    with pytest.raises(ValueError, match='unknown text sources'):
        AlignRecipe(mix={'wordnet': 10, 'poems': 5})
    recipe = AlignRecipe(mix={'wordnet': 10, LLM_SOURCE: 5})
    text_dir = tmp_path / 'corpus' / 'text'
    text_dir.mkdir(parents=True)
    (text_dir / 'summary.json').write_text('{"sources": {}}')  # a built corpus without the LLM source
    with pytest.raises(RecipeError, match='needs the LLM'):
        build_corpora(tmp_path / 'lj.txt', tmp_path / 'corpus', recipe, progress=False, log=lambda _m: None)
    stage3, _, _ = load_recipe(RECIPE_FILE.with_name('align_stage3.yaml'))
    assert stage3.mix[LLM_SOURCE] == max(stage3.mix.values()) and stage3.rounds == [3]
    from tinyalign_ros.corpus import COVERAGE_SOURCE
    coverage_round, _, _ = load_recipe(RECIPE_FILE.with_name('align_coverage.yaml'))
    assert coverage_round.mix[COVERAGE_SOURCE] == max(coverage_round.mix.values()) and coverage_round.rounds == [5]


def test_the_coverage_source_draws_training_sentences_of_every_source_and_nothing_held_out(tmp_path: Path) -> None:
    """The mix's coverage source synthesizes a draw of the training split's sentences (all sources)."""
    from dataclasses import replace

    from tinyalign_ros.corpus import COVERAGE_SOURCE
    from tinyalign_ros.data import load_dataset
    from tinyalign_ros.training.align import build_corpora

    _text_corpus(tmp_path)
    recipe = replace(_recipe(), mix={'questions': 1, COVERAGE_SOURCE: 4}, n_test=1)
    manifests, _ = build_corpora(Path('unused.txt'), tmp_path / 'corpus', recipe, progress=False,
                                 log=lambda _m: None)
    by_folder = {m.parent.name: [item.text for item in load_dataset(m)] for m in manifests[0]}
    assert set(by_folder) == {'questions', COVERAGE_SOURCE}
    drawn = by_folder[COVERAGE_SOURCE]
    every_train = {s for texts in TRAIN.values() for s in texts}
    assert len(drawn) == 4 and len(set(drawn)) == 4 and set(drawn) <= every_train
    assert {s for texts in TRAIN.values() if texts is not TRAIN['questions'] for s in texts} & set(drawn)
