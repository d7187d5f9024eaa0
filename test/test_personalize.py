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
The personalization job on the tiny models.

The quality gate, cancel in every phase, failures that keep the operator's speech, rosbag and
pseudo-labeled input, LoRA, progress, budgets, the node's backend factory and the CLI.

The "operator" is espeak-ng reading four robot commands three times each (three speaking rates);
the held-out utterances are the middle-rate takes. The tiny random models cannot learn much, but
they do learn these four sentences well enough for the gate to see a real difference.
"""

from __future__ import annotations

from collections.abc import Callable
import errno
import json
import logging
import os
from pathlib import Path
import threading
import time
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from tinyalign_ros.adapter import load_adapter, read_metadata, save_adapter
from tinyalign_ros.data import Item, write_manifest
from tinyalign_ros.encoder import WhisperEncoder
from tinyalign_ros.llm import LLM
from tinyalign_ros.personalization import gate as pz_gate, job as pz_job, methods as pz_methods, progress as pz_progress
from tinyalign_ros.personalization import report as pz_report, sources as pz_sources
from tinyalign_ros.personalization.api import (AdapterStore as StoreProtocol, BackendContext, CANCEL_TOO_LATE,
                                               GOAL_CANCELED, goal_status, GOAL_SUCCEEDED, Limits, load_backend,
                                               PersonalizeJob, PersonalizeRequest, PHASES, Progress, TrainingOptions)
from tinyalign_ros.personalization.config import PersonalizeConfig, PersonalizeError
from tinyalign_ros.personalization.gate import gate
from tinyalign_ros.personalization.job import Models, PersonalizationJob
import tinyalign_ros.personalization.store as store_module
from tinyalign_ros.personalization.store import AdapterStore
from tinyalign_ros.projector import build_projector, Projector, ProjectorConfig
from tinyalign_ros.synth import synthesize
import torch

SENTENCES = ('Please turn left.', 'Bring me the red box from the shelf.', 'The robot stops at once.',
             'Please move forward one meter.')
RATES = (150, 175, 200)
HOLDOUT = [f's{i}t1' for i in range(len(SENTENCES))]


@pytest.fixture(scope='module')
def encoder(tiny_whisper_path: Path) -> WhisperEncoder:
    return WhisperEncoder(tiny_whisper_path, cpu_threads=1)


@pytest.fixture(scope='module')
def base(encoder: WhisperEncoder, llm: LLM) -> Projector:
    torch.manual_seed(0)
    projector = build_projector(ProjectorConfig(encoder_dim=encoder.d_model, llm_dim=llm.hidden_size, d_model=64,
                                                n_layers=1, n_heads=4, ff_dim=64, dropout=0.0))
    projector.bind_llm(llm.embedding_matrix)
    return projector.eval()


@pytest.fixture(scope='module')
def models(encoder: WhisperEncoder, llm: LLM, base: Projector) -> Models:
    return Models(encoder, llm, base, 'tiny-base')


@pytest.fixture(scope='module')
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Map each take's id to its (wav, transcript)."""
    folder = tmp_path_factory.mktemp('operator_wavs')
    out = {}
    for i, text in enumerate(SENTENCES):
        for j, rate in enumerate(RATES):
            wav = folder / f's{i}t{j}.wav'
            sf.write(str(wav), synthesize(text, rate=rate, pitch=40 + 10 * j), 16000, subtype='PCM_16')
            out[f's{i}t{j}'] = (wav, text)
    return out


def dataset(folder: Path, speech: dict[str, tuple[Path, str]],
            texts: dict[str, str | None] | None = None) -> Path:
    """Write a manifest folder over the shared wavs; ``texts`` overrides transcripts by id."""
    texts = texts or {}
    items = [Item(i, wav, texts.get(i, text)) for i, (wav, text) in speech.items()]
    write_manifest(items, folder / 'manifest.jsonl')
    return folder


@pytest.fixture(scope='module')
def operator_data(tmp_path_factory: pytest.TempPathFactory, speech: dict[str, tuple[Path, str]]) -> Path:
    return dataset(tmp_path_factory.mktemp('operator'), speech)


@pytest.fixture(scope='module')
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by every run here, as on a robot: general sets and features are made once."""
    return tmp_path_factory.mktemp('work')


def config(work_dir: Path, **changes: Any) -> PersonalizeConfig:
    # The learning rate follows the steps alone, so a loaded machine cannot change what a run learns;
    # no dev split or augmented views (tested in test_personalize_v2.py): the tiny models need every
    # utterance.
    settings: dict[str, Any] = {
        'n_general': 4, 'n_canary': 3, 'max_train_s': 60.0, 'max_steps': 10, 'lr': 1e-2, 'batch_size': 4,
        'warmup_steps': 1, 'time_mask': 0, 'feature_dropout': 0.0, 'repeat_items': 2, 'work_dir': work_dir,
        'schedule_by_time': False, 'dev_items': 0, 'augment_views': 0}
    settings.update(changes)
    return PersonalizeConfig(**settings)


def request(data: Path, operator: str = 'ann', **options: Any) -> PersonalizeRequest:
    options.setdefault('holdout_ids', list(HOLDOUT))
    return PersonalizeRequest(operator, 'folder', path=str(data), options=TrainingOptions(**options))


class Recorder:
    """A progress listener that can also pull the cancel cord when a condition is met."""

    def __init__(self, cancel_when: Callable[[Progress, list[Progress]], bool] | None = None) -> None:
        self.reports: list[tuple[float, Progress]] = []
        self.cancel = threading.Event()
        self.cancel_when = cancel_when

    def __call__(self, progress: Progress) -> None:
        self.reports.append((time.monotonic(), progress))
        if self.cancel_when is not None and self.cancel_when(progress, [p for _t, p in self.reports[:-1]]):
            self.cancel.set()

    def phases(self) -> list[str]:
        seen: list[str] = []
        for _t, p in self.reports:
            if not seen or seen[-1] != p.phase:
                seen.append(p.phase)
        return seen


def run(job: PersonalizationJob, req: PersonalizeRequest, recorder: Recorder | None = None) -> Any:
    recorder = recorder or Recorder()
    return job.run(req, recorder, recorder.cancel)


def loads(store: AdapterStore, operator: str, llm: LLM, encoder: WhisperEncoder) -> str:
    active = store.active(operator)
    load_adapter(active.path, encoder.identity, llm.identity, llm.embedding_matrix)
    return active.adapter_id


# ------------------------------------------------------------------ the gate


def test_gate_rule() -> None:
    cfg = PersonalizeConfig(gate_margin=0.05, canary_tolerance=0.03)
    assert gate({'wer_nearest': 0.5}, {'wer_nearest': 0.4}, cfg)[0]
    ok, why = gate({'wer_nearest': 0.5}, {'wer_nearest': 0.49}, cfg)
    assert not ok and '0.500 -> 0.490' in why and 'needs at least -5%' in why
    ok, why = gate({'wer_nearest': 0.5, 'wer_canary': 0.4}, {'wer_nearest': 0.2, 'wer_canary': 0.5}, cfg)
    assert not ok and 'canary' in why and '0.400 -> 0.500' in why
    assert gate({'wer_nearest': 0.5, 'wer_canary': 0.4}, {'wer_nearest': 0.2, 'wer_canary': 0.42}, cfg)[0]
    assert not gate({'wer_nearest': 0.0}, {'wer_nearest': 0.0}, cfg)[0]  # nothing left to gain
    assert not gate({'wer_nearest': 0.5}, {}, cfg)[0]
    assert gate({'nll_audio': 4.0}, {'nll_audio': 3.0}, PersonalizeConfig(gate_metric='nll_audio'))[0]
    assert pz_gate.decide_mode(0.3, 0.1) == 'cascade' and pz_gate.decide_mode(0.1, 0.3) == 'aligned'
    assert pz_gate.decide_mode(None, 0.1) == 'aligned'


def test_gate_accepts_an_improving_run_and_rejects_a_harmful_one(
        models: Models, llm: LLM, encoder: WhisperEncoder, operator_data: Path, speech: dict, work_dir: Path,
        tmp_path: Path) -> None:
    store = AdapterStore(tmp_path / 'store')
    # Tempo and pitch views: with cased targets a cased word is one token, and the tiny model trained
    # on the 150 and 200 wpm takes alone learns whole sentences, reading each 175 wpm held-out take as
    # another training sentence. 300 steps sit in the middle of the plateau: 250 / 300 / 350 steps
    # gave -29% / -29% / -29% with the fused AdamW and -29% / -24% / -33% with the plain one, where
    # 500 steps gave -5% (on the gate's edge) and 800 +10%: longer runs memorize the takes.
    job = PersonalizationJob(models, store, config(work_dir, max_steps=300, augment_views=2))
    recorder = Recorder()
    good = run(job, request(operator_data), recorder)
    assert good.success and good.accepted, good.message
    before, after = good.metrics_before['wer_nearest'], good.metrics_after['wer_nearest']
    assert after <= 0.95 * before and after < 0.9, good.message  # it learned words, not only silence
    assert good.n_train == 8 and good.n_holdout == 4
    assert set(good.metrics_before) >= {'wer_nearest', 'wer_repeat', 'nll_audio', 'wer_canary', 'wer_cascade'}
    assert recorder.phases() == ['recording', 'encoding', 'evaluating', 'training', 'evaluating', 'saving']
    assert store.active('ann').adapter_id == good.adapter_id == loads(store, 'ann', llm, encoder)
    assert store.mode('ann') == good.mode == pz_gate.decide_mode(after, good.metrics_before['wer_cascade'])
    meta = read_metadata(good.adapter_path)
    assert meta['parent'] == 'tiny-base' and meta['data']['holdout_ids'] == HOLDOUT
    assert meta['data']['trust'] == 'human' and meta['personalization']['gate']['accepted']
    assert meta['personalization']['after']['wer_nearest'] == after
    assert (Path(good.adapter_path) / pz_report.PLOT_NAME).stat().st_size > 1000
    assert good.durations['total'] >= good.durations['train'] > 0

    # The same utterances with wrong training transcripts, in words none of the held-out sentences
    # use: the adapter would learn to hear every command as something else. (Rotating the real
    # transcripts was not harmful enough to be sure: it still teaches the commands' own words.)
    # It starts from the accepted adapter and must not replace it.
    wrong = {f's{i}t{j}': 'Quiet violet zebras hum.' for i in range(len(SENTENCES)) for j in (0, 2)}
    harmful_data = dataset(tmp_path / 'harmful', speech, wrong)
    harmful = run(PersonalizationJob(models, store, config(work_dir, max_steps=150)), request(harmful_data))
    assert harmful.success and not harmful.accepted, harmful.message
    assert harmful.metrics_before['wer_nearest'] == pytest.approx(after, abs=1e-6)  # it started from `good`
    assert harmful.metrics_after['wer_nearest'] > harmful.metrics_before['wer_nearest'] * 0.95
    assert 'rejected' in harmful.message and 'wer_nearest' in harmful.message
    assert harmful.adapter_id == '' and store.active('ann').adapter_id == good.adapter_id
    assert [v.adapter_id for v in store.versions('ann')] == [good.adapter_id]
    assert loads(store, 'ann', llm, encoder) == good.adapter_id


# ------------------------------------------------------------------ cancel and failure


def _after(phase: str, then: str) -> Callable[[Progress, list[Progress]], bool]:
    return lambda p, earlier: p.phase == then and any(e.phase == phase for e in earlier)


CANCEL_POINTS = {
    'recording': lambda p, _e: p.phase == 'recording',
    'encoding': lambda p, _e: p.phase == 'encoding',
    'evaluating': lambda p, _e: p.phase == 'evaluating',
    'training': lambda p, _e: p.phase == 'training' and p.step >= 1,
    'evaluating-after': _after('training', 'evaluating'),
    'saving': lambda p, _e: p.phase == 'saving',
}


@pytest.mark.parametrize('point', list(CANCEL_POINTS))
def test_cancel_in_every_phase_keeps_the_previous_adapter(
        point: str, models: Models, base: Projector, llm: LLM, encoder: WhisperEncoder, operator_data: Path,
        work_dir: Path, tmp_path: Path) -> None:
    store = AdapterStore(tmp_path / 'store')
    previous = store.add('ann', base, {'encoder': encoder.identity, 'llm': llm.identity}, adapter_id='previous')
    store.set_mode('ann', 'cascade', {'why': 'test'})
    job = PersonalizationJob(models, store, config(work_dir, gate_margin=0.0, canary_tolerance=10.0))
    recorder = Recorder(CANCEL_POINTS[point])
    started = time.monotonic()
    result = run(job, request(operator_data), recorder)
    assert recorder.cancel.is_set(), f'never reached {point}'
    assert not result.success and not result.accepted and 'cancelled' in result.message, result.message
    assert result.canceled and not result.cancel_too_late and goal_status(result, True)[0] == GOAL_CANCELED
    assert time.monotonic() - started < 30
    assert store.active('ann').adapter_id == previous.adapter_id == loads(store, 'ann', llm, encoder)
    assert [v.adapter_id for v in store.versions('ann')] == ['previous']
    assert store.mode('ann') == 'cascade'  # nothing about the operator changed
    if point != 'recording':
        assert len(store.recordings('ann')) == 12  # the speech was saved before anything else


def _previous(store: AdapterStore, base: Projector, encoder: WhisperEncoder, llm: LLM) -> str:
    version = store.add('ann', base, {'encoder': encoder.identity, 'llm': llm.identity}, adapter_id='previous')
    store.set_mode('ann', 'cascade', {'why': 'test'})
    return version.adapter_id


@pytest.mark.parametrize('gate_says', [True, False])
def test_a_cancel_while_the_store_saves_changes_nothing(
        gate_says: bool, models: Models, base: Projector, llm: LLM, encoder: WhisperEncoder, operator_data: Path,
        work_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Cancel in the middle of the store's save: the store must not switch.

    The cancel arrives after the adapter folder is complete, before the switch; the result must
    say CANCELED.
    """
    store = AdapterStore(tmp_path / 'store')
    previous = _previous(store, base, encoder, llm)
    recorder = Recorder()
    real_save = store_module.save_adapter
    real_repair = store._repair

    def save_then_cancel(*args: Any, **kwargs: Any) -> Path:
        path = real_save(*args, **kwargs)
        recorder.cancel.set()
        return path

    def repair_then_cancel(operator_id: str) -> dict:  # the rejected path: cancel inside set_mode's lock
        state = real_repair(operator_id)
        if recorder.reports and recorder.reports[-1][1].phase == 'saving':
            recorder.cancel.set()
        return state

    monkeypatch.setattr(store_module, 'save_adapter', save_then_cancel)
    monkeypatch.setattr(store, '_repair', repair_then_cancel)
    monkeypatch.setattr(pz_job, 'gate', lambda *_a: (gate_says, 'decided by the test'))
    result = run(PersonalizationJob(models, store, config(work_dir)), request(operator_data), recorder)
    monkeypatch.undo()
    assert recorder.cancel.is_set()
    assert result.canceled and not result.success and not result.cancel_too_late, result.message
    assert goal_status(result, cancel_requested=True)[0] == GOAL_CANCELED
    assert store.active('ann').adapter_id == previous == loads(store, 'ann', llm, encoder)
    assert [v.adapter_id for v in store.versions('ann')] == ['previous'] and store.mode('ann') == 'cascade'
    assert sorted(p.name for p in store.versions_dir('ann').iterdir()) == ['previous']


@pytest.mark.parametrize('gate_says', [True, False])
def test_a_cancel_after_the_switch_is_too_late_and_says_so(
        gate_says: bool, models: Models, base: Projector, llm: LLM, encoder: WhisperEncoder, operator_data: Path,
        work_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Cancel just after the store switched: the run SUCCEEDS.

    The result says the cancel came too late, and the store, the result and the goal state agree.
    """
    store = AdapterStore(tmp_path / 'store')
    previous = _previous(store, base, encoder, llm)
    recorder = Recorder()
    real_write = store._write_state

    def write_then_cancel(operator_id: str, state: dict) -> None:
        real_write(operator_id, state)
        if recorder.reports and recorder.reports[-1][1].phase == 'saving':
            recorder.cancel.set()

    monkeypatch.setattr(store, '_write_state', write_then_cancel)
    monkeypatch.setattr(pz_job, 'gate', lambda *_a: (gate_says, 'decided by the test'))
    result = run(PersonalizationJob(models, store, config(work_dir)), request(operator_data), recorder)
    monkeypatch.undo()
    assert recorder.cancel.is_set()
    assert result.success and result.accepted == gate_says and result.cancel_too_late, result.message
    assert not result.canceled and result.message.endswith(CANCEL_TOO_LATE)
    status, message = goal_status(result, cancel_requested=True)
    assert status == GOAL_SUCCEEDED and message.count(CANCEL_TOO_LATE) == 1
    if gate_says:
        assert store.active('ann').adapter_id == result.adapter_id != previous
        assert loads(store, 'ann', llm, encoder) == result.adapter_id and store.mode('ann') == result.mode
    else:
        assert store.active('ann').adapter_id == previous and result.adapter_id == ''


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    shown = [r for r in caplog.records if r.exc_info]
    assert not shown, [r.getMessage() for r in shown]


def test_bad_files_in_the_folder_are_skipped_and_reported(
        models: Models, speech: dict, work_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = dataset(tmp_path / 'data', speech)
    lines = (folder / 'manifest.jsonl').read_text().splitlines()
    (folder / 'noise.wav').write_bytes(b'not audio' * 100)
    (folder / 'empty.wav').write_bytes(b'')
    lines += [json.dumps({'id': 'noise', 'audio': 'noise.wav', 'text': 'noise'}),
              json.dumps({'id': 'empty', 'audio': 'empty.wav', 'text': 'empty'}),
              json.dumps({'id': 'gone', 'audio': 'gone.wav', 'text': 'gone'}),
              json.dumps({'id': 'badtext', 'audio': 'noise.wav', 'text': ['not', 'text']})]
    (folder / 'manifest.jsonl').write_text('\n'.join(lines) + '\n')
    caplog.set_level(logging.INFO)
    store = AdapterStore(tmp_path / 'store')
    result = run(PersonalizationJob(models, store, config(work_dir, max_steps=2)), request(folder))
    assert result.success, result.message
    assert len(result.skipped) == 4 and '4 input(s) skipped' in result.message, result.message
    assert result.n_train + result.n_holdout == 12 and len(store.recordings('ann')) == 12
    _no_tracebacks(caplog)


def test_only_bad_files_fail_with_one_line_and_no_traceback(
        models: Models, work_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / 'data'
    folder.mkdir()
    (folder / 'a.wav').write_bytes(b'RIFF garbage')
    (folder / 'b.wav').write_bytes(b'')
    (folder / 'manifest.jsonl').write_text(json.dumps({'id': 'a', 'audio': 'a.wav', 'text': 'a'}) + '\n'
                                           + json.dumps({'id': 'b', 'audio': 'b.wav', 'text': 'b'}) + '\n')
    caplog.set_level(logging.INFO)
    result = run(PersonalizationJob(models, AdapterStore(tmp_path / 'store'), config(work_dir)), request(folder))
    assert not result.success and 'no operator speech' in result.message and len(result.skipped) == 2, result.message
    _no_tracebacks(caplog)


def test_a_full_disk_while_saving_recordings_is_said_in_words(
        models: Models, base: Projector, llm: LLM, encoder: WhisperEncoder, operator_data: Path, work_dir: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    store = AdapterStore(tmp_path / 'store')
    previous = _previous(store, base, encoder, llm)
    real_write = os.write

    def full(fd: int, data: Any) -> int:
        if os.readlink(f'/proc/self/fd/{fd}').startswith(str(store.root)):
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real_write(fd, data)

    monkeypatch.setattr(os, 'write', full)
    caplog.set_level(logging.INFO)
    result = run(PersonalizationJob(models, store, config(work_dir)), request(operator_data))
    monkeypatch.undo()
    assert not result.success and 'recording' in result.message, result.message
    assert 'the disk is full' in result.message and str(store.recordings_dir('ann')) in result.message
    assert 'adapter previous stays active' in result.message and 'System error' not in result.message
    assert store.active('ann').adapter_id == previous
    _no_tracebacks(caplog)


def test_a_failed_run_keeps_the_recordings_and_the_previous_adapter(
        models: Models, operator_data: Path, work_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError('disk on fire')

    monkeypatch.setattr(pz_job, 'train', broken)
    store = AdapterStore(tmp_path / 'store')
    result = run(PersonalizationJob(models, store, config(work_dir)), request(operator_data))
    assert not result.success and 'training' in result.message and 'disk on fire' in result.message
    assert 'base adapter stays active' in result.message
    assert store.active('ann') is None and store.versions('ann') == []
    kept = store.recordings('ann')
    assert sorted(i.id for i in kept) == sorted(f's{i}t{j}' for i in range(4) for j in range(3))
    assert all(i.text in SENTENCES and Path(i.audio).is_file() for i in kept)


@pytest.mark.parametrize('options,match', [
    ({'holdout_ids': ['nope']}, 'unknown id'),
    ({'holdout': 12, 'holdout_ids': []}, 'nothing to train on'),
    ({'method': 'telepathy'}, 'method'),
])
def test_bad_requests_fail_with_a_reason(options: dict, match: str, models: Models, operator_data: Path,
                                         work_dir: Path, tmp_path: Path) -> None:
    store = AdapterStore(tmp_path / 'store')
    result = run(PersonalizationJob(models, store, config(work_dir)), request(operator_data, **options))
    assert not result.success and match in result.message


def test_operator_ids_with_path_tricks_never_reach_the_job() -> None:
    for bad in ('../x', 'a/b', '.hidden', 'a b'):
        with pytest.raises(ValueError):
            PersonalizeRequest(bad, 'folder', path='x')


# ------------------------------------------------------------------ inputs


def test_unlabeled_speech_needs_pseudo_labels_which_are_flagged(
        models: Models, encoder: WhisperEncoder, speech: dict, work_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    unlabeled = {i: None for i in speech if i.endswith('t0')}
    data = dataset(tmp_path / 'partly', speech, unlabeled)
    store = AdapterStore(tmp_path / 'store')
    refused = run(PersonalizationJob(models, store, config(work_dir)), request(data))
    assert not refused.success and '4 of 12 utterances have no transcript' in refused.message
    assert len(store.recordings('ann')) == 12  # kept anyway, to be labeled later

    # The tiny random Whisper cannot transcribe; stand in for it with the right words (the test is
    # about how pseudo-labels are handled, not how good Whisper is).
    truth = {sf.read(str(wav), dtype='float32')[0].size: text for wav, text in speech.values()}
    monkeypatch.setattr(encoder, 'transcribe', lambda audio, **_kw: truth.get(audio.size, 'unknown').lower())
    job = PersonalizationJob(models, store, config(work_dir, gate_margin=0.0, canary_tolerance=10.0))
    result = run(job, request(data, pseudo_label=True))
    assert result.success, result.message
    record = json.loads((Path(job.last_run['run_dir']) / 'run.json').read_text())
    assert record['data']['trust'] == 'mixed'
    assert sorted(record['data']['pseudo_labeled_ids']) == sorted(unlabeled)
    assert not set(record['data']['holdout_ids']) & set(unlabeled)  # held out: human-labeled only
    kept = {i.id: i for i in store.recordings('ann')}
    assert all(kept[i].meta['trust'] == 'pseudo' and kept[i].text for i in unlabeled)
    if result.accepted:
        assert read_metadata(result.adapter_path)['data']['pseudo_labeled_ids'] == sorted(unlabeled)


def test_enrollment_answers(models: Models, speech: dict, work_dir: Path, tmp_path: Path) -> None:
    """The node's path: recorded (audio, prompt) pairs; a broken answer is skipped, not fatal."""
    answers = [(sf.read(str(wav), dtype='float32')[0], text) for wav, text in speech.values()][:6]
    answers.append((np.zeros(0, np.float32), 'an empty answer'))
    store = AdapterStore(tmp_path / 'store')
    recorder = Recorder()
    req = PersonalizeRequest('carl', 'record', utterances=answers, options=TrainingOptions(holdout=2))
    result = run(PersonalizationJob(models, store, config(work_dir)), req, recorder)
    assert result.success and result.n_train == 4 and result.n_holdout == 2, result.message
    kept = store.recordings('carl')
    assert len(kept) == 6 and {i.meta['source'] for i in kept} == {'record'}
    assert min(p.progress for _t, p in recorder.reports) >= 0.3  # the node's recording took the first 30 %


def _bag(path: Path, storage: str, texts: tuple[str, ...] | None) -> list[float]:
    """Write a rosbag2 with ros-drivers audio in 0.1 s messages and, optionally, a prompt before each utterance."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from tinyalign_ros import audio_messages, rosbag

    store = get_typestore(Stores.ROS2_HUMBLE)
    types: dict[str, Any] = {}
    for name, text in rosbag.MSG_DEFINITIONS['ros-drivers'].items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    lengths = []
    t = 1_700_000_000 * 10**9
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        audio = writer.add_connection('/mic', 'audio_common_msgs/msg/AudioData', typestore=store)
        prompt = writer.add_connection('/prompt', 'std_msgs/msg/String', typestore=store) if texts else None
        for i, sentence in enumerate(SENTENCES[:3]):
            if prompt is not None:
                msg = store.types['std_msgs/msg/String'](data=texts[i])
                writer.write(prompt, t, store.serialize_cdr(msg, 'std_msgs/msg/String'))
            spoken = synthesize(sentence, rate=170)
            lengths.append(spoken.size / 16000)
            stream = np.concatenate([np.zeros(4800, np.float32), spoken, np.zeros(16000, np.float32)])
            for start in range(0, stream.size, 1600):
                pcm = audio_messages.float_to_samples(stream[start:start + 1600], 'S16LE')
                t += 100_000_000
                msg = store.types['audio_common_msgs/msg/AudioData'](data=np.frombuffer(pcm.tobytes(), np.uint8))
                writer.write(audio, t, store.serialize_cdr(msg, 'audio_common_msgs/msg/AudioData'))
    return lengths


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_rosbag_input(storage: str, models: Models, work_dir: Path, tmp_path: Path) -> None:
    lengths = _bag(tmp_path / 'bag', storage, SENTENCES[:3])
    recordings = pz_sources.recordings_from_bag(tmp_path / 'bag', ['/mic', '/prompt'])
    assert [r.text for r in recordings] == list(SENTENCES[:3])
    for rec, length in zip(recordings, lengths):
        assert abs(rec.audio.size / 16000 - length) < 0.8 and rec.meta['source'] == 'rosbag'
    if storage == 'mcap':
        return  # the job reads both storages through the same function; one full run is enough
    store = AdapterStore(tmp_path / 'store')
    req = PersonalizeRequest('bob', 'rosbag', path=str(tmp_path / 'bag'), topics=['/mic', '/prompt'],
                             options=TrainingOptions(holdout=1))
    result = run(PersonalizationJob(models, store, config(work_dir)), req)
    assert result.success and result.n_train == 2 and result.n_holdout == 1, result.message
    kept = store.recordings('bob')
    assert sorted(i.text for i in kept) == sorted(SENTENCES[:3]) and {i.meta['source'] for i in kept} == {'rosbag'}


def test_rosbag_without_transcripts_is_cut_by_the_vad(tmp_path: Path) -> None:
    lengths = _bag(tmp_path / 'bag', 'sqlite3', None)
    recordings = pz_sources.recordings_from_bag(tmp_path / 'bag')
    assert len(recordings) == 3 and all(r.text is None for r in recordings)
    with pytest.raises(PersonalizeError, match="no std_msgs/String topic '/prompt'"):
        pz_sources.recordings_from_bag(tmp_path / 'bag', ['/mic', '/prompt'])
    for rec, length in zip(recordings, lengths):
        assert abs(rec.audio.size / 16000 - length) < 0.8


# ------------------------------------------------------------------ methods, progress, budgets


def test_lora_merges_into_a_plain_projector(base: Projector, encoder: WhisperEncoder) -> None:
    import copy

    projector = copy.deepcopy(base)
    keys = set(projector.state_dict())
    pz_methods.add_lora(projector, rank=4)
    trainable = [n for n, p in projector.named_parameters() if p.requires_grad]
    assert trainable and all('lora_' in n for n in trainable)
    with torch.no_grad():
        for name, p in projector.named_parameters():
            if 'lora_B' in name:
                p.normal_(0, 0.05)
    features = torch.randn(1, 40, encoder.d_model)
    projector.train(True)  # (dropout is 0) in eval mode torch's fast attention path bypasses the wrappers
    with torch.no_grad():
        wrapped = projector(features).logits
    projector.train(False)
    pz_methods.merge_lora(projector)
    with torch.no_grad():
        merged = projector(features).logits
    assert set(projector.state_dict()) == keys
    assert torch.allclose(wrapped, merged, atol=1e-4)
    assert not torch.allclose(merged, base(features).logits, atol=1e-4)


def test_lora_and_ce_runs(models: Models, operator_data: Path, work_dir: Path, tmp_path: Path) -> None:
    store = AdapterStore(tmp_path / 'store')
    for options in ({'method': 'lora'}, {'objective': 'ce'}):
        job = PersonalizationJob(models, store, config(work_dir, max_steps=5, gate_margin=0.0, canary_tolerance=10.0))
        result = run(job, request(operator_data, **options))
        assert result.success and job.last_run['steps'] == 5, result.message
        record = json.loads((Path(job.last_run['run_dir']) / 'run.json').read_text())
        assert record['training']['method'] == options.get('method', 'projector')
        assert record['training']['objective'] == options.get('objective', 'ctc')


def test_progress_never_moves_back_within_a_phase() -> None:
    # An accepted run scores the new adapter, then has the LLM read it, both in the 'after' phase
    # and each counting its items from zero.
    seen: list[float] = []
    reporter = pz_progress.Reporter(lambda p: seen.append(p.progress))
    reporter('after', 1.0, message='scoring after: 7/7')
    reporter('after', 0.5, message='LLM reading after: 1/2')
    reporter('after', 1.0, message='LLM reading after: 2/2')
    reporter('saving', 0.0)
    assert seen == sorted(seen) and seen[0] == pytest.approx(0.95) and seen[-1] == pytest.approx(0.95)


def test_progress_keeps_coming_during_a_long_call(models: Models, operator_data: Path, work_dir: Path,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = pz_job.evaluate
    calls = []

    def slow(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(4.0)  # one long call, as an LLM generation on a robot can be
        return real(*args, **kwargs)

    monkeypatch.setattr(pz_job, 'evaluate', slow)
    recorder = Recorder()
    result = run(PersonalizationJob(models, AdapterStore(tmp_path / 'store'), config(work_dir)),
                 request(operator_data), recorder)
    assert result.success, result.message
    times = [t for t, _p in recorder.reports]
    # The heartbeat repeats the last report every 0.5 s; without it the 4 s call would leave a 4 s gap.
    # The bound leaves room for a loaded machine delaying the heartbeat thread (measured 1.6 s at load 8).
    assert max(b - a for a, b in zip(times, times[1:])) < 2.5
    progress = [p.progress for _t, p in recorder.reports]
    assert progress == sorted(progress) and progress[-1] == pytest.approx(0.95, abs=0.05)
    assert all(p.phase in PHASES for _t, p in recorder.reports)
    training = [p for _t, p in recorder.reports if p.phase == 'training' and p.step]
    assert training and all(p.eta_s >= 0 and p.loss == p.loss for p in training)


def test_time_budget_stops_training(models: Models, operator_data: Path, work_dir: Path, tmp_path: Path) -> None:
    job = PersonalizationJob(models, AdapterStore(tmp_path / 'store'), config(work_dir))
    req = request(operator_data)
    req.limits = Limits(max_train_s=0.5, max_steps=10**6)
    result = run(job, req)
    assert result.success and job.last_run['stopped_by'] == 'time_budget'
    assert 0.45 < result.durations['train'] < 4.0


def test_ros_backend_factory(models: Models, tmp_path: Path) -> None:
    backend = load_backend('tinyalign_ros.personalization.job:ros_backend',
                           BackendContext(pipeline=models, store_dir=tmp_path / 'store', work_dir=tmp_path / 'work'))
    assert isinstance(backend.job, PersonalizeJob) and isinstance(backend.store, StoreProtocol)
    assert backend.store.root == tmp_path / 'store' and backend.job.work_dir == tmp_path / 'work'
    node_source = (Path(pz_job.__file__).parents[1] / 'nodes' / 'parameters.py').read_text()
    assert "'personalize.backend', 'tinyalign_ros.personalization.job:ros_backend'" in node_source


def test_config_validation() -> None:
    for bad in ({'objective': 'mse'}, {'method': 'full'}, {'gate_margin': 1.5}, {'max_train_s': 0},
                {'gate_metric': 'bleu'}, {'holdout': 0}):
        with pytest.raises(PersonalizeError):
            PersonalizeConfig(**bad)
    with pytest.raises(PersonalizeError, match='unknown'):
        PersonalizeConfig.from_dict({'learning_rate': 1})


# ------------------------------------------------------------------ CLI


def test_cli_personalize_and_adapters(tiny_whisper_path: Path, tiny_llm_path: Path, encoder: WhisperEncoder,
                                      llm: LLM, base: Projector, operator_data: Path, work_dir: Path,
                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tinyalign_ros.cli import main

    adapter = save_adapter(tmp_path / 'base', base, {'encoder': encoder.identity, 'llm': llm.identity})
    store = tmp_path / 'store'
    argv = ['personalize', '--operator', 'cli_op', '--data', str(operator_data), '--holdout-ids', *HOLDOUT,
            '--store', str(store), '--work-dir', str(work_dir), '--max-steps', '5', '--n-general', '4',
            '--n-canary', '3', '--repeat-items', '2', '--gate-margin', '0', '--whisper', str(tiny_whisper_path),
            '--llm', str(tiny_llm_path), '--adapter', str(adapter), '--train-dtype', 'bfloat16', '--json']
    code = main(argv)
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert {'operator', 'n_train', 'n_holdout', 'before', 'after', 'accepted', 'adapter', 'seconds',
            'peak_rss_mb', 'cascade', 'mode'} <= set(out)
    for key in ('before', 'after'):
        assert {'wer_nearest', 'wer_repeat', 'nll_audio'} <= set(out[key])
    assert out['operator'] == 'cli_op' and out['n_train'] == 8 and out['n_holdout'] == 4
    assert out['holdout_ids'] == HOLDOUT and out['peak_rss_mb'] > 0 and out['seconds'] > 0
    assert 'wer' in out['cascade'] and out['mode'] in ('aligned', 'cascade')
    assert out['train_dtype'] == 'bfloat16'  # the training steps' precision, apart from the LLM's

    # Two versions (the second forced in through the store), then list / activate / rollback.
    first = AdapterStore(store).add('cli_op', base, {}, adapter_id='manual').adapter_id
    assert main(['adapters', 'list', '--operator', 'cli_op', '--store', str(store), '--json']) == 0
    listed = json.loads(capsys.readouterr().out)
    ids = [v['adapter_id'] for v in listed['versions']]
    assert listed['active'] == first and first in ids and len(ids) == 1 + int(out['accepted'])
    assert main(['adapters', 'rollback', '--operator', 'cli_op', '--store', str(store), '--json']) == 0
    rolled = json.loads(capsys.readouterr().out)
    assert rolled['active'] == (out['adapter_id'] if out['accepted'] else None)
    assert main(['adapters', 'activate', '--operator', 'cli_op', '--adapter-id', first, '--store', str(store),
                 '--json']) == 0
    assert json.loads(capsys.readouterr().out)['active'] == first
    assert main(['adapters', 'activate', '--operator', 'cli_op', '--adapter-id', 'nope', '--store', str(store)]) == 2
    assert 'nope' in capsys.readouterr().err
    assert main(['adapters', 'list', '--operator', '../etc', '--store', str(store)]) == 2
    assert 'not allowed' in capsys.readouterr().err
