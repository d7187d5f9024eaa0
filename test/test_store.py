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
The per-operator adapter store.

Versions, the active pointer, rollback, modes, recordings, and what is left after a save is interrupted (a
process killed mid-save, a damaged folder, a dangling pointer). No models are needed: adapters here are tiny
untrained projectors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import soundfile as sf
from tinyalign_ros.adapter import load_adapter, save_adapter
from tinyalign_ros.personalization.api import AdapterStore as StoreProtocol
from tinyalign_ros.personalization.api import OperatorIdError
from tinyalign_ros.personalization.store import (AdapterStore, default_store_root, is_complete_adapter, Recording,
                                                 STATE_NAME)
from tinyalign_ros.projector import build_projector, Projector, ProjectorConfig
import torch

SRC = Path(__file__).resolve().parents[1] / 'src'
TINY = {'encoder_dim': 8, 'llm_dim': 8, 'd_model': 8, 'n_layers': 1, 'n_heads': 2, 'ff_dim': 16, 'reduce_factor': 2}


def projector(seed: int = 0) -> Projector:
    torch.manual_seed(seed)
    return build_projector(ProjectorConfig(**TINY))


def add(store: AdapterStore, operator: str, name: str, activate: bool = True, **kwargs) -> str:
    meta = {'created': f'2024-01-01T00:00:{len(store.versions(operator)):02d}',
            'personalization': {'after': {'wer_nearest': 0.1 * len(name)}}}
    return store.add(operator, projector(), meta, activate=activate, adapter_id=name, **kwargs).adapter_id


@pytest.fixture()
def store(tmp_path: Path) -> AdapterStore:
    return AdapterStore(tmp_path / 'store', keep=3)


def test_default_root_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv('XDG_DATA_HOME', str(tmp_path / 'xdg'))
    assert default_store_root() == tmp_path / 'xdg' / 'tinyalign_ros' / 'operators'
    monkeypatch.delenv('XDG_DATA_HOME')
    assert default_store_root() == Path.home() / '.local' / 'share' / 'tinyalign_ros' / 'operators'


def test_implements_the_node_protocol(store: AdapterStore) -> None:
    assert isinstance(store, StoreProtocol)


def test_add_activate_rollback_list(store: AdapterStore) -> None:
    assert store.active('ann') is None and store.versions('ann') == [] and store.mode('ann') == 'aligned'
    assert store.operators() == []  # reading an unknown operator creates nothing
    a = add(store, 'ann', 'a1')
    b = add(store, 'ann', 'b22')
    assert store.active('ann').adapter_id == b
    versions = store.versions('ann')
    assert [v.adapter_id for v in versions] == [a, b] and [v.active for v in versions] == [False, True]
    assert versions[1].metrics == {'wer_nearest': pytest.approx(0.3)}
    assert Path(versions[0].path) == store.version_path('ann', a) and is_complete_adapter(Path(versions[0].path))
    assert store.activate('ann', a).adapter_id == a and store.active('ann').adapter_id == a
    assert store.rollback('ann').adapter_id == b  # back to the one active before
    assert store.rollback('ann').adapter_id == a
    assert store.rollback('ann') is None  # back to the base adapter
    assert store.rollback('ann') is None
    with pytest.raises(KeyError, match='nope'):
        store.activate('ann', 'nope')
    assert store.operators() == ['ann']
    state = json.loads((store.operator_dir('ann') / STATE_NAME).read_text())
    assert state['active'] is None and state['history'] == []


def test_inactive_add_does_not_switch(store: AdapterStore) -> None:
    a = add(store, 'ann', 'a1')
    add(store, 'ann', 'b1', activate=False)
    assert store.active('ann').adapter_id == a and len(store.versions('ann')) == 2


def test_keeps_the_last_n_but_never_the_active_one(store: AdapterStore) -> None:
    first = add(store, 'ann', 'v0')
    for i in range(1, 4):
        add(store, 'ann', f'v{i}', activate=False)
    assert [v.adapter_id for v in store.versions('ann')] == ['v0', 'v2', 'v3']  # v1 pruned, v0 active
    assert store.active('ann').adapter_id == first
    add(store, 'ann', 'v4')
    assert [v.adapter_id for v in store.versions('ann')] == ['v2', 'v3', 'v4']
    assert not store.version_path('ann', 'v0').exists()
    assert store.rollback('ann') is None  # v0 was pruned once it stopped being active


def test_modes_follow_the_active_adapter(store: AdapterStore) -> None:
    store.set_mode('ann', 'cascade', {'aligned': 0.4, 'cascade': 0.1})  # decided for the base adapter
    assert store.mode('ann') == 'cascade' and store.mode_numbers('ann')['cascade'] == 0.1
    add(store, 'ann', 'good', mode='aligned', mode_numbers={'aligned': 0.05, 'cascade': 0.1})
    assert store.mode('ann') == 'aligned' and store.mode_numbers('ann')['aligned'] == 0.05
    assert store.rollback('ann') is None and store.mode('ann') == 'cascade'
    with pytest.raises(ValueError, match='mode'):
        store.set_mode('ann', 'telepathy')


@pytest.mark.parametrize('bad', ['../evil', 'a/b', '..', '.hidden', 'a b', 'x' * 65, '', 'semi;colon', 'ü', 'a\\b'])
def test_operator_ids_that_escape_or_look_odd_are_refused(store: AdapterStore, bad: str) -> None:
    for call in (lambda: store.active(bad), lambda: store.versions(bad), lambda: store.rollback(bad),
                 lambda: store.activate(bad, 'x'), lambda: store.mode(bad), lambda: store.recordings_dir(bad),
                 lambda: store.add(bad, projector(), {})):
        with pytest.raises(OperatorIdError):
            call()
    assert list(store.root.iterdir()) == []
    assert not (store.root.parent / 'evil').exists()


def test_bad_adapter_ids_are_refused(store: AdapterStore) -> None:
    with pytest.raises(ValueError, match='adapter id'):
        store.add('ann', projector(), {}, adapter_id='../../x')
    with pytest.raises(KeyError):  # never used as a path: it is simply not a kept version
        store.activate('ann', '../x')


# ------------------------------------------------------------------ recovery


def test_incomplete_version_folders_are_ignored_and_cleaned(store: AdapterStore) -> None:
    good = add(store, 'ann', 'good')
    versions = store.versions_dir('ann')
    (versions / 'half').mkdir()
    save_adapter(versions / 'weights_only', projector(), {})
    (versions / 'weights_only' / 'adapter.json').unlink()
    (versions / '.tmp-killed').mkdir()
    (versions / '.tmp-killed' / 'adapter.safetensors').write_bytes(b'\0' * 10)
    save_adapter(versions / 'garbled', projector(), {})
    (versions / 'garbled' / 'adapter.json').write_text('{not json')
    assert [v.adapter_id for v in store.versions('ann')] == [good]
    assert sorted(p.name for p in versions.iterdir()) == [good]
    with pytest.raises(KeyError):
        store.activate('ann', 'half')


def test_a_pointer_to_a_missing_version_falls_back_to_the_newest_complete_one(store: AdapterStore) -> None:
    add(store, 'ann', 'old')
    add(store, 'ann', 'new')
    add(store, 'ann', 'gone')
    import shutil
    shutil.rmtree(store.version_path('ann', 'gone'))
    active = store.active('ann')
    assert active.adapter_id == 'new'
    assert json.loads((store.operator_dir('ann') / STATE_NAME).read_text())['active'] == 'new'
    load_adapter(active.path)


def test_a_damaged_state_file_falls_back_to_the_newest_complete_one(store: AdapterStore) -> None:
    add(store, 'ann', 'a')
    add(store, 'ann', 'b')
    store.activate('ann', 'a')
    (store.operator_dir('ann') / STATE_NAME).write_text('{"active": ')
    assert store.active('ann').adapter_id == 'b'


KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {src!r})
    import torch
    from tinyalign_ros import adapter
    from tinyalign_ros.projector import ProjectorConfig, build_projector
    from tinyalign_ros.personalization.store import AdapterStore

    real = adapter.save_file

    def dying(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        with open(filename, 'r+b') as f:   # half of the weights are on disk...
            f.truncate(os.path.getsize(filename) // 2)
        os.kill(os.getpid(), signal.SIGKILL)  # ...when the power goes

    adapter.save_file = dying
    store = AdapterStore({root!r}, keep=3)
    store.add('ann', build_projector(ProjectorConfig(**{tiny!r})), {{}}, adapter_id='doomed')
    print('survived')
""")


def test_a_process_killed_during_save_leaves_the_store_consistent(store: AdapterStore) -> None:
    previous = add(store, 'ann', 'previous')
    script = KILLER.format(src=str(SRC), root=str(store.root), tiny=TINY)
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert done.returncode == -9, done.stderr  # really killed, not a clean exit
    assert 'survived' not in done.stdout
    leftovers = [p.name for p in store.versions_dir('ann').iterdir()]
    assert any(name.startswith('.doomed.tmp-') for name in leftovers), leftovers  # the crash left debris
    reopened = AdapterStore(store.root, keep=3)
    assert reopened.active('ann').adapter_id == previous
    assert [v.adapter_id for v in reopened.versions('ann')] == [previous]
    assert [p.name for p in reopened.versions_dir('ann').iterdir()] == [previous]  # debris cleaned
    load_adapter(reopened.active('ann').path)
    assert reopened.add('ann', projector(), {}, adapter_id='doomed').adapter_id == 'doomed'  # the id is free again


def test_concurrent_adds_keep_the_state_whole(store: AdapterStore) -> None:
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            store.add('ann', projector(k), {}, adapter_id=f'v{k}')
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    state = json.loads((store.operator_dir('ann') / STATE_NAME).read_text())
    kept = {v.adapter_id for v in store.versions('ann')}
    assert len(kept) == 3 and state['active'] in kept and set(state['history']) <= kept


# ------------------------------------------------------------------ recordings


def test_recordings_are_saved_as_wavs_with_a_manifest_and_not_duplicated(store: AdapterStore) -> None:
    tone = (0.1 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    noise = np.random.default_rng(0).uniform(-0.1, 0.1, 8000).astype(np.float32)
    items = store.save_recordings('ann', [Recording(tone, 'a tone', 'utt1', {'source': 'folder'}),
                                          Recording(noise, None, '', {'source': 'record'})], session='s1')
    assert [i.id for i in items] == ['utt1', 's1-0001']
    data, rate = sf.read(items[0].audio, dtype='float32')
    assert rate == 16000 and np.allclose(data, tone, atol=1e-4)
    kept = store.recordings('ann')
    assert [(i.id, i.text, i.meta['source']) for i in kept] == \
        [('utt1', 'a tone', 'folder'), ('s1-0001', None, 'record')]
    # The same speech again (same id, same samples) is reused; a later transcript replaces a missing one.
    again = store.save_recordings('ann', [Recording(tone, 'a tone', 'utt1'),
                                          Recording(noise, 'labeled later', '', {'trust': 'pseudo'})], session='s2')
    assert [i.id for i in again] == ['utt1', 's1-0001']
    kept = store.recordings('ann')
    assert len(kept) == 2 and kept[1].text == 'labeled later' and kept[1].meta['trust'] == 'pseudo'
    # Same id, other samples: kept as a new recording under a new id.
    other = store.save_recordings('ann', [Recording(noise[::-1].copy(), 'other', 'utt1')], session='s3')
    assert other[0].id == 'utt1-s3' and len(store.recordings('ann')) == 3
    assert sorted(p.name for p in (store.recordings_dir('ann') / 'wavs').iterdir()) == \
        ['s1-0001.wav', 'utt1-s3.wav', 'utt1.wav']
