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
Personalization's learning and time-keeping features on the tiny models.

Reproducible runs on a loaded machine, the pull toward the starting weights, remembered scores,
the slow LLM reading only for accepted runs, augmented views and the dev split, input-layers-only
and speaker-transform training, the ``auto`` routing threshold and the enrollment prompts.

Fixtures (the espeak "operator", tiny models) come from test_personalize.py.
"""

from __future__ import annotations

import copy
from dataclasses import replace
import json
import math
from pathlib import Path
import random
import threading
from typing import Any

import pytest
import soundfile as sf
import test_personalize as shared
from test_personalize import config, HOLDOUT, Recorder, request, run
from tinyalign_ros import enrollment, routing
from tinyalign_ros.adapter import load_adapter, read_metadata
from tinyalign_ros.data import load_dataset
from tinyalign_ros.encoder import WhisperEncoder
from tinyalign_ros.personalization import config as pz_config, gate as pz_gate, job as pz_job, methods as pz_methods
from tinyalign_ros.personalization.api import PersonalizeRequest, SOURCE_FOLDER
from tinyalign_ros.personalization.config import PersonalizeConfig, PersonalizeError
from tinyalign_ros.personalization.job import Models, PersonalizationJob
from tinyalign_ros.personalization.progress import Reporter
from tinyalign_ros.personalization.store import AdapterStore
from tinyalign_ros.projector import build_projector, Projector, ProjectorConfig
from tinyalign_ros.training import config as tr_config, trainer as tr
import torch

# The operator's speech and the tiny models, shared with test_personalize.py.
encoder, base, models, speech = shared.encoder, shared.base, shared.models, shared.speech
operator_data, work_dir = shared.operator_data, shared.work_dir


# ------------------------------------------------------------------ the trainer's additions


def test_a_step_schedule_ignores_the_clock() -> None:
    by_time = tr_config.TrainConfig(lr=1e-2, warmup_steps=2, max_steps=100, max_time_s=10.0)
    by_steps = tr_config.TrainConfig(lr=1e-2, warmup_steps=2, max_steps=100, max_time_s=10.0, schedule_by_time=False)
    assert tr.lr_at(10, by_time, elapsed_s=9.0) < tr.lr_at(10, by_time, elapsed_s=0.0)  # the clock decays it
    assert tr.lr_at(10, by_steps, elapsed_s=9.0) == tr.lr_at(10, by_steps, elapsed_s=0.0)
    assert tr.lr_at(99, by_steps) < tr.lr_at(10, by_steps)


def test_anchor_penalty_and_validation(base: Projector) -> None:
    start = {name: p.detach().clone() for name, p in base.named_parameters()}
    assert float(tr.anchor_penalty(base, start)) == 0.0
    moved = copy.deepcopy(base)
    with torch.no_grad():
        next(moved.parameters()).add_(0.5)
    assert float(tr.anchor_penalty(moved, start)) == pytest.approx(0.25)
    with pytest.raises(tr_config.TrainError, match='anchor'):
        tr_config.TrainConfig(anchor=-1.0)


def _always_keep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every trained adapter: these tests look at what training did, not at the gate."""
    monkeypatch.setattr(pz_job, 'gate', lambda _before, _after, _config: (True, 'kept for inspection'))


def _distance(a: Projector, b: Projector) -> float:
    sb = dict(b.named_parameters())
    return float(sum((p.detach() - sb[n].detach()).pow(2).sum() for n, p in a.named_parameters()))


def test_the_anchor_keeps_a_run_nearer_its_start(models: Models, operator_data: Path, work_dir: Path,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same run, same seed, with and without the pull: the pulled adapter moves less."""
    _always_keep(monkeypatch)
    moved = {}
    for anchor in (0.0, 50.0):
        store = AdapterStore(tmp_path / f'store{anchor}')
        cfg = config(work_dir, max_steps=60, anchor=anchor, gate_margin=0.0, canary_tolerance=10.0)
        job = PersonalizationJob(models, store, cfg)
        result = run(job, request(operator_data))
        assert result.success, result.message
        assert result.accepted and read_metadata(result.adapter_path)['training']['anchor'] == anchor
        trained, _ = load_adapter(result.adapter_path, models.encoder.identity, models.llm.identity,
                                  models.llm.embedding_matrix)
        moved[anchor] = _distance(trained, models.projector)
    assert 0 < moved[50.0] < 0.5 * moved[0.0], moved


# ------------------------------------------------------------------ reproducible on a loaded machine


class _SlowClock:
    """time.perf_counter of a machine so loaded that every reading is 50 ms after the last."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 0.05
        return self.now

    def __getattr__(self, name: str) -> Any:
        import time
        return getattr(time, name)


def test_a_loaded_machine_learns_the_same_adapter(models: Models, operator_data: Path, work_dir: Path,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Train the same adapter from the same data and seed on a loaded machine.

    Why the gate test flaked: its good run sat at the edge of the assertion (300 steps: -10%) and
    the learning rate decayed with the wall clock, so a busy machine trained a different adapter
    from the same data and seed. The product default keeps the clock in
    the schedule (a cut run still ends at a low rate); with ``schedule_by_time=False`` the run repeats
    exactly whatever the load.
    """
    def once(name: str, slow: bool) -> dict[str, float]:
        if slow:
            monkeypatch.setattr(tr, 'time', _SlowClock())
        try:
            job = PersonalizationJob(models, AdapterStore(tmp_path / name),
                                     config(work_dir, max_steps=80, gate_margin=0.0, canary_tolerance=10.0))
            result = run(job, request(operator_data))
        finally:
            monkeypatch.undo()
        assert result.success and job.last_run['stopped_by'] == 'max_steps', result.message
        return result.metrics_after

    assert once('idle', False) == once('busy', True)


# ------------------------------------------------------------------ time goes to learning


def test_scores_are_remembered_and_the_llm_reads_only_accepted_runs(
        models: Models, operator_data: Path, work_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    real = pz_job.evaluate

    def counting(items: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(tuple(args[3]) if len(args) > 3 else tuple(kwargs.get('readings', ())))
        return real(items, *args, **kwargs)

    monkeypatch.setattr(pz_job, 'evaluate', counting)
    store = AdapterStore(tmp_path / 'store')
    work_dir = tmp_path / 'work'  # nothing known yet
    # A run that cannot pass the gate (it must improve by 99%): the slow reading is never paid for.
    rejected = run(PersonalizationJob(models, store, config(work_dir, max_steps=5, gate_margin=0.99)),
                   request(operator_data))
    assert rejected.success and not rejected.accepted, rejected.message
    assert ('repeat',) not in calls and 'wer_repeat' not in rejected.metrics_after
    first = list(calls)
    assert first.count(('nearest', 'nll_audio')) == 2  # the start and the trained adapter, once each

    # The same start, the same utterances: its readings are known, only the new adapter is measured.
    calls.clear()
    # Tempo and pitch views, as in the gate test: without them the held-out takes, at a rate no
    # training take has, are read as other training sentences and no run passes the gate.
    job = PersonalizationJob(models, store, config(work_dir, max_steps=300, augment_views=2))
    accepted = run(job, request(operator_data))
    assert accepted.accepted, accepted.message
    assert calls.count(('nearest', 'nll_audio')) == 1 and calls.count(('nearest',)) == 1
    assert calls.count(('repeat',)) == 2  # accepted: the LLM reads the start and the new adapter
    assert accepted.metrics_before['wer_nearest'] == rejected.metrics_before['wer_nearest']
    assert {'wer_repeat', 'wer_canary', 'nll_audio'} <= set(accepted.metrics_after)
    assert job.last_run['cache_hits'] >= 2 + len(HOLDOUT)  # scores and cascade transcripts

    # Starting from the accepted adapter, whose readings were measured when it was judged.
    calls.clear()
    again = run(PersonalizationJob(models, store, config(work_dir, max_steps=5, gate_margin=0.99)),
                request(operator_data))
    assert again.metrics_before['wer_nearest'] == accepted.metrics_after['wer_nearest']
    assert calls.count(('nearest', 'nll_audio')) == 1  # only the new, rejected one


def test_training_leaves_time_for_the_llm_reading_of_both_adapters(
        models: Models, operator_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A first run keeps back the LLM reading of its start and of the new adapter, a later run only the new one's.

    The reading grows with the held-out audio; an estimate too low made a first run overrun its budget.
    """
    _always_keep(monkeypatch)  # the accepted adapter is the next run's start, its LLM reading then known
    reserves, before_s = [], []
    real_train, real_score = pz_job._Run._train, pz_job._Run._score

    def train(self: Any, start: Any, mix: Any, encoder: Any, llm: Any, reserve_s: float, dev: Any = None) -> Any:
        reserves.append(reserve_s)
        return real_train(self, start, mix, encoder, llm, reserve_s, dev)

    def score(self: Any, *args: Any) -> Any:
        scores = real_score(self, *args)
        if args[-1] == 'before':
            before_s.append(scores.seconds)
        return scores

    monkeypatch.setattr(pz_job._Run, '_train', train)
    monkeypatch.setattr(pz_job._Run, '_score', score)
    store = AdapterStore(tmp_path / 'store')
    cfg = config(tmp_path / 'work', max_steps=3, repeat_items=2)
    audio = {item.id: item.audio for item in load_dataset(operator_data)}
    kept_back = []
    for _ in range(2):
        job = PersonalizationJob(models, store, cfg)
        result = run(job, request(operator_data))
        assert result.success and result.accepted, result.message
        read = job.last_run['holdout_ids'][:2]
        kept_back.append(pz_job.repeat_seconds([sf.info(str(audio[i])).duration for i in read]))
    assert kept_back[0] > 2 * pz_job.REPEAT_S_PER_ITEM  # it grows with the audio
    assert reserves[0] - before_s[0] == pytest.approx(2 * kept_back[0], abs=0.05)  # nothing known yet
    assert reserves[1] - before_s[1] == pytest.approx(kept_back[1], abs=0.05)  # the start's reading is known


# ------------------------------------------------------------------ learning from few recordings


def test_augmented_views_and_a_dev_split(models: Models, operator_data: Path, work_dir: Path,
                                         tmp_path: Path) -> None:
    store = AdapterStore(tmp_path / 'store')
    cfg = config(work_dir, max_steps=60, augment_views=2, dev_items=2, eval_every=10, patience=2,
                 gate_margin=0.0, canary_tolerance=10.0)
    job = PersonalizationJob(models, store, cfg)
    result = run(job, request(operator_data))
    assert result.success, result.message
    dev_ids = job.last_run['dev_ids']
    assert len(dev_ids) == 2 and not set(dev_ids) & set(HOLDOUT)
    assert job.last_run['best_dev_wer'] is not None  # the dev split chose the kept state
    record = json.loads((Path(job.last_run['run_dir']) / 'run.json').read_text())
    history = record['training']['history']
    assert history and all('val_wer' in row for row in history)
    # 6 of the 8 training recordings x 2 views, written once: a second run reuses the same files.
    views = sorted((work_dir / 'augmented').glob('*-s0-v*.wav'))
    assert len(views) >= 12
    stamps = {p: p.stat().st_mtime_ns for p in views}
    run(PersonalizationJob(models, AdapterStore(tmp_path / 'again'), cfg), request(operator_data))
    assert all(p.stat().st_mtime_ns == stamps[p] for p in views)


def test_a_changed_augmentation_recipe_makes_new_views(models: Models, operator_data: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Views are cached by recording, seed and recipe: a new recipe must not train on the old views."""
    cfg = config(tmp_path / 'work', max_steps=2, augment_views=1)
    run(PersonalizationJob(models, AdapterStore(tmp_path / 'a'), cfg), request(operator_data))
    first = set((tmp_path / 'work' / 'augmented').glob('*.wav'))
    monkeypatch.setattr(pz_job, 'OPERATOR_AUGMENT', replace(pz_config.OPERATOR_AUGMENT, p_lead=1.0))
    run(PersonalizationJob(models, AdapterStore(tmp_path / 'b'), cfg), request(operator_data))
    second = set((tmp_path / 'work' / 'augmented').glob('*.wav')) - first
    assert first and len(second) == len(first)
    recipes = [{path.name.split('-')[1] for path in views} for views in (first, second)]
    assert len(recipes[0]) == len(recipes[1]) == 1 and recipes[0] != recipes[1]


def test_views_are_seeded_and_differ_from_the_original(speech: dict) -> None:
    import soundfile as sf

    from tinyalign_ros.augment import augment
    wav, _text = speech['s0t0']
    samples, _rate = sf.read(str(wav), dtype='float32')
    a, what_a = augment(samples, random.Random('x:0:0'), pz_config.OPERATOR_AUGMENT)
    b, what_b = augment(samples, random.Random('x:0:0'), pz_config.OPERATOR_AUGMENT)
    assert what_a == what_b and a.shape == b.shape and float(abs(a - b).max()) == 0.0
    assert what_a != 'clean'  # the originals are in the mix already: a view is always changed


def test_dev_split_leaves_small_sets_alone() -> None:
    from tinyalign_ros.data import Item
    items = [Item(f'u{i}', Path(f'/x/u{i}.wav'), 'text') for i in range(6)]
    fake = pz_job._Run.__new__(pz_job._Run)
    fake.config = PersonalizeConfig(dev_items=3)
    fake.dev_ids = []
    assert fake._dev_split(items) == (items, [])  # 6 < 3 + 4: every utterance trains
    more = items + [Item(f'v{i}', Path(f'/x/v{i}.wav'), 'text') for i in range(4)]
    fit, dev = fake._dev_split(more)
    assert len(dev) == 3 and len(fit) == 7 and fake._dev_split(more) == (fit, dev)


def test_input_layers_only(models: Models, base: Projector, operator_data: Path, work_dir: Path,
                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = copy.deepcopy(base)
    names = pz_methods.train_input_layers_only(probe)
    first = next(name for name, child in probe.named_children()
                 if any(isinstance(m, torch.nn.Linear) for m in child.modules()))
    assert names and all(n.startswith(first + '.') for n in names)
    assert {n for n, p in probe.named_parameters() if p.requires_grad} == set(names)

    _always_keep(monkeypatch)
    store = AdapterStore(tmp_path / 'store')
    job = PersonalizationJob(models, store, config(work_dir, max_steps=40, method='input', gate_margin=0.0,
                                                   canary_tolerance=10.0))
    result = run(job, request(operator_data))
    assert result.success and result.accepted, result.message
    trained, meta = load_adapter(result.adapter_path, models.encoder.identity, models.llm.identity,
                                 models.llm.embedding_matrix)
    assert meta['training']['method'] == 'input'
    start = dict(pz_gate.as_saved(copy.deepcopy(base)).named_parameters())  # as an adapter file stores it
    changed = {n for n, p in trained.named_parameters() if not torch.equal(p, start[n])}
    assert changed and changed <= set(names)


@pytest.mark.parametrize('design', ['concat_mlp', 'linear'])
def test_the_speaker_transform_starts_as_the_identity_and_folds_into_the_first_layer(design: str) -> None:
    torch.manual_seed(0)
    projector = build_projector(ProjectorConfig(encoder_dim=24, llm_dim=16, type=design, reduce_factor=3))
    projector.bind_llm(torch.randn(50, 16))
    features, lengths = torch.randn(2, 13, 24), torch.tensor([13, 8])

    def outputs() -> torch.Tensor:
        with torch.no_grad():
            out = projector(features, lengths)
        return torch.cat([out.embeds, out.logits], dim=-1)

    start = outputs()
    names = pz_methods.add_speaker_transform(projector)
    assert {n for n, p in projector.named_parameters() if p.requires_grad} == set(names)
    assert sum(p.numel() for n, p in projector.named_parameters() if p.requires_grad) == 24 * 24 + 24
    assert torch.allclose(outputs(), start, atol=1e-5)  # the identity at first: training starts from the base
    with torch.no_grad():
        for parameter in projector.parameters():
            if parameter.requires_grad:
                parameter.add_(0.1 * torch.randn_like(parameter))
    moved = outputs()
    assert not torch.allclose(moved, start, atol=1e-3)
    pz_methods.merge_speaker_transform(projector)
    assert not any(isinstance(m, pz_methods.SpeakerTransform) for m in projector.modules())
    assert all(p.requires_grad for p in projector.parameters())
    assert torch.allclose(outputs(), moved, atol=1e-5)  # the folded projector computes what the wrapped one did
    assert set(projector.state_dict()) == set(build_projector(projector.config).state_dict())  # a plain projector


def test_the_speaker_transform_refuses_a_projector_that_normalizes_its_input(
        models: Models, base: Projector, operator_data: Path, work_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PersonalizeError, match='normalizes them first'):
        pz_methods.add_speaker_transform(copy.deepcopy(base))
    # Through a job: a clear failure, no adapter, and the operator's recordings kept.
    store = AdapterStore(tmp_path / 'store')
    result = run(PersonalizationJob(models, store, config(work_dir, max_steps=5, method='speaker')),
                 request(operator_data))
    assert not result.success and 'normalizes them first' in result.message, result.message
    assert 'encoding' not in result.durations  # refused before the slow phases
    assert not result.adapter_path and store.active('ann') is None
    assert store.recordings('ann')


def test_a_speaker_run_stores_a_plain_projector_that_differs_in_its_first_layer(
        models: Models, operator_data: Path, work_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    concat = build_projector(ProjectorConfig(encoder_dim=models.encoder.d_model, llm_dim=models.llm.hidden_size,
                                             type='concat_mlp'))
    concat.bind_llm(models.llm.embedding_matrix)
    _always_keep(monkeypatch)
    job = PersonalizationJob(replace(models, projector=concat.eval(), adapter_id='tiny-concat'),
                             AdapterStore(tmp_path / 'store'),
                             config(work_dir, max_steps=20, method='speaker', gate_margin=0.0, canary_tolerance=10.0))
    result = run(job, request(operator_data))
    assert result.success and result.accepted, result.message
    trained, meta = load_adapter(result.adapter_path, models.encoder.identity, models.llm.identity,
                                 models.llm.embedding_matrix)
    assert meta['training']['method'] == 'speaker' and isinstance(trained.mlp[0], torch.nn.Linear)
    start = dict(pz_gate.as_saved(copy.deepcopy(concat)).named_parameters())
    changed = {n for n, p in trained.named_parameters() if not torch.equal(p, start[n])}
    assert changed == {'mlp.0.weight', 'mlp.0.bias'}


def test_lr_candidates_are_probed_on_the_dev_split(models: Models, operator_data: Path, work_dir: Path,
                                                   tmp_path: Path) -> None:
    cfg = config(work_dir, max_steps=20, dev_items=2, lr_candidates=(1e-4, 1e-2), probe_s=2.0, gate_margin=0.0,
                 canary_tolerance=10.0)
    job = PersonalizationJob(models, AdapterStore(tmp_path / 'store'), cfg)
    result = run(job, request(operator_data))
    assert result.success, result.message
    record = json.loads((Path(job.last_run['run_dir']) / 'run.json').read_text())
    probes = record['training']['lr_probes']
    assert [p['lr'] for p in probes] == [1e-4, 1e-2]
    assert job.last_run['lr'] == min(probes, key=lambda p: p['dev_wer'])['lr']
    with pytest.raises(PersonalizeError):
        PersonalizeConfig(lr_candidates=(0.0,))


# ------------------------------------------------------------------ auto routing


def test_confidence_reads_the_token_head() -> None:
    sure = torch.full((4, 6), -10.0)
    sure[:, 0] = 0.0  # blank wins everywhere...
    sure[1, 3] = 20.0  # ...but at two positions one token clearly does
    sure[2, 2] = 20.0
    c = routing.confidence_from_logits(sure)
    assert c.n_tokens == 2 and c.margin > 0.99 and c.entropy < 0.01
    torn = sure.clone()
    torn[1, 4] = 20.0  # two tokens tie at one position
    t = routing.confidence_from_logits(torn)
    assert t.n_tokens == 2 and t.margin == pytest.approx(0.5, abs=0.01) and t.entropy > c.entropy
    silent = routing.confidence_from_logits(torch.zeros(3, 5).index_fill_(1, torch.tensor([0]), 5.0))
    assert silent.n_tokens == 0 and silent.margin == 0.0
    with pytest.raises(ValueError):
        routing.confidence_from_logits(torch.zeros(3))


def test_the_threshold_routes_unsure_utterances_to_the_cascade() -> None:
    margins = [0.9, 0.8, 0.3, 0.2]
    aligned = [0, 1, 5, 4]  # sure readings are good, unsure ones bad
    cascade = [1, 1, 1, 1]
    threshold, numbers = routing.learn_threshold(margins, aligned, cascade)
    assert threshold == 0.8 and numbers['errors_auto'] == 3 and numbers['aligned_share'] == 0.5
    assert [routing.route(m, threshold) for m in margins] == ['aligned', 'aligned', 'cascade', 'cascade']
    # The aligned path always worse: everything goes to the cascade (threshold above every margin).
    never, _ = routing.learn_threshold(margins, [5, 5, 5, 5], cascade)
    assert all(routing.route(m, never) == 'cascade' for m in margins)
    # Always better: the lowest threshold, everything aligned.
    always, _ = routing.learn_threshold(margins, [0, 0, 0, 0], cascade)
    assert all(routing.route(m, always) == 'aligned' for m in margins)
    assert routing.learn_threshold([], [], [])[0] == routing.DEFAULT_THRESHOLD


def test_a_run_learns_and_records_the_operator_threshold(models: Models, operator_data: Path, work_dir: Path,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _always_keep(monkeypatch)
    store = AdapterStore(tmp_path / 'store')
    job = PersonalizationJob(models, store, config(work_dir, max_steps=100, gate_margin=0.0,
                                                   canary_tolerance=10.0))
    result = run(job, request(operator_data))
    assert result.accepted, result.message
    numbers = store.mode_numbers('ann')
    learned = job.last_run['routing']
    assert numbers['auto_threshold'] == learned['threshold'] and len(learned['margins']) == len(HOLDOUT)
    assert read_metadata(result.adapter_path)['routing']['threshold'] == learned['threshold']
    assert all(0.0 <= m <= 1.0 for m in learned['margins'])


def test_whisper_reads_only_the_first_cascade_items_held_out_utterances(
        models: Models, operator_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large hold-out must not spend the run's budget on Whisper: the mode compares the same few."""
    heard: list[int] = []
    transcribe = models.encoder.transcribe
    monkeypatch.setattr(models.encoder, 'transcribe', lambda audio: heard.append(len(audio)) or transcribe(audio))
    store = AdapterStore(tmp_path / 'store')
    job = PersonalizationJob(models, store, config(tmp_path / 'work', max_steps=2, cascade_items=2))
    result = run(job, request(operator_data))
    assert result.success, result.message
    assert len(heard) == 2 and len(HOLDOUT) > 2
    numbers = store.mode_numbers('ann')
    assert numbers['n_compared'] == 2 and numbers['n_holdout'] == len(HOLDOUT)
    assert len(job.last_run['routing']['margins']) == 2
    # The aligned side of the comparison is the projector-alone WER of those same two utterances.
    record = json.loads((Path(job.last_run['run_dir']) / 'run.json').read_text())['personalization']
    rows = record['heldout_details' if result.accepted else 'heldout_details_before'][:2]
    refs = [row['ref'] for row in rows]
    assert numbers['aligned'] == pytest.approx(pz_job.wer(refs, [row['nearest'] for row in rows]), abs=1e-4)
    assert numbers['mode'] == pz_gate.decide_mode(numbers['aligned'], numbers['cascade'])


def test_no_cascade_items_leaves_the_mode_aligned(models: Models, operator_data: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.encoder, 'transcribe', lambda _audio: pytest.fail('Whisper was not to be asked'))
    store = AdapterStore(tmp_path / 'store')
    job = PersonalizationJob(models, store, config(tmp_path / 'work', max_steps=2, cascade_items=0))
    result = run(job, request(operator_data))
    assert result.success and result.mode == 'aligned', result.message
    assert 'wer_cascade' not in result.metrics_before
    assert job.last_run['routing']['threshold'] == routing.DEFAULT_THRESHOLD


def test_confidence_of_a_projector(base: Projector, encoder: WhisperEncoder, speech: dict) -> None:
    import soundfile as sf
    samples, _ = sf.read(str(speech['s1t1'][0]), dtype='float32')
    c = routing.confidence(base, encoder.features(samples))
    assert 0.0 <= c.margin <= 1.0 and (c.n_tokens == 0 or math.isfinite(c.entropy))
    assert not base.training


# ------------------------------------------------------------------ enrollment


def test_enrollment_prompts_cover_the_sounds_and_the_command_words() -> None:
    prompts = enrollment.ENROLLMENT_PROMPTS
    assert 20 <= len(prompts) <= 40 and len(set(prompts)) == len(prompts)
    for sentence in prompts:
        assert sentence[0].isupper() and sentence[-1] in '.?!', sentence  # as people write
        assert len(sentence.split()) <= 10
    if not enrollment.espeak_available():
        pytest.skip('espeak-ng is not installed')
    cov = enrollment.coverage(prompts)
    assert cov['missing_phonemes'] == [], cov
    assert cov['command_words'] >= 0.9 * cov['command_words_total'], cov
    # The frozen list is what the selection returns (espeak-ng 1.51); other versions may differ.
    if '1.51' in __import__('subprocess').run(['espeak-ng', '--version'], capture_output=True, text=True).stdout:
        assert enrollment.select_prompts(enrollment.CANDIDATES, len(prompts)) == list(prompts)


def test_select_prompts_prefers_new_sounds() -> None:
    if not enrollment.espeak_available():
        pytest.skip('espeak-ng is not installed')
    chosen = enrollment.select_prompts(['Go go go.', 'Go go go go.', 'The boy enjoys measuring.'], 2)
    assert chosen[0] == 'The boy enjoys measuring.' and chosen[1] == 'Go go go.'
    with pytest.raises(ValueError):
        enrollment.select_prompts(['Go.'], 2)


def test_config_rejects_bad_v2_settings() -> None:
    for bad in ({'anchor': -1.0}, {'augment_views': -1}, {'dev_items': -2}, {'eval_every': 0}, {'probe_s': 0.0},
                {'method': 'everything'}, {'dtype': 'fp8'}):
        with pytest.raises(PersonalizeError):
            PersonalizeConfig(**bad)


def test_personalization_trains_on_the_llms_device(tmp_path: Path) -> None:
    """A robot whose LLM is on its GPU personalizes there; a CPU assistant trains on the CPU."""
    import torch

    for device, expected in ((torch.device('cpu'), 'cpu'), (torch.device('cuda', 0), 'cuda')):
        llm = type('FakeLLM', (), {'device': device})()
        job = PersonalizationJob(Models(None, llm, None, None), AdapterStore(tmp_path / expected),
                                 PersonalizeConfig(dtype='bfloat16'))
        run = pz_job._Run(job, PersonalizeRequest(operator_id='ann', source=SOURCE_FOLDER), Reporter(lambda _p: None),
                          threading.Event())
        train_config = run._make_train_config(1e-3, 10.0, False)
        assert (train_config.device, train_config.dtype) == (expected, 'bfloat16')


def test_remembered_scores_are_keyed_by_the_llms_precision(models: Models, tmp_path: Path) -> None:
    """A float32 and a bfloat16 LLM share their weights' identity but read differently: never share scores."""
    from tinyalign_ros.data import Item

    job = PersonalizationJob(models, AdapterStore(tmp_path / 'store'), PersonalizeConfig(work_dir=tmp_path))
    run = pz_job._Run(job, PersonalizeRequest(operator_id='ann', source=SOURCE_FOLDER), Reporter(lambda _p: None),
                      threading.Event())
    items = [Item('u1', 'u1.wav', 'Hello there.')]
    paths = {}
    for precision in (torch.float32, torch.bfloat16, torch.float32):
        llm = copy.copy(models.llm)
        llm.dtype = precision
        paths.setdefault(precision, set()).add(
            run._score_cache_file(models.projector, 'repeat', items, {'u1': 'k1'}, llm, models.encoder))
    assert len(paths[torch.float32]) == 1 and len(paths[torch.bfloat16]) == 1
    assert paths[torch.float32] != paths[torch.bfloat16]


def test_the_job_offers_the_enrollment_prompts(models: Models, tmp_path: Path) -> None:
    """The node's backend hands out the job: the prompts are reachable from it and from the module."""
    job = PersonalizationJob(models, AdapterStore(tmp_path / 'store'), PersonalizeConfig(work_dir=tmp_path))
    assert job.enrollment_prompts == enrollment.ENROLLMENT_PROMPTS == pz_job.ENROLLMENT_PROMPTS


def test_the_demo_tells_the_result_in_a_few_lines(models: Models, speech: dict, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from functools import partial

    from tinyalign_ros.cli import demo as cli_demo
    from tinyalign_ros.data import Item, write_manifest

    # The demo's reader, played by the espeak takes under the ids the demo holds out.
    takes = sorted(speech.items())
    items = [Item(f'LJ001-{21 + n:04d}', wav, text) for n, (_id, (wav, text)) in enumerate(takes)]
    write_manifest(items, tmp_path / 'lj' / 'manifest.jsonl')
    small = partial(PersonalizeConfig, n_general=4, n_canary=3, max_steps=30, lr=1e-2, batch_size=4, warmup_steps=1,
                    repeat_items=2, dev_items=0, augment_views=1)
    monkeypatch.setattr(pz_config, 'PersonalizeConfig', small)
    cli_demo._demo_personalize(models, tmp_path / 'lj')
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip() and not line.strip().endswith('...')]
    assert len(lines) <= 9, out  # a few lines, not a log
    assert 'held-out word error, projector alone' in out and 'Whisper cascade' in out
    assert 'forgetting canary' in out and ('ACCEPTED' in out or 'REJECTED' in out)
    assert 'why: wer_nearest' in out and 'steps' in out and 'peak memory' in out and 'auto mode threshold' in out


V2_CANCEL_POINTS = {
    'augmenting': lambda p, _e: p.phase == 'encoding' and p.message.startswith('augmenting'),
    'dev reading': lambda p, _e: p.phase == 'training' and 'validation' in p.message,
    'llm reading': lambda p, _e: p.message.startswith('LLM reading'),
}


@pytest.mark.parametrize('point', list(V2_CANCEL_POINTS))
def test_cancel_in_the_new_steps_keeps_the_previous_adapter_and_the_speech(
        point: str, models: Models, base: Projector, operator_data: Path, work_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = AdapterStore(tmp_path / 'store')
    ids = {'encoder': models.encoder.identity, 'llm': models.llm.identity}
    store.add('ann', base, ids, adapter_id='previous')
    cfg = config(tmp_path / 'work', max_steps=60, augment_views=1, dev_items=2, eval_every=5, gate_margin=0.0,
                 canary_tolerance=10.0, score_cache=False)
    recorder = Recorder(V2_CANCEL_POINTS[point])
    if point == 'llm reading':  # reached only by a run the fast readings accept
        _always_keep(monkeypatch)
        cfg = replace(cfg, max_steps=10, dev_items=0)
    result = run(PersonalizationJob(models, store, cfg), request(operator_data), recorder)
    assert recorder.cancel.is_set(), f'never reached {point}'
    assert not result.success and 'cancelled' in result.message, result.message
    assert store.active('ann').adapter_id == 'previous'
    assert [v.adapter_id for v in store.versions('ann')] == ['previous']
    assert len(store.recordings('ann')) == 12
