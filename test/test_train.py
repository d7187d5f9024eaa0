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
Tests for projector training on a handful of synthesized utterances with the tiny models.

Feature caching, the training-only vocabulary, that CTC training learns, determinism, cancelling, the time
budget, the other two objectives and the settings' validation.
"""

from __future__ import annotations

from pathlib import Path
import threading
import time
from typing import Any

import pytest
import soundfile as sf
from tinyalign_ros.adapter import load_adapter
from tinyalign_ros.data import Item
from tinyalign_ros.encoder import WhisperEncoder
from tinyalign_ros.llm import LLM
from tinyalign_ros.projector import new_projector, Projector, ProjectorConfig
from tinyalign_ros.synth import synthesize
from tinyalign_ros.training.config import Cancelled, TrainConfig, TrainError
from tinyalign_ros.training.examples import (build_vocab, cached, encode_examples, Example, index_examples, load_batch,
                                             prepare_examples, target_text)
from tinyalign_ros.training.objectives import ctc_loss, sample_head_rows
from tinyalign_ros.training.trainer import make_optimizer, Progress, summarize, train
import torch

TRAIN_TEXTS = ('Turn left at the door.', 'Bring me the red cup.', 'The robot stops.', 'Please move forward.')
HELDOUT_TEXT = 'Xylophones quietly juggle zebras.'


@pytest.fixture(scope='module')
def items(tmp_path_factory: pytest.TempPathFactory) -> list[Item]:
    folder = tmp_path_factory.mktemp('corpus')
    made = []
    for i, text in enumerate(TRAIN_TEXTS + (HELDOUT_TEXT,)):
        wav = folder / f'utt{i}.wav'
        sf.write(str(wav), synthesize(text, rate=200), 16000, subtype='PCM_16')
        made.append(Item(f'utt{i}', wav, text))
    return made


@pytest.fixture(scope='module')
def all_examples(items: list[Item], encoder: WhisperEncoder, llm: LLM) -> list[Example]:
    return prepare_examples(items, encoder, llm, batch_size=8)


@pytest.fixture(scope='module')
def examples(all_examples: list[Example]) -> list[Example]:
    return all_examples[: len(TRAIN_TEXTS)]


def config(**changes) -> TrainConfig:
    base = {'objective': 'ctc', 'lr': 3e-3, 'warmup_steps': 1, 'max_steps': 30, 'batch_size': 4, 'val_items': 0,
            'eval_every': 1000, 'time_mask': 0, 'feature_dropout': 0.0, 'seed': 0}
    base.update(changes)
    return TrainConfig(**base)


def fresh(encoder: WhisperEncoder, llm: LLM, examples: list[Example], seed: int = 0, **changes) -> Projector:
    settings = {'encoder_dim': encoder.d_model, 'llm_dim': llm.hidden_size, 'd_model': 32, 'n_layers': 1, 'n_heads': 4,
                'ff_dim': 64, 'dropout': 0.0}
    settings.update(changes)
    torch.manual_seed(seed)
    return new_projector(encoder, llm, build_vocab(examples), ProjectorConfig(**settings))


def batch_loss(projector: Projector, examples: list[Example], encoder: WhisperEncoder) -> float:
    index = {int(t): i for i, t in enumerate(projector.vocab_ids.tolist())}
    x, lengths = load_batch(examples, encoder)
    projector.eval()
    with torch.no_grad():
        return float(ctc_loss(projector, x, lengths, examples, index))


def weights(projector: Projector) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in projector.named_parameters()}


def changed(before: dict[str, torch.Tensor], projector: Projector) -> bool:
    return any(not torch.equal(before[k], v) for k, v in projector.named_parameters())


# ------------------------------------------------------------------ data


def test_prepare_examples_caches_features_once(items: list[Item], encoder: WhisperEncoder, llm: LLM,
                                               all_examples: list[Example]) -> None:
    assert [ex.id for ex in all_examples] == [item.id for item in items]
    for ex, item in zip(all_examples, items):
        cached_feats = encoder.cache.get(ex.key)
        assert cached_feats is not None and cached_feats.shape == (ex.n_frames, encoder.d_model)
        assert ex.target_ids == llm.tokenize(target_text(item.text)) and ex.text == item.text
    calls = encoder.encode_calls
    again = prepare_examples(items, encoder, llm, batch_size=2)
    assert encoder.encode_calls == calls  # everything came from the cache
    assert [(ex.key, ex.n_frames, ex.target_ids) for ex in again] == \
        [(ex.key, ex.n_frames, ex.target_ids) for ex in all_examples]


def test_index_then_encode(tiny_whisper_path: Path, items: list[Item], llm: LLM, tmp_path: Path) -> None:
    """
    Indexing encodes nothing; encoding fills the cache with arrays of the indexed length.

    Encoding goes in batches, and a second pass skips what is cached.
    """
    encoder = WhisperEncoder(tiny_whisper_path, cpu_threads=1, cache_dir=tmp_path / 'cache')
    indexed = index_examples(items, encoder, llm)
    assert encoder.encode_calls == 0
    assert cached(indexed, encoder) == []
    progress: list[tuple[int, int]] = []
    encode_examples(items[:3], indexed, encoder, progress=lambda d, t: progress.append((d, t)), batch_size=2)
    assert progress == [(2, 3), (3, 3)]
    assert [ex.id for ex in cached(indexed, encoder)] == [item.id for item in items[:3]]
    for ex in cached(indexed, encoder):
        assert encoder.cache.get(ex.key).shape == (ex.n_frames, encoder.d_model)
    calls = encoder.encode_calls
    assert calls >= 2
    encode_examples(items, indexed, encoder, batch_size=8)
    assert encoder.encode_calls == calls + 1  # only the two missing items, in one batch
    assert len(cached(indexed, encoder)) == len(items)


def test_encode_progress_reaches_the_total_when_everything_is_cached(
        items: list[Item], encoder: WhisperEncoder, all_examples: list[Example]) -> None:
    """
    A progress bar fed by encode_examples must end at n/n even when nothing needed encoding.

    That is a re-run over a cached corpus; otherwise the bar never completes.
    """
    progress: list[tuple[int, int]] = []
    encode_examples(items, all_examples, encoder, progress=lambda d, t: progress.append((d, t)))
    assert progress and progress[-1] == (len(items), len(items))


def test_encode_examples_stops_when_asked(tiny_whisper_path: Path, items: list[Item], llm: LLM,
                                          tmp_path: Path) -> None:
    encoder = WhisperEncoder(tiny_whisper_path, cpu_threads=1, cache_dir=tmp_path / 'cache')
    indexed = index_examples(items, encoder, llm)
    stop = threading.Event()
    stop.set()
    encode_examples(items, indexed, encoder, stop=stop)
    assert encoder.encode_calls == 0 and cached(indexed, encoder) == []


def test_target_text_is_written_as_people_write_with_a_leading_space() -> None:
    assert target_text('How many legs does  a spider have?') == ' How many legs does a spider have?'
    assert target_text(' Turn LEFT,\nnow! ') == ' Turn LEFT, now!'


def test_an_open_vocabulary_covers_every_llm_row(examples: list[Example], llm: LLM) -> None:
    n = llm.embedding_matrix.shape[0]
    assert build_vocab(examples, n_vocab=n).tolist() == list(range(n))


def test_hard_negatives_are_the_nearest_rows_and_join_each_sample(encoder: WhisperEncoder, llm: LLM,
                                                                  examples: list[Example]) -> None:
    from tinyalign_ros.training.examples import neighbour_table

    projector = new_projector(encoder, llm, build_vocab(examples, n_vocab=llm.embedding_matrix.shape[0]),
                              ProjectorConfig(encoder_dim=encoder.d_model, llm_dim=llm.hidden_size, d_model=32,
                                              n_layers=1, n_heads=2, ff_dim=64))
    table = projector.token_table
    near = neighbour_table(projector, [5, 9], k=3, chunk=1)
    sims = table[5] @ table.T
    sims[5] = -2
    assert near[5] == sims.topk(3).indices.tolist() and 5 not in near[5] and set(near) == {5, 9}
    targets = torch.tensor([5, 9])
    rows = sample_head_rows(targets, table.shape[0], 4, torch.Generator().manual_seed(0), near)
    assert set(near[5]) | set(near[9]) | {5, 9} <= set(rows.tolist())


def test_prepare_examples_needs_a_cache_and_transcripts(tiny_whisper_path: Path, items: list[Item], llm: LLM,
                                                        encoder: WhisperEncoder) -> None:
    with pytest.raises(TrainError, match='cache'):
        prepare_examples(items, WhisperEncoder(tiny_whisper_path, cpu_threads=1), llm)
    with pytest.raises(TrainError, match='nolabel'):
        prepare_examples([Item('nolabel', items[0].audio, None)], encoder, llm)


def test_build_vocab_holds_only_training_ids(examples: list[Example], all_examples: list[Example]) -> None:
    vocab = build_vocab(examples)
    train_ids = {i for ex in examples for i in ex.target_ids}
    assert vocab.tolist() == sorted(train_ids)
    heldout_only = set(all_examples[-1].target_ids) - train_ids
    assert heldout_only, 'the held-out sentence should need tokens the training ones do not'
    assert not heldout_only & set(vocab.tolist())
    assert set(build_vocab(examples, extra_ids=[0, 1]).tolist()) == train_ids | {0, 1}


# ------------------------------------------------------------------ ctc training


def test_ctc_training_reduces_the_loss(encoder: WhisperEncoder, llm: LLM, examples: list[Example]) -> None:
    projector = fresh(encoder, llm, examples)
    before = batch_loss(projector, examples, encoder)
    reports: list[Progress] = []
    result = train(projector, examples, encoder, llm, config(), progress=reports.append)
    after = batch_loss(projector, examples, encoder)
    assert after < 0.7 * before, (before, after)
    assert result.steps == 30 and result.stopped_by == 'max_steps'
    assert result.projector is projector and not projector.training
    assert result.n_train == len(examples) and result.n_val == 0 and result.best_val_wer is None
    assert result.vocab_size == len(build_vocab(examples))
    training = [p for p in reports if p.phase == 'training']
    assert [p.step for p in training] == [1, 10, 20, 30]
    assert training[-1].loss < training[0].loss
    assert all(p.max_steps == 30 and p.eta_s is not None and p.eta_s >= 0 for p in training)
    summary = summarize(result, config())
    assert summary['steps'] == 30 and summary['objective'] == 'ctc' and summary['config']['lr'] == 3e-3


def test_sampled_head_keeps_every_target_row_and_draws_fresh_negatives() -> None:
    targets = torch.tensor([7, 3, 7, 90])
    gen = torch.Generator().manual_seed(0)
    first = sample_head_rows(targets, 1000, 50, gen)
    second = sample_head_rows(targets, 1000, 50, gen)
    for rows in (first, second):
        assert rows is not None and set(targets.tolist()) <= set(rows.tolist())
        assert torch.equal(rows, torch.unique(rows)) and 50 <= rows.numel() <= 53 and int(rows.max()) < 1000
    assert not torch.equal(first, second)  # a new draw each step
    assert sample_head_rows(targets, 1000, 0, gen) is None  # 0 = the whole head
    assert sample_head_rows(targets, 40, 50, gen) is None  # asking for more rows than exist = the whole head


def test_sampled_ctc_loss_scores_the_same_targets_and_trains(encoder: WhisperEncoder, llm: LLM,
                                                             examples: list[Example]) -> None:
    projector = fresh(encoder, llm, examples)
    projector.bind_llm(llm.embedding_matrix, torch.arange(llm.embedding_matrix.shape[0]))  # every row
    index = {int(t): i for i, t in enumerate(projector.vocab_ids.tolist())}
    x, lengths = load_batch(examples, encoder)
    projector.eval()
    n_vocab = int(projector.vocab_ids.numel())
    with torch.no_grad():
        full = float(ctc_loss(projector, x, lengths, examples, index))
        everything = float(ctc_loss(projector, x, lengths, examples, index, negatives=n_vocab))
        sampled = float(ctc_loss(projector, x, lengths, examples, index, negatives=2,
                                 generator=torch.Generator().manual_seed(0)))
    assert everything == pytest.approx(full)
    # Fewer rows in the softmax: each frame's normaliser is smaller, so the loss can only drop.
    assert sampled < full
    before = batch_loss(projector, examples, encoder)
    train(projector, examples, encoder, llm, config(negatives=2))
    assert batch_loss(projector, examples, encoder) < 0.8 * before  # scored over the whole head


def test_training_is_deterministic_with_a_seed(encoder: WhisperEncoder, llm: LLM, examples: list[Example]) -> None:
    settings = config(max_steps=8, time_mask=2, feature_dropout=0.1)  # augmentation draws random numbers too
    first = train(fresh(encoder, llm, examples), examples, encoder, llm, settings).projector
    second = train(fresh(encoder, llm, examples), examples, encoder, llm, settings).projector
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    third = train(fresh(encoder, llm, examples), examples, encoder, llm, config(max_steps=8, seed=1, time_mask=2,
                                                                                feature_dropout=0.1)).projector
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), third.state_dict().values()))


def test_validation_history_and_checkpoint(encoder: WhisperEncoder, llm: LLM, examples: list[Example],
                                           tmp_path: Path) -> None:
    projector = fresh(encoder, llm, examples)
    checkpoint = tmp_path / 'ckpt'
    result = train(projector, examples, encoder, llm, config(max_steps=20, eval_every=10),
                   val_examples=examples[:2], checkpoint_dir=checkpoint, checkpoint_meta={'llm': llm.identity})
    assert [h['step'] for h in result.history] == [10, 20]
    assert all({'step', 'seconds', 'train_loss', 'val_wer'} <= set(h) for h in result.history)
    assert result.best_val_wer == min(h['val_wer'] for h in result.history)
    assert result.n_val == 2
    loaded, meta = load_adapter(checkpoint, llm_identity=llm.identity, embedding_matrix=llm.embedding_matrix)
    assert meta['val_wer'] == pytest.approx(result.best_val_wer)
    assert meta['step'] in (10, 20)


# ------------------------------------------------------------------ stopping


def test_a_preset_cancel_flag_stops_before_any_step(encoder: WhisperEncoder, llm: LLM,
                                                    examples: list[Example]) -> None:
    projector = fresh(encoder, llm, examples)
    before = weights(projector)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled, match='step 0'):
        train(projector, examples, encoder, llm, config(), cancel=cancel)
    assert not changed(before, projector)


def test_cancel_from_another_thread_is_prompt(encoder: WhisperEncoder, llm: LLM, examples: list[Example]) -> None:
    cancel = threading.Event()
    steps: list[int] = []
    timer = threading.Timer(0.3, cancel.set)
    start = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(Cancelled):
            train(fresh(encoder, llm, examples), examples, encoder, llm,
                  config(max_steps=1_000_000, max_time_s=60.0), progress=lambda p: steps.append(p.step),
                  cancel=cancel)
    finally:
        timer.cancel()
    assert time.perf_counter() - start < 3.0
    assert steps  # it was training when cancelled


def test_cancel_during_training_raises_at_the_next_step(encoder: WhisperEncoder, llm: LLM,
                                                        examples: list[Example]) -> None:
    cancel = threading.Event()
    with pytest.raises(Cancelled, match='step 1$'):
        train(fresh(encoder, llm, examples), examples, encoder, llm, config(batch_size=2),
              progress=lambda p: cancel.set(), cancel=cancel)


def test_time_budget_stops_training(encoder: WhisperEncoder, llm: LLM, examples: list[Example]) -> None:
    start = time.perf_counter()
    result = train(fresh(encoder, llm, examples), examples, encoder, llm,
                   config(max_steps=1_000_000, max_time_s=0.5))
    assert result.stopped_by == 'time_budget'
    assert 0 < result.steps < 1_000_000
    assert 0.5 <= result.seconds < 4.0
    assert time.perf_counter() - start < 5.0


def test_training_waits_for_features_still_being_encoded(tiny_whisper_path: Path, items: list[Item], llm: LLM,
                                                         examples: list[Example], tmp_path: Path) -> None:
    encoder = WhisperEncoder(tiny_whisper_path, cpu_threads=1, cache_dir=tmp_path / 'cache')
    indexed = index_examples(items[: len(TRAIN_TEXTS)], encoder, llm)
    projector = fresh(encoder, llm, examples)
    background = threading.Timer(0.2, encode_examples, args=(items, indexed, encoder))
    background.start()
    try:
        result = train(projector, indexed, encoder, llm, config(max_steps=5, max_time_s=20.0))
    finally:
        background.join()
    assert result.steps == 5 and result.stopped_by == 'max_steps'


def test_cancel_while_waiting_for_features_is_prompt(tiny_whisper_path: Path, items: list[Item], llm: LLM,
                                                     examples: list[Example], tmp_path: Path) -> None:
    """
    Nothing is cached yet (the encoder is still starting, or was stopped).

    A cancel must still end training at once, not after the time budget.
    """
    encoder = WhisperEncoder(tiny_whisper_path, cpu_threads=1, cache_dir=tmp_path / 'cache')
    indexed = index_examples(items[: len(TRAIN_TEXTS)], encoder, llm)
    cancel = threading.Event()
    cancel.set()
    start = time.perf_counter()
    with pytest.raises(Cancelled):
        train(fresh(encoder, llm, examples), indexed, encoder, llm, config(max_time_s=3.0), cancel=cancel)
    assert time.perf_counter() - start < 1.5


# ------------------------------------------------------------------ other objectives


def test_slots_objective_runs_one_step(encoder: WhisperEncoder, llm: LLM, examples: list[Example]) -> None:
    projector = fresh(encoder, llm, examples, reduction='adaptive', n_slots=8)
    before = weights(projector)
    losses: list[float] = []
    result = train(projector, examples, encoder, llm, config(objective='slots', max_steps=1),
                   progress=lambda p: losses.append(p.loss))
    assert result.steps == 1 and result.stopped_by == 'max_steps'
    assert len(losses) == 1 and losses[0] > 0 and torch.isfinite(torch.tensor(losses[0]))
    assert changed(before, projector)


def test_ce_objective_runs_one_step_through_the_frozen_llm(encoder: WhisperEncoder, llm: LLM,
                                                           examples: list[Example]) -> None:
    projector = fresh(encoder, llm, examples)
    before = weights(projector)
    llm_before = {k: v.clone() for k, v in llm.model.state_dict().items()}
    losses: list[float] = []
    result = train(projector, examples, encoder, llm, config(objective='ce', max_steps=1, batch_size=2),
                   progress=lambda p: losses.append(p.loss))
    assert result.steps == 1
    assert len(losses) == 1 and 0 < losses[0] < 50
    assert changed(before, projector)
    for name, value in llm.model.state_dict().items():
        assert torch.equal(value, llm_before[name]), f'the frozen LLM changed: {name}'


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize('changes,match', [
    ({'negatives': -1}, 'negatives'),
    ({'objective': 'mse'}, 'objective'),
    ({'batch_size': 0}, 'batch_size'),
    ({'max_steps': 0}, 'max_steps'),
    ({'lr': 0.0}, 'lr'),
])
def test_train_config_validation(changes: dict, match: str) -> None:
    with pytest.raises(TrainError, match=match):
        TrainConfig(**changes)


def test_train_config_from_dict() -> None:
    assert TrainConfig.from_dict({'objective': 'slots', 'lr': 0.01}) == TrainConfig(objective='slots', lr=0.01)
    with pytest.raises(TrainError, match='learning_rate'):
        TrainConfig.from_dict({'learning_rate': 0.01})


def test_train_refuses_no_examples_and_a_vocabulary_without_the_targets(
        encoder: WhisperEncoder, llm: LLM, examples: list[Example], all_examples: list[Example]) -> None:
    with pytest.raises(TrainError, match='no training examples'):
        train(fresh(encoder, llm, examples), [], encoder, llm, config())
    with pytest.raises(TrainError, match='outside the projector vocabulary'):
        train(fresh(encoder, llm, examples), all_examples, encoder, llm, config(max_steps=1))


HEAP_PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from tinyalign_ros.memory import bound_heap
if sys.argv[2] == 'bounded':
    assert bound_heap(1 << 20)
np.ones(1 << 18).sum()  # one 2 MB buffer freed: glibc's dynamic threshold rises past it
blocks = [np.ones(1 << 18) for _ in range(200)]  # 200 x 2 MB, touched
del blocks[::2]  # free every other one: holes inside the heap unless they were mmapped
print(int(open('/proc/self/statm').read().split()[1]) * 4096 // 2 ** 20)
"""


def test_bound_heap_returns_freed_batches_to_the_os() -> None:
    import platform
    import subprocess
    import sys

    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        pytest.skip('mallopt is a glibc interface')
    src = str(Path(__file__).resolve().parents[1] / 'src')
    rss = {mode: int(subprocess.run([sys.executable, '-c', HEAP_PROBE, src, mode], check=True, capture_output=True,
                                    text=True).stdout) for mode in ('default', 'bounded')}
    # 100 of the 200 blocks (200 MB) were freed; bounded, their pages go back to the OS.
    assert rss['bounded'] < rss['default'] - 100, rss


def test_the_optimizer_is_fused_for_float32_weights_and_computes_the_plain_update() -> None:
    torch.manual_seed(0)
    fused_net, plain_net = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)
    plain_net.load_state_dict(fused_net.state_dict())
    start = fused_net.weight.detach().clone()
    fused = make_optimizer(list(fused_net.parameters()), 1e-2, 0.01)
    plain = torch.optim.AdamW(plain_net.parameters(), lr=1e-2, weight_decay=0.01)
    assert fused.defaults['fused'] and not plain.defaults['fused']
    x = torch.randn(5, 6)
    for _ in range(3):
        for net, optim in ((fused_net, fused), (plain_net, plain)):
            optim.zero_grad()
            net(x).square().sum().backward()
            optim.step()
    for a, b in zip(fused_net.parameters(), plain_net.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert (fused_net.weight - start).abs().max() > 1e-3  # the steps moved the weights
    # Half-precision weights (LoRA on a bfloat16 LLM) take the plain loop.
    half = make_optimizer([torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))], 1e-2, 0.0)
    assert not half.defaults['fused']


def test_a_torch_without_the_fused_kernel_gets_the_plain_optimizer(monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.optim.AdamW

    def old_torch(params: Any, **kwargs: Any) -> torch.optim.AdamW:
        if kwargs.get('fused'):
            raise RuntimeError('`fused=True` requires all the params to be CUDA tensors')
        return real(params, **kwargs)

    monkeypatch.setattr(torch.optim, 'AdamW', old_torch)
    optim = make_optimizer(list(torch.nn.Linear(2, 2).parameters()), 1e-2, 0.01)
    assert isinstance(optim, real) and not optim.defaults['fused'] and optim.defaults['weight_decay'] == 0.01
