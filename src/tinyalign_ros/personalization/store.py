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
The per-operator adapter store: versions, an atomically switched active pointer, recordings.

Layout under the store root (default ``$XDG_DATA_HOME/tinyalign_ros/operators``)::

    <root>/<operator>/versions/<adapter_id>/   adapter folders (adapter.safetensors + adapter.json)
    <root>/<operator>/state.json              active id, previously active ids, per-adapter mode
    <root>/<operator>/recordings/             the operator's speech (wavs/ + manifest.jsonl)

Why it is built this way:

- A robot can lose power at any moment. Adapters are written by :func:`save_adapter` under a
  temporary name and renamed into place, and ``state.json`` is replaced atomically (temporary file,
  fsync, ``os.replace``) only *after* the adapter folder is complete, so a reader sees either the
  old state or the new one, never a pointer to half an adapter.
- What a crash may still leave (a temporary folder, a version folder someone truncated, a state
  naming a version that was deleted by hand) is repaired on the next access: incomplete folders
  are ignored and removed, and a dangling pointer falls back to the newest complete version.
- Operator speech is saved before any training starts, so no failure later loses it. Each
  recording is written with its transcript beside it (``wavs/<id>.json``) before the manifest is
  rewritten, so a crash between the two leaves a recording the next read adopts, not an orphan.
- Everything published (wavs, manifests, weights, ``state.json``) is fsynced before the rename
  that publishes it and its folder after it (:mod:`tinyalign_ros.durable`): a power loss, not
  only a kill, leaves the old file or the new one.
- A cancel is decided at one point: :meth:`AdapterStore.add` and :meth:`AdapterStore.set_mode`
  take the job's cancel event and look at it under the operator's lock, right before the state
  write that switches the active adapter. Set before that point, nothing changes
  (:class:`SaveCancelled`); after it, the switch has happened and the cancel is too late.
- Nothing in the store may be a symlink (a version folder linked to elsewhere would be listed and
  activated as the operator's); adapter weights are checked against the size and SHA-256 in their
  metadata, so a truncated active adapter is repaired like a missing one.
- Operator ids become folder names, so they are checked by
  :func:`~tinyalign_ros.personalization.api.validate_operator_id` before any path is built.
- The mode ('aligned' or 'cascade') is stored per (operator, adapter): it says whether *that*
  adapter beat Whisper's own transcription on the operator's held-out speech, so a rollback also
  restores the matching mode.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import contextlib
from dataclasses import dataclass, field
import fcntl
import hashlib
import io
import json
import logging
import os
from pathlib import Path
import shutil
import tempfile
import threading
import time
from typing import Any

import numpy as np
import soundfile as sf

from .api import AdapterVersion, validate_operator_id
from ..adapter import AdapterError, METADATA, new_adapter_id, read_metadata, save_adapter, WEIGHTS, weights_problem
from ..data import check_id, Item, MANIFEST_NAME, write_manifest
from ..durable import disk_full_message, fsync_dir, is_disk_full, publish, write_bytes
from ..projector import Projector
from ..routing import FIXED_MODES

log = logging.getLogger(__name__)

STATE_NAME = 'state.json'
VERSIONS_DIR = 'versions'
RECORDINGS_DIR = 'recordings'
BASE_KEY = ''  # the mode entry for "no personal adapter" (the base adapter)
STATE_FORMAT = 1


class StoreError(RuntimeError):
    """The store folder cannot be used (not writable, damaged beyond repair, full)."""


class SaveCancelled(StoreError):
    """The cancel event was set before the active adapter was switched: nothing was changed."""


# Debris a killed writer leaves (temporary files are always hidden names): removed when the store
# is opened and on every repair, under the operator's lock so no writer of this store is racing.
_TEMP_PATTERNS = (f'.{STATE_NAME}.*.tmp', f'{RECORDINGS_DIR}/.{MANIFEST_NAME}.*.tmp', f'{RECORDINGS_DIR}/wavs/.*.wav',
                  f'{RECORDINGS_DIR}/wavs/.*.json.tmp', f'{VERSIONS_DIR}/*/.*.tmp.png')
_PLOT_GRACE_S = 600.0


def default_store_root() -> Path:
    """``$XDG_DATA_HOME/tinyalign_ros/operators`` (``~/.local/share`` when XDG_DATA_HOME is unset)."""
    base = os.environ.get('XDG_DATA_HOME') or str(Path.home() / '.local' / 'share')
    return Path(base) / 'tinyalign_ros' / 'operators'


def write_json_atomic(path: Path, data: Any) -> None:
    """
    Write JSON so that readers see the old file or the complete new one, even after a power loss.

    The steps are tmp + fsync + replace + fsync of the folder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(exc):
            raise OSError(exc.errno, f'{disk_full_message(path.parent, path.name)} ({exc.strerror})') from exc
        raise
    fsync_dir(path.parent)


# Checksums already verified, by (path, size, mtime, inode): the store lists its versions on every
# access, and hashing every kept adapter each time would cost more than the access itself.
_VERIFIED: dict[tuple[str, int, int, int], bool] = {}
_VERIFIED_LOCK = threading.Lock()


def _weights_ok(path: Path, meta: dict[str, Any]) -> bool:
    file = path / WEIGHTS
    try:
        st = file.lstat()
    except OSError:
        return False
    key = (str(file), st.st_size, st.st_mtime_ns, st.st_ino)
    with _VERIFIED_LOCK:
        known = _VERIFIED.get(key)
    if known is None:
        try:
            problem = weights_problem(path, meta)
        except OSError as exc:  # unreadable right now: not usable, but not remembered as damaged either
            log.warning('cannot read the weights of %s: %s', path, exc)
            return False
        if problem is not None:
            log.warning('adapter %s is damaged: %s', path, problem)
        known = problem is None
        with _VERIFIED_LOCK:
            if len(_VERIFIED) > 4096:
                _VERIFIED.clear()
            _VERIFIED[key] = known
    return known


def is_complete_adapter(path: Path) -> bool:
    """
    Tell whether a version folder is one a loader may use.

    That is a real folder (no symlink) with both files, readable metadata and weights that match the size and
    checksum recorded in it.
    """
    if path.is_symlink() or not path.is_dir():
        return False
    if any((path / name).is_symlink() or not (path / name).is_file() for name in (WEIGHTS, METADATA)):
        return False
    try:
        meta = read_metadata(path)
    except AdapterError:
        return False
    return _weights_ok(path, meta)


@dataclass
class Recording:
    """One utterance to keep: samples (float32 mono 16 kHz), transcript and where it came from."""

    audio: np.ndarray
    text: str | None
    id: str = ''  # noqa: A003 - the manifest's field name; '' = the store names it
    meta: dict[str, Any] = field(default_factory=dict)


class AdapterStore:
    """
    Per-operator adapter versions on disk; implements the node's ``AdapterStore`` Protocol.

    ``keep`` is how many versions are kept per operator (the active one is never deleted, even
    when it is older than the last ``keep``). Safe to use from several threads, and from several
    processes (the CLI next to the node): state changes hold a per-operator file lock.
    """

    def __init__(self, root: str | Path | None = None, keep: int = 5) -> None:
        if keep < 1:
            raise ValueError(f'keep must be >= 1 (versions kept per operator), got {keep}')
        self.root = Path(root).expanduser() if root is not None else default_store_root()
        self.keep = keep
        self._lock = threading.RLock()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f'cannot create the adapter store folder {self.root}: {exc}') from exc
        for operator_id in self.operators():
            with contextlib.suppress(OSError), self._locked(operator_id):
                self._sweep(operator_id)
        self._sweep_runs()

    # -- paths ------------------------------------------------------------------------------------
    def operator_dir(self, operator_id: str) -> Path:
        return self.root / validate_operator_id(operator_id)

    def versions_dir(self, operator_id: str) -> Path:
        return self.operator_dir(operator_id) / VERSIONS_DIR

    def recordings_dir(self, operator_id: str) -> Path:
        return self.operator_dir(operator_id) / RECORDINGS_DIR

    def version_path(self, operator_id: str, adapter_id: str) -> Path:
        folder = self.versions_dir(operator_id)
        return folder / check_id(adapter_id, 'adapter id')

    @contextlib.contextmanager
    def _locked(self, operator_id: str, create: bool = False) -> Iterator[Path]:
        """Hold the operator's lock; reads of an unknown operator create nothing on disk."""
        folder = self.operator_dir(operator_id)
        if not create and not folder.is_dir():
            with self._lock:
                yield folder
            return
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock, open(folder / '.lock', 'a+') as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield folder
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- state ------------------------------------------------------------------------------------
    def _read_state(self, operator_id: str) -> dict[str, Any]:
        path = self.operator_dir(operator_id) / STATE_NAME
        state: dict[str, Any] = {}
        if path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding='utf-8'))
                state = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                log.warning('damaged %s: starting from the newest complete version', path)
                state = {'active': self._newest_id(operator_id)}
        history = state.get('history')
        modes = state.get('modes')
        return {'format': STATE_FORMAT,
                'active': state.get('active') if isinstance(state.get('active'), str) else None,
                'history': [h for h in history if isinstance(h, str)] if isinstance(history, list) else [],
                'modes': modes if isinstance(modes, dict) else {},
                'updated': state.get('updated', '')}

    def _write_state(self, operator_id: str, state: dict[str, Any]) -> None:
        state = dict(state, updated=time.strftime('%Y-%m-%dT%H:%M:%S%z'))
        write_json_atomic(self.operator_dir(operator_id) / STATE_NAME, state)

    def state(self, operator_id: str) -> dict[str, Any]:
        """Return the repaired state as stored, for reports: active id, history and modes."""
        with self._locked(operator_id):
            return self._repair(operator_id)

    def _versions_folder(self, operator_id: str) -> Path | None:
        """Return the versions folder, or None when it is missing or (refused) a symlink."""
        folder = self.versions_dir(operator_id)
        if folder.is_symlink() or self.operator_dir(operator_id).is_symlink():
            log.warning('ignoring %s: symlinks are not allowed in the adapter store', folder)
            return None
        return folder if folder.is_dir() else None

    def _complete_ids(self, operator_id: str) -> list[str]:
        """Ids of complete version folders, oldest first (by creation time, then id)."""
        folder = self._versions_folder(operator_id)
        if folder is None:
            return []
        found = []
        for path in folder.iterdir():
            if path.name.startswith('.') or path.is_symlink() or not is_complete_adapter(path):
                continue
            found.append((str(read_metadata(path).get('created', '')), path.name))
        return [name for _created, name in sorted(found)]

    def _newest_id(self, operator_id: str) -> str | None:
        ids = self._complete_ids(operator_id)
        return ids[-1] if ids else None

    def _clean(self, operator_id: str) -> None:
        """
        Remove what a killed save leaves: temporary folders and incomplete version folders.

        Only called with the operator's lock held, and saves hold it too, so nothing removed here
        can belong to a save in progress.
        """
        self._sweep(operator_id)
        folder = self._versions_folder(operator_id)
        if folder is None:
            return
        for path in folder.iterdir():
            if path.is_symlink():
                log.warning('removing the symlink %s: versions must be folders inside the store', path)
                path.unlink(missing_ok=True)  # the link only, never what it points at
                continue
            if not path.is_dir():
                continue
            if path.name.startswith('.') or not is_complete_adapter(path):
                log.warning('removing incomplete adapter folder %s (left by an interrupted save)', path)
                shutil.rmtree(path, ignore_errors=True)

    def _sweep(self, operator_id: str) -> None:
        """Delete the temporary files a killed writer left (the caller holds the operator's lock)."""
        folder = self.operator_dir(operator_id)
        if folder.is_symlink() or not folder.is_dir():
            return
        for pattern in _TEMP_PATTERNS:
            for tmp in folder.glob(pattern):
                # A plot is written outside the lock: only one older than a running save can take is debris.
                if pattern.endswith('.png') and time.time() - tmp.lstat().st_mtime < _PLOT_GRACE_S:
                    continue
                if tmp.is_file() or tmp.is_symlink():
                    tmp.unlink(missing_ok=True)

    def _sweep_runs(self) -> None:
        """
        Old temporary records and plots of runs under the default work folder (``<root>/.work``).

        Only old ones, since these are written without the store's lock.
        """
        runs = self.work_dir / 'runs'
        if runs.is_symlink() or not runs.is_dir():
            return
        for pattern in ('*/.*.tmp', '*/.*.tmp.png'):
            for tmp in runs.glob(pattern):
                with contextlib.suppress(OSError):
                    if tmp.is_file() and time.time() - tmp.lstat().st_mtime >= _PLOT_GRACE_S:
                        tmp.unlink()

    def _repair(self, operator_id: str) -> dict[str, Any]:
        """Clean the versions folder and make the state point only at complete versions."""
        self._clean(operator_id)
        state = self._read_state(operator_id)
        ids = set(self._complete_ids(operator_id))
        changed = False
        if state['active'] is not None and state['active'] not in ids:
            log.warning('operator %s: active adapter %s is missing; falling back to the newest complete one',
                        operator_id, state['active'])
            state['active'] = self._newest_id(operator_id)
            changed = True
        history = [h for h in state['history'] if h in ids]
        if history != state['history']:
            state['history'], changed = history, True
        if changed:
            self._write_state(operator_id, state)
        return state

    @property
    def work_dir(self) -> Path:
        """Return the default folder of run records and caches (``<root>/.work``), shared by the CLI and the node."""
        return self.root / '.work'

    # -- Protocol: listing ------------------------------------------------------------------------
    def operators(self) -> list[str]:
        """Operators with any stored data (sorted); folders that are not valid ids are ignored."""
        names = []
        for path in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if not path.is_dir():
                continue
            try:
                validate_operator_id(path.name)
            except ValueError:
                continue
            names.append(path.name)
        return names

    def _version(self, operator_id: str, adapter_id: str, active: str | None) -> AdapterVersion:
        path = self.version_path(operator_id, adapter_id)
        meta = read_metadata(path)
        metrics = meta.get('personalization', {}).get('after') or {}
        return AdapterVersion(adapter_id=adapter_id, operator_id=operator_id, path=str(path),
                              created=str(meta.get('created', '')), active=adapter_id == active,
                              metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})

    def versions(self, operator_id: str) -> list[AdapterVersion]:
        """Kept versions, oldest first."""
        with self._locked(operator_id):
            state = self._repair(operator_id)
            return [self._version(operator_id, i, state['active']) for i in self._complete_ids(operator_id)]

    def active(self, operator_id: str) -> AdapterVersion | None:
        """Return the operator's active version; None means "use the base adapter"."""
        with self._locked(operator_id):
            state = self._repair(operator_id)
            return self._version(operator_id, state['active'], state['active']) if state['active'] else None

    def mode(self, operator_id: str) -> str:
        """'cascade' when the active adapter (or the base one) lost to Whisper's transcription."""
        with self._locked(operator_id):
            state = self._repair(operator_id)
            entry = state['modes'].get(state['active'] or BASE_KEY) or {}
            mode = entry.get('mode', 'aligned')
            return mode if mode in FIXED_MODES else 'aligned'

    def mode_numbers(self, operator_id: str) -> dict[str, Any]:
        """Return the measurements that decided the current mode (empty when never measured)."""
        with self._locked(operator_id):
            state = self._repair(operator_id)
            return dict(state['modes'].get(state['active'] or BASE_KEY) or {})

    # -- Protocol: switching ----------------------------------------------------------------------
    def activate(self, operator_id: str, adapter_id: str) -> AdapterVersion:
        """Make a kept version active; KeyError for an unknown (or incomplete) one."""
        with self._locked(operator_id):
            state = self._repair(operator_id)
            if adapter_id not in self._complete_ids(operator_id):
                raise KeyError(f'operator {operator_id!r} has no kept adapter {adapter_id!r} '
                               f'(kept: {", ".join(self._complete_ids(operator_id)) or "none"})')
            if state['active'] != adapter_id:
                if state['active'] is not None:
                    state['history'].append(state['active'])
                state['active'] = adapter_id
                self._write_state(operator_id, state)
            return self._version(operator_id, adapter_id, adapter_id)

    def rollback(self, operator_id: str) -> AdapterVersion | None:
        """Re-activate the version active before the current one; None: back to the base adapter."""
        with self._locked(operator_id):
            state = self._repair(operator_id)
            if state['active'] is None and not state['history']:
                return None  # already on the base adapter: nothing to write
            state['active'] = state['history'].pop() if state['history'] else None
            self._write_state(operator_id, state)
            active = state['active']
            return self._version(operator_id, active, active) if active else None

    def set_mode(self, operator_id: str, mode: str, numbers: dict[str, Any] | None = None,
                 adapter_id: str | None = None, cancel: threading.Event | None = None) -> None:
        """
        Record the mode for ``adapter_id`` (default: the active one; '' = the base adapter).

        ``cancel`` set before the write: nothing is written and :class:`SaveCancelled` is raised.
        """
        if mode not in FIXED_MODES:
            raise ValueError(f'mode must be one of {FIXED_MODES}, got {mode!r}')
        with self._locked(operator_id, create=True):
            state = self._repair(operator_id)
            if cancel is not None and cancel.is_set():
                raise SaveCancelled(f'cancelled before the mode of {operator_id!r} was recorded; nothing changed')
            key = (state['active'] or BASE_KEY) if adapter_id is None else adapter_id
            state['modes'][key] = {'mode': mode, **(numbers or {}),
                                   'decided': time.strftime('%Y-%m-%dT%H:%M:%S%z')}
            self._write_state(operator_id, state)

    # -- adding versions --------------------------------------------------------------------------
    def add(self, operator_id: str, projector: Projector, metadata: dict[str, Any], activate: bool = True,
            adapter_id: str | None = None, mode: str | None = None,
            mode_numbers: dict[str, Any] | None = None, cancel: threading.Event | None = None) -> AdapterVersion:
        """
        Save ``projector`` as a new version; switch the active pointer only once it is complete.

        ``mode`` (with the numbers that decided it) is recorded in the same state write as the
        switch, so the pointer and the mode never disagree. Old versions beyond ``keep`` are pruned,
        never the new one. ``cancel`` is looked at under the lock right before that state write:
        if it is set, the new folder is deleted, nothing changes and :class:`SaveCancelled` is
        raised; once the write is done, a cancel is too late (the caller reports it as such).
        """
        adapter_id = adapter_id or new_adapter_id(validate_operator_id(operator_id))
        path = self.version_path(operator_id, adapter_id)
        if path.exists() or path.is_symlink():
            raise StoreError(f'operator {operator_id!r} already has an adapter {adapter_id!r}')
        if mode is not None and mode not in FIXED_MODES:
            raise ValueError(f'mode must be one of {FIXED_MODES}, got {mode!r}')
        meta = dict(metadata, adapter_id=adapter_id, operator_id=operator_id)
        with self._locked(operator_id, create=True):
            if self.operator_dir(operator_id).is_symlink() or self.versions_dir(operator_id).is_symlink():
                raise StoreError(f'{self.versions_dir(operator_id)} is a symlink; '
                                 'the store refuses to write through it')
            # Saved under the lock, so no concurrent repair mistakes its temporary folder for debris.
            path.parent.mkdir(parents=True, exist_ok=True)
            if cancel is not None and cancel.is_set():
                raise SaveCancelled(f'cancelled before adapter {adapter_id!r} was saved; nothing changed')
            save_adapter(path, projector, meta)  # atomic: a complete folder or nothing under this name
            try:
                state = self._repair(operator_id)
                if cancel is not None and cancel.is_set():  # the last moment a cancel changes the outcome
                    raise SaveCancelled(f'cancelled before adapter {adapter_id!r} was activated; nothing changed')
            except BaseException:
                shutil.rmtree(path, ignore_errors=True)
                raise
            if activate:
                if state['active'] is not None and state['active'] != adapter_id:
                    state['history'].append(state['active'])
                state['active'] = adapter_id
            if mode is not None:
                state['modes'][adapter_id] = {'mode': mode, **(mode_numbers or {}),
                                              'decided': time.strftime('%Y-%m-%dT%H:%M:%S%z')}
            self._write_state(operator_id, state)
            self._prune(operator_id, state, protect=adapter_id)
            return self._version(operator_id, adapter_id, state['active'])

    def remove(self, operator_id: str, adapter_id: str) -> None:
        """Delete a version that is not active (used when a run is cancelled after saving)."""
        with self._locked(operator_id):
            state = self._repair(operator_id)
            if state['active'] == adapter_id:
                raise StoreError(f'{adapter_id!r} is the active adapter of {operator_id!r}; activate another first')
            shutil.rmtree(self.version_path(operator_id, adapter_id), ignore_errors=True)
            self._repair(operator_id)

    def _prune(self, operator_id: str, state: dict[str, Any], protect: str = '') -> None:
        """
        Delete the oldest versions beyond ``keep``, never the active one nor ``protect``.

        ``protect`` is the version just added: it may be activated next.
        """
        ids = self._complete_ids(operator_id)
        excess = len(ids) - self.keep
        for adapter_id in ids:
            if excess <= 0:
                break
            if adapter_id in (state['active'], protect):
                continue
            shutil.rmtree(self.version_path(operator_id, adapter_id), ignore_errors=True)
            state['modes'].pop(adapter_id, None)
            excess -= 1
        state['history'] = [h for h in state['history'] if h in set(self._complete_ids(operator_id))]
        self._write_state(operator_id, state)

    # -- recordings -------------------------------------------------------------------------------
    def recordings(self, operator_id: str) -> list[Item]:
        """
        Every kept recording of the operator (lines whose wav is missing are skipped).

        A wav the manifest does not name (the writer died between the recording and the manifest)
        is adopted with the transcript written beside it, or unlabeled when there is none.
        """
        folder = self.recordings_dir(operator_id)
        items = [item for item in _read_manifest(folder / MANIFEST_NAME) if Path(item.audio).is_file()]
        named = {Path(item.audio).name for item in items} | {f'{item.id}.wav' for item in items}
        wavs = folder / 'wavs'
        if wavs.is_dir() and not wavs.is_symlink():
            for wav in sorted(wavs.glob('*.wav')):
                if wav.name in named or wav.name.startswith('.') or wav.is_symlink():
                    continue
                adopted = _read_sidecar(wav)
                if adopted is not None:
                    items.append(adopted)
        return items

    def save_recordings(self, operator_id: str, recordings: Sequence[Recording], session: str) -> list[Item]:
        """
        Write each recording as a 16-bit wav, then the manifest (atomically); return their items.

        A recording already kept with the same id and the same samples is reused, not duplicated,
        so feeding the same folder twice does not grow the store. Same id with other samples gets a
        new id (the session is appended).
        """
        check_id(session, 'session')
        folder = self.recordings_dir(operator_id)
        wavs = folder / 'wavs'
        wavs.mkdir(parents=True, exist_ok=True)
        out: list[Item] = []
        with self._locked(operator_id, create=True):
            kept = self.recordings(operator_id)
            by_id = {item.id: item for item in kept}
            by_sha = {item.meta.get('sha256'): item for item in kept}
            new: list[Item] = []
            for i, rec in enumerate(recordings):
                pcm = np.clip(np.round(np.asarray(rec.audio, np.float32) * 32767.0), -32768, 32767).astype(np.int16)
                sha = hashlib.sha256(pcm.tobytes()).hexdigest()
                base_id = rec.id or f'{session}-{i:04d}'
                same = by_sha.get(sha)
                if same is not None and (not rec.id or same.meta.get('source_id') == rec.id):
                    if rec.text is not None and same.text != rec.text:  # a better transcript arrived
                        same.text = rec.text
                        same.meta.update(rec.meta)
                    out.append(same)
                    continue
                item_id = base_id if base_id not in by_id else f'{base_id}-{session}'
                n = 1
                while item_id in by_id:
                    item_id, n = f'{base_id}-{session}-{n}', n + 1
                check_id(item_id, 'recording id')
                item = Item(item_id, wavs / f'{item_id}.wav', rec.text,
                            {**rec.meta, 'sha256': sha, 'session': session, 'source_id': rec.id or item_id,
                             'seconds': round(len(pcm) / 16000, 3)})
                try:
                    # The transcript first: a wav is never on disk without what was said in it.
                    _write_sidecar(item)
                    _write_wav(item.audio, pcm)
                except OSError as exc:
                    with contextlib.suppress(OSError):  # no transcript without its recording
                        item.audio.with_suffix('.json').unlink(missing_ok=True)
                    raise self._write_error(exc, item.audio, f'recording {item_id}', len(new)) from exc
                by_id[item_id], by_sha[sha] = item, item
                new.append(item)
                out.append(item)
            # The manifest is written last and atomically: its lines only ever name complete wavs.
            try:
                write_manifest(kept + new, folder / MANIFEST_NAME)
            except OSError as exc:
                raise self._write_error(exc, folder / MANIFEST_NAME, 'the recordings manifest', len(new)) from exc
            for item in kept + new:  # the manifest holds them now (adopted orphans included)
                Path(item.audio).with_suffix('.json').unlink(missing_ok=True)
        return out

    @staticmethod
    def _write_error(exc: OSError, path: Path, what: str, saved: int) -> OSError:
        """Build an OSError whose message says what could not be written, where, and why."""
        kept = f'{saved} recording(s) of this run saved before it' if saved else 'no recording of this run was saved'
        if is_disk_full(exc):
            return OSError(exc.errno, f'{disk_full_message(path.parent, what)} ({exc.strerror}; {kept})')
        return OSError(exc.errno, f'cannot write {what} to {path}: {exc.strerror or exc} ({kept})')


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    """
    Write a 16-bit wav, published durably.

    It is encoded in memory first, so a full disk raises an OSError with its errno (libsndfile writing to the
    file itself only says "System error.").
    """
    buffer = io.BytesIO()
    sf.write(buffer, pcm, 16000, subtype='PCM_16', format='WAV')
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.stem}.', suffix='.wav', dir=path.parent)
    os.close(fd)
    try:
        write_bytes(tmp, buffer.getvalue())
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_sidecar(item: Item) -> None:
    """``wavs/<id>.json``: the recording's manifest line, kept until the manifest names it."""
    path = Path(item.audio).with_suffix('.json')
    record = {'id': item.id, 'audio': Path(item.audio).name, 'text': item.text, **item.meta}
    tmp = path.with_name(f'.{path.name}.tmp')
    try:
        write_bytes(tmp, json.dumps(record, ensure_ascii=False, default=str).encode('utf-8'))
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_sidecar(wav: Path) -> Item | None:
    """Build the item of a wav the manifest does not name: from its sidecar, else unlabeled."""
    try:
        item_id = check_id(wav.stem)
    except ValueError:
        return None
    meta: dict[str, Any] = {'adopted': True}
    text = None
    sidecar = wav.with_suffix('.json')
    if sidecar.is_file() and not sidecar.is_symlink():
        try:
            record = json.loads(sidecar.read_text(encoding='utf-8'))
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict) and record.get('id') == item_id:
            text = record.get('text') if isinstance(record.get('text'), str) else None
            meta.update({k: v for k, v in record.items() if k not in ('id', 'audio', 'text')})
    if text is None:
        meta.setdefault('trust', 'pseudo')
    return Item(item_id, wav, text, meta)


def _read_manifest(path: Path) -> list[Item]:
    """
    Read the store's own manifest tolerantly.

    Bad lines are skipped, not fatal, because one damaged line must not make an operator's other recordings
    unreachable.
    """
    if not path.is_file():
        return []
    items: list[Item] = []
    for line in path.read_text(encoding='utf-8').splitlines():
        try:
            record = json.loads(line)
            item_id = check_id(record['id'])
            audio = Path(record['audio'])
        except (ValueError, KeyError, TypeError):
            continue
        audio = audio if audio.is_absolute() else path.parent / audio
        meta = {k: v for k, v in record.items() if k not in ('id', 'audio', 'text')}
        items.append(Item(item_id, audio, record.get('text'), meta))
    return items


__all__ = ['AdapterStore', 'Recording', 'StoreError', 'default_store_root', 'write_json_atomic',
           'is_complete_adapter', 'STATE_NAME']
