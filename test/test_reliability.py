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
The engine under hostile input and a failing machine.

Cancel at the moment of the switch, pruning, operator ids, broken adapters, absurd audio, bad input files, a
full disk, debris left by a crash, and fsync before every rename that publishes data. No models are needed.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
import threading
import time
from typing import Any

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
import soundfile as sf
from tinyalign_ros import durable
from tinyalign_ros.adapter import AdapterError, load_adapter, METADATA, save_adapter, WEIGHTS
from tinyalign_ros.audio import AmplitudeError, load_audio, NonFiniteAudioError, pcm_to_float, validate
from tinyalign_ros.data import DatasetError, Item, load_dataset, write_manifest
from tinyalign_ros.model_files import file_sha256
from tinyalign_ros.personalization.api import (
    CANCEL_TOO_LATE, GOAL_ABORTED, GOAL_CANCELED, goal_status, GOAL_SUCCEEDED, OperatorIdError, PersonalizeRequest,
    PersonalizeResult, validate_operator_id,
)
from tinyalign_ros.personalization.sources import recordings_from_folder
import tinyalign_ros.personalization.store as store_module
from tinyalign_ros.personalization.store import AdapterStore, Recording, SaveCancelled
from tinyalign_ros.projector import build_projector, Projector, ProjectorConfig
import torch

TINY = {'encoder_dim': 8, 'llm_dim': 8, 'd_model': 8, 'n_layers': 1, 'n_heads': 2, 'ff_dim': 16, 'reduce_factor': 2}


def projector(seed: int = 0) -> Projector:
    torch.manual_seed(seed)
    return build_projector(ProjectorConfig(**TINY))


@pytest.fixture()
def store(tmp_path: Path) -> AdapterStore:
    return AdapterStore(tmp_path / 'store', keep=3)


def snapshot(store: AdapterStore, operator: str) -> tuple[Any, ...]:
    """Everything a cancel must leave untouched: versions on disk, the state, the mode."""
    state = store.state(operator)
    return (sorted(p.name for p in store.versions_dir(operator).iterdir()), state['active'], state['history'],
            json.dumps(state['modes'], sort_keys=True), store.mode(operator))


def tone(seconds: float = 0.5, amplitude: float = 0.1) -> np.ndarray:
    return (amplitude * np.sin(np.arange(int(16000 * seconds)) / 5)).astype(np.float32)


# ------------------------------------------------------------------ 1: cancel against the switch


def test_a_cancel_set_while_the_adapter_is_written_changes_nothing(store: AdapterStore,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store.add('ann', projector(), {}, adapter_id='previous')
    store.set_mode('ann', 'cascade', {'why': 'test'})
    before = snapshot(store, 'ann')
    cancel = threading.Event()
    real_save = store_module.save_adapter

    def save_then_cancel(*args: Any, **kwargs: Any) -> Path:
        path = real_save(*args, **kwargs)
        cancel.set()  # arrives while saving: after the folder is complete, before the switch
        return path

    monkeypatch.setattr(store_module, 'save_adapter', save_then_cancel)
    with pytest.raises(SaveCancelled, match='nothing changed'):
        store.add('ann', projector(1), {}, adapter_id='new', mode='aligned', cancel=cancel)
    assert snapshot(store, 'ann') == before
    assert store.active('ann').adapter_id == 'previous'


def test_a_cancel_set_before_saving_writes_nothing_and_a_cleared_one_switches(store: AdapterStore) -> None:
    store.add('ann', projector(), {}, adapter_id='previous')
    before = snapshot(store, 'ann')
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(SaveCancelled):
        store.add('ann', projector(1), {}, adapter_id='new', cancel=cancel)
    with pytest.raises(SaveCancelled):
        store.set_mode('ann', 'cascade', {'n': 1}, cancel=cancel)
    assert snapshot(store, 'ann') == before
    version = store.add('ann', projector(1), {}, adapter_id='new', mode='cascade', cancel=threading.Event())
    assert version.active and store.active('ann').adapter_id == 'new' and store.mode('ann') == 'cascade'


def test_the_goal_state_follows_what_the_job_did() -> None:
    done = PersonalizeResult(success=True, accepted=True, message='accepted: better')
    assert goal_status(done, cancel_requested=False) == (GOAL_SUCCEEDED, 'accepted: better')
    status, message = goal_status(done, cancel_requested=True)  # the store had switched already
    assert status == GOAL_SUCCEEDED and message == f'accepted: better; {CANCEL_TOO_LATE}'
    late = PersonalizeResult(success=True, cancel_too_late=True, message=f'rejected; {CANCEL_TOO_LATE}')
    assert goal_status(late, cancel_requested=True) == (GOAL_SUCCEEDED, late.message)  # said once
    stopped = PersonalizeResult(success=False, canceled=True, message='cancelled during saving')
    assert goal_status(stopped, cancel_requested=True) == (GOAL_CANCELED, stopped.message)
    failed = PersonalizeResult(success=False, message='failed during training')
    assert goal_status(failed, cancel_requested=False)[0] == GOAL_ABORTED
    assert goal_status(failed, cancel_requested=True)[0] == GOAL_CANCELED


# ------------------------------------------------------------------ 2: pruning


def test_keep_1_never_prunes_the_version_being_added(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path / 'store', keep=1)
    store.add('ann', projector(), {}, adapter_id='old')
    added = store.add('ann', projector(1), {}, adapter_id='new', activate=False)
    assert Path(added.path).is_dir()
    assert store.activate('ann', 'new').active  # "adapter folder not found" before
    store.add('ann', projector(2), {}, adapter_id='newest')  # activated at once: the old active one goes
    assert [v.adapter_id for v in store.versions('ann')] == ['newest']


# ------------------------------------------------------------------ 3: operator ids


@pytest.mark.parametrize('bad', ['alice\n', 'alice\r\n', '\nalice', 'al\nice', 'alice\x00'])
def test_operator_ids_with_control_characters_are_refused(store: AdapterStore, bad: str) -> None:
    with pytest.raises(OperatorIdError):
        validate_operator_id(bad)
    with pytest.raises(OperatorIdError):
        store.add(bad, projector(), {})
    with pytest.raises(OperatorIdError):
        store.save_recordings(bad, [Recording(tone(), 'hi')], 's1')
    with pytest.raises(ValueError):
        PersonalizeRequest(bad, 'folder', path='/tmp')
    assert list(store.root.iterdir()) == []


# ------------------------------------------------------------------ 4: adapters that are broken but well-formed


def rewrite_weights(path: Path, change: Any) -> None:
    """
    Replace the weights by ``change(tensors)`` and record the new size and checksum.

    This is what a tool that writes a broken adapter consistently would do: only the content checks can catch
    it.
    """
    tensors = change(load_file(str(path / WEIGHTS)))
    save_file(tensors, str(path / WEIGHTS), metadata={'format': 'tinyalign_ros-adapter'})
    meta = json.loads((path / METADATA).read_text())
    meta['weights'] = {'bytes': (path / WEIGHTS).stat().st_size, 'sha256': file_sha256(path / WEIGHTS)}
    (path / METADATA).write_text(json.dumps(meta))


def with_vocab(ids: list[int]) -> Projector:
    p = projector()
    p.vocab_ids = torch.tensor(ids, dtype=torch.long)
    return p


@pytest.mark.parametrize('name,change,match', [
    ('nan', lambda t: {k: (v * float('nan') if v.is_floating_point() else v) for k, v in t.items()}, 'NaN'),
    ('inf', lambda t: {k: (v.fill_(float('inf')) if k == 'logit_scale' else v) for k, v in t.items()},
     'NaN/Inf'),
    ('integer', lambda t: {k: (v.to(torch.int32) if v.is_floating_point() else v) for k, v in t.items()},
     'expected floating point'),
    ('float-vocab', lambda t: {**t, 'vocab_ids': torch.tensor([1.5, 2.0])}, 'integer'),
    ('negative-vocab', lambda t: {**t, 'vocab_ids': torch.tensor([3, -7, 2])}, 'negative'),
])
def test_broken_weights_are_refused_at_load(tmp_path: Path, name: str, change: Any, match: str) -> None:
    path = save_adapter(tmp_path / name, with_vocab([1, 2, 3]), {})
    rewrite_weights(path, change)
    with pytest.raises(AdapterError, match=match):
        load_adapter(path)


def test_a_vocabulary_outside_the_llm_is_an_adapter_error(tmp_path: Path) -> None:
    path = save_adapter(tmp_path / 'a', with_vocab([1, 2, 50]), {})
    load_adapter(path)  # fine on its own
    with pytest.raises(AdapterError, match='only 10 tokens'):
        load_adapter(path, embedding_matrix=torch.randn(10, 8))


@pytest.mark.parametrize('config', [[1, 2], 'linear', None, 7])
def test_a_projector_config_that_is_not_an_object_is_an_adapter_error(tmp_path: Path, config: Any) -> None:
    path = save_adapter(tmp_path / 'a', projector(), {})
    meta = json.loads((path / METADATA).read_text())
    meta['projector']['config'] = config
    (path / METADATA).write_text(json.dumps(meta))
    with pytest.raises(AdapterError, match='projector'):
        load_adapter(path)
    meta['projector'] = config
    (path / METADATA).write_text(json.dumps(meta))
    with pytest.raises(AdapterError, match='projector'):
        load_adapter(path)


@pytest.mark.parametrize('damage', ['truncate', 'flip'])
def test_damaged_weights_of_the_active_adapter_are_detected_and_repaired(store: AdapterStore, damage: str) -> None:
    store.add('ann', projector(), {'created': '2024-01-01T00:00:00'}, adapter_id='older')
    store.add('ann', projector(1), {'created': '2024-01-02T00:00:00'}, adapter_id='active')
    weights = store.version_path('ann', 'active') / WEIGHTS
    data = bytearray(weights.read_bytes())
    if damage == 'truncate':
        data = data[: len(data) - 100]
    else:  # same size, one weight byte changed: only the checksum sees it
        data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(AdapterError, match='truncated' if damage == 'truncate' else 'SHA-256'):
        load_adapter(weights.parent)
    reopened = AdapterStore(store.root)
    assert reopened.active('ann').adapter_id == 'older'  # the pointer falls back to a whole adapter
    assert [v.adapter_id for v in reopened.versions('ann')] == ['older']
    load_adapter(reopened.active('ann').path)


def test_adapters_written_before_checksums_still_load_but_truncation_is_caught(tmp_path: Path) -> None:
    path = save_adapter(tmp_path / 'legacy', projector(), {})
    meta = json.loads((path / METADATA).read_text())
    del meta['weights']
    (path / METADATA).write_text(json.dumps(meta))
    load_adapter(path)
    (path / WEIGHTS).write_bytes((path / WEIGHTS).read_bytes()[:-1])
    with pytest.raises(AdapterError, match='truncated'):
        load_adapter(path)


def test_a_version_folder_that_is_a_symlink_out_of_the_store_is_refused(store: AdapterStore, tmp_path: Path) -> None:
    store.add('ann', projector(), {}, adapter_id='own')
    outside = save_adapter(tmp_path / 'elsewhere' / 'foreign', projector(3), {})
    (store.versions_dir('ann') / 'foreign').symlink_to(outside, target_is_directory=True)
    with pytest.raises(KeyError):
        store.activate('ann', 'foreign')
    assert [v.adapter_id for v in store.versions('ann')] == ['own']
    assert store.active('ann').adapter_id == 'own'
    assert not (store.versions_dir('ann') / 'foreign').exists()  # the link is removed ...
    load_adapter(outside)  # ... and what it pointed at is untouched


def test_a_weights_file_that_is_a_symlink_is_refused(store: AdapterStore, tmp_path: Path) -> None:
    store.add('ann', projector(), {'created': '2024-01-01T00:00:00'}, adapter_id='own')
    store.add('ann', projector(1), {'created': '2024-01-02T00:00:00'}, adapter_id='linked')
    other = save_adapter(tmp_path / 'other', projector(1), {})
    weights = store.version_path('ann', 'linked') / WEIGHTS
    weights.unlink()
    weights.symlink_to(other / WEIGHTS)
    assert [v.adapter_id for v in AdapterStore(store.root).versions('ann')] == ['own']


# ------------------------------------------------------------------ 9: absurd float audio


@pytest.mark.parametrize('peak', [1e30, 1e6, 3e3])
def test_absurd_float_amplitudes_are_refused(peak: float) -> None:
    samples = tone(0.2)
    samples[100] = peak
    with pytest.raises(AmplitudeError, match='within \\[-1, 1\\]'):
        validate(samples)
    with pytest.raises(AmplitudeError):
        pcm_to_float(samples.astype('<f4').tobytes(), 'F32LE')
    with pytest.raises(AmplitudeError):
        validate(np.array([0.1, 1e300]))  # finite in float64, Inf once cast to float32


def test_loud_but_real_float_audio_passes() -> None:
    samples = tone(0.2, amplitude=1.5)  # overshoot from float processing: still a signal
    assert validate(samples).dtype == np.float32
    assert pcm_to_float(samples.astype('<f4').tobytes(), 'F32LE').shape == samples.shape
    with pytest.raises(NonFiniteAudioError):
        validate(np.array([0.0, np.nan], np.float32))


def test_an_absurd_float_wav_is_refused_when_loaded(tmp_path: Path) -> None:
    samples = tone(0.2)
    samples[10] = 1e30
    sf.write(tmp_path / 'loud.wav', samples, 16000, subtype='FLOAT')
    with pytest.raises(AmplitudeError):
        load_audio(tmp_path / 'loud.wav')


# ------------------------------------------------------------------ 5: bad input files are skipped


def folder_with_bad_files(folder: Path) -> Path:
    wavs = folder / 'wavs'
    wavs.mkdir(parents=True)
    for i in range(3):
        sf.write(wavs / f'good{i}.wav', tone(0.3 + 0.1 * i), 16000, subtype='PCM_16')
    (wavs / 'noise.wav').write_bytes(b'this is not audio at all' * 20)
    (wavs / 'empty.wav').write_bytes(b'')
    sf.write(wavs / 'silent.wav', np.zeros(0, np.float32), 16000, subtype='PCM_16')
    lines = [{'id': f'good{i}', 'audio': f'wavs/good{i}.wav', 'text': f'good {i}'} for i in range(3)]
    lines += [{'id': 'noise', 'audio': 'wavs/noise.wav', 'text': 'noise'},
              {'id': 'empty', 'audio': 'wavs/empty.wav', 'text': 'empty'},
              {'id': 'silent', 'audio': 'wavs/silent.wav', 'text': 'silent'},
              {'id': 'gone', 'audio': 'wavs/gone.wav', 'text': 'missing file'},
              {'id': 'badtext', 'audio': 'wavs/good0.wav', 'text': 42}]
    text = '\n'.join(json.dumps(line) for line in lines) + '\n{not json\n'
    (folder / 'manifest.jsonl').write_text(text)
    return folder


def test_one_bad_file_does_not_fail_the_folder(tmp_path: Path) -> None:
    folder = folder_with_bad_files(tmp_path / 'data')
    with pytest.raises(DatasetError):  # strict by default: training sets must be what they claim
        load_dataset(folder)
    skipped: list[str] = []
    recordings = recordings_from_folder(folder, skipped=skipped)
    assert [r.id for r in recordings] == ['good0', 'good1', 'good2']
    assert len(skipped) == 6, skipped
    joined = '\n'.join(skipped)
    for what in ('noise', 'empty', 'silent', 'gone.wav', '"text" must be a string', 'malformed JSON'):
        assert what in joined, (what, skipped)


def test_a_folder_of_only_bad_files_says_why(tmp_path: Path) -> None:
    folder = tmp_path / 'data'
    folder.mkdir()
    (folder / 'manifest.jsonl').write_text(json.dumps({'id': 'x', 'audio': 'gone.wav', 'text': 'x'}) + '\n')
    with pytest.raises(DatasetError, match='no usable items.*gone.wav'):
        load_dataset(folder, [])
    (folder / 'manifest.jsonl').write_bytes(b'\xff\xfe\x00 not utf-8')
    with pytest.raises(DatasetError, match='UTF-8'):
        load_dataset(folder)


# ------------------------------------------------------------------ 6: a full disk


def full_disk_after(monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    """Make the kernel's write() fail with ENOSPC once ``budget`` bytes were written (a full device)."""
    real_write = os.write
    left = [budget]

    def write(fd: int, data: Any) -> int:
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, 'No space left on device')
        n = real_write(fd, bytes(data)[: left[0]])
        left[0] -= n
        return n

    monkeypatch.setattr(os, 'write', write)


def test_a_full_disk_while_saving_recordings_says_so_and_where(store: AdapterStore,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store.save_recordings('ann', [Recording(tone(0.4), 'kept before')], 's0')
    full_disk_after(monkeypatch, 20000)  # the first recording's files fit, the second's wav does not
    with pytest.raises(OSError) as raised:
        store.save_recordings('ann', [Recording(tone(), 'one'), Recording(tone(0.7), 'two')], 's1')
    monkeypatch.undo()
    message = str(raised.value)
    assert raised.value.errno == errno.ENOSPC
    assert 'the disk is full' in message and str(store.recordings_dir('ann') / 'wavs') in message, message
    assert 'MB free' in message and '1 recording(s) of this run saved' in message, message
    assert 'System error' not in message
    kept = AdapterStore(store.root).recordings('ann')
    assert sorted(i.text for i in kept) == ['kept before', 'one']  # nothing lost, nothing half-written
    wavs = sorted(p.name for p in (store.recordings_dir('ann') / 'wavs').iterdir())
    assert wavs == ['s0-0000.wav', 's1-0000.json', 's1-0000.wav'], wavs  # no temp file, no lone transcript


# ------------------------------------------------------------------ 7: debris after a crash


def test_recordings_written_before_a_crash_keep_their_transcripts(store: AdapterStore,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store.save_recordings('ann', [Recording(tone(), 'first session')], 's0')

    def killed(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt  # the process dies between the recordings and their manifest

    monkeypatch.setattr(store_module, 'write_manifest', killed)
    with pytest.raises(KeyboardInterrupt):
        store.save_recordings('ann', [Recording(tone(0.6), 'please turn left', 'enroll1', {'source': 'record'}),
                                      Recording(tone(0.7), 'stop right there', '', {'source': 'record'})], 's1')
    monkeypatch.undo()
    kept = AdapterStore(store.root).recordings('ann')
    assert sorted((i.id, i.text) for i in kept) == [
        ('enroll1', 'please turn left'), ('s0-0000', 'first session'), ('s1-0001', 'stop right there')]
    assert all(i.meta.get('source') in (None, 'record') and Path(i.audio).is_file() for i in kept)
    # The next save writes them into the manifest and drops the side files.
    store.save_recordings('ann', [Recording(tone(0.8), 'third')], 's2')
    wavs = store.recordings_dir('ann') / 'wavs'
    assert sorted(p.suffix for p in wavs.iterdir()) == ['.wav'] * 4
    assert len(load_dataset(store.recordings_dir('ann'))) == 4


def test_temporary_files_are_cleaned_when_the_store_is_opened(store: AdapterStore) -> None:
    store.add('ann', projector(), {}, adapter_id='v1')
    store.save_recordings('ann', [Recording(tone(), 'hello')], 's0')
    operator = store.operator_dir('ann')
    debris = [operator / '.state.json.abc123.tmp', operator / 'recordings' / '.manifest.jsonl.x1y2.tmp',
              operator / 'recordings' / 'wavs' / '.s1-0000.k3j4.wav',
              operator / 'recordings' / 'wavs' / '.s1-0000.json.tmp',
              operator / 'versions' / 'v1' / '.personalization.png.tmp.png']
    for path in debris:
        path.write_bytes(b'partial')
    runs = store.root / '.work' / 'runs' / 'ann-s1'
    runs.mkdir(parents=True)
    debris += [runs / '.personalization.png.tmp.png', runs / '.run.json.q1w2.tmp']
    for path in debris[-2:]:
        path.write_bytes(b'partial')
    old = time.time() - 3600
    for path in (operator / 'versions' / 'v1' / '.personalization.png.tmp.png', *debris[-2:]):
        os.utime(path, (old, old))
    fresh_plot = operator / 'versions' / 'v1' / '.other.png.tmp.png'  # maybe a plot being written right now
    fresh_plot.write_bytes(b'partial')
    AdapterStore(store.root)
    assert [p for p in debris if p.exists()] == []
    assert fresh_plot.exists()
    assert AdapterStore(store.root).active('ann').adapter_id == 'v1' and len(store.recordings('ann')) == 1


# ------------------------------------------------------------------ 11: fsync before publishing


class FsyncLog:
    """Records fsyncs (by path) and renames, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str, str]] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            self.events.append(('fsync', os.readlink(f'/proc/self/fd/{fd}'), ''))
            real_fsync(fd)

        def replace(src: Any, dst: Any) -> None:
            real_replace(src, dst)
            self.events.append(('replace', os.path.abspath(src), os.path.abspath(dst)))

        monkeypatch.setattr(os, 'fsync', fsync)
        monkeypatch.setattr(os, 'replace', replace)

    def check_published(self, name: str) -> None:
        """
        Check that the last rename onto a file called ``name`` was made durable.

        It was preceded by an fsync of its source and followed by an fsync of the destination's folder.
        """
        renames = [i for i, e in enumerate(self.events) if e[0] == 'replace' and Path(e[2]).name == name]
        assert renames, f'{name} was never renamed into place: {self.events}'
        i = renames[-1]
        _kind, src, dst = self.events[i]
        synced_before = {e[1] for e in self.events[:i] if e[0] == 'fsync'}
        assert src in synced_before or any(s.startswith(src + os.sep) for s in synced_before), \
            f'{name}: {src} was not fsynced before its rename'
        if Path(src).is_dir() or Path(dst).is_dir():
            assert str(Path(dst) / WEIGHTS) in synced_before or any(s.startswith(src + os.sep) for s in synced_before)
        assert str(Path(dst).parent) in {e[1] for e in self.events[i + 1:] if e[0] == 'fsync'}, \
            f'{name}: the folder {Path(dst).parent} was not fsynced after the rename'


def test_everything_published_is_fsynced_before_and_after_its_rename(store: AdapterStore,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    log = FsyncLog(monkeypatch)
    store.save_recordings('ann', [Recording(tone(), 'hello', 'utt1')], 's1')
    store.add('ann', projector(), {}, adapter_id='v1')
    log.check_published('utt1.wav')
    log.check_published('manifest.jsonl')
    log.check_published('v1')
    log.check_published('state.json')
    synced = {e[1] for e in log.events if e[0] == 'fsync'}
    assert any(s.endswith(WEIGHTS) for s in synced) and any(s.endswith(METADATA) for s in synced)


def test_write_manifest_is_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wav = tmp_path / 'a.wav'
    sf.write(wav, tone(), 16000)
    log = FsyncLog(monkeypatch)
    write_manifest([Item('a', wav, 'hi')], tmp_path / 'manifest.jsonl')
    log.check_published('manifest.jsonl')


def test_write_json_replaces_a_file_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A benchmark killed (or out of disk) while writing its results leaves the previous results."""
    path = tmp_path / 'docs' / 'benchmarks' / 'latency.json'
    durable.write_json(path, {'rows': [1, 2]})
    assert json.loads(path.read_text()) == {'rows': [1, 2]}

    def full(_path: Any, _data: bytes) -> None:
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(durable, 'write_bytes', full)
    with pytest.raises(OSError):
        durable.write_json(path, {'rows': [3]})
    assert json.loads(path.read_text()) == {'rows': [1, 2]}
    assert sorted(p.name for p in path.parent.iterdir()) == ['latency.json']
