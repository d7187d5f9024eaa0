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
Datasets of (audio file, transcript) pairs.

Everything that trains or evaluates reads its speech through :func:`load_dataset`, so one loader
decides what a valid dataset is and every bad line is reported once, with ``file:line``, before any
expensive work starts. Two layouts are accepted:

- a JSON-lines manifest (``manifest.jsonl``), one object per line:
  ``{"id": "...", "audio": "wavs/x.wav", "text": "..." | null}``; audio paths are relative to the
  manifest's folder (so a dataset folder can be moved) or absolute; ``text`` is null for unlabeled
  speech; any extra keys (the synthesizer writes ``voice``, ``rate``, ``pitch``) are kept in
  :attr:`Item.meta` and written back by :func:`write_manifest`;
- an LJ-Speech-style folder: ``metadata.csv`` with ``id|text`` or ``id|text|normalized`` lines and
  the audio at ``wavs/ID.wav``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
import json
import logging
import os
from pathlib import Path
import random
import re
import tempfile
from typing import Any

from .durable import fsync_dir

log = logging.getLogger(__name__)

MANIFEST_NAME = 'manifest.jsonl'
LJ_METADATA_NAME = 'metadata.csv'
_REQUIRED_KEYS = ('id', 'audio', 'text')
# Ids become file names (feature caches, synthesized wavs) and appear in reports, so they are kept
# to a conservative, path-safe alphabet: no separators, no leading dot, no spaces.
_ID_PATTERN = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,127}')


class DatasetError(ValueError):
    """A dataset file is malformed, inconsistent or points at missing audio."""


@dataclass
class Item:
    """One utterance: a unique id, the audio file and its transcript (None when unlabeled)."""

    id: str  # noqa: A003 - the manifest's field name, read and written by every tool
    audio: Path
    text: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def check_id(item_id: object, where: str = '') -> str:
    """Return ``item_id`` when it is a safe, non-empty id, else raise :class:`DatasetError`."""
    prefix = f'{where}: ' if where else ''
    if not isinstance(item_id, str) or not item_id:
        raise DatasetError(f'{prefix}empty or non-string id {item_id!r}')
    if not _ID_PATTERN.fullmatch(item_id):
        raise DatasetError(
            f'{prefix}bad id {item_id!r}: ids may only use letters, digits, "_", "-", "." '
            '(not first), at most 128 characters, and no path separators'
        )
    return item_id


def load_dataset(path: str | Path, skipped: list[str] | None = None) -> list[Item]:
    """
    Load a manifest file, a folder with ``manifest.jsonl``, or an LJ-Speech-style folder.

    A folder holding both a manifest and ``metadata.csv`` is read through its manifest, which is
    the more explicit of the two. By default any bad line is an error (training sets must be what
    they claim). With a ``skipped`` list, bad lines are appended to it as ``file:line: reason``
    and left out instead: an operator's folder with one bad file still has the others.
    """
    path = Path(path)
    try:
        return _load(path, skipped)
    except UnicodeDecodeError as exc:
        raise DatasetError(f'{path}: not UTF-8 text ({exc.reason} at byte {exc.start})') from None


def _load(path: Path, skipped: list[str] | None) -> list[Item]:
    if path.is_dir():
        if (path / MANIFEST_NAME).is_file():
            return _load_manifest(path / MANIFEST_NAME, skipped)
        if (path / LJ_METADATA_NAME).is_file():
            return _load_ljspeech(path / LJ_METADATA_NAME, skipped)
        raise DatasetError(
            f'{path}: no {MANIFEST_NAME} or {LJ_METADATA_NAME} in this folder '
            '(expected a manifest or an LJ-Speech layout with wavs/)'
        )
    if path.is_file():
        if path.suffix == '.csv':
            return _load_ljspeech(path, skipped)
        return _load_manifest(path, skipped)
    raise DatasetError(f'{path}: no such dataset file or folder')


def _skip(skipped: list[str] | None, error: DatasetError) -> None:
    """Raise ``error``, or note it and go on when the caller collects skipped lines."""
    if skipped is None:
        raise error
    log.warning('skipped: %s', error)
    skipped.append(str(error))


def _none_left(source: Path, skipped: list[str] | None, what: str) -> DatasetError:
    if skipped:
        return DatasetError(f'{source}: no usable items ({len(skipped)} skipped; first: {skipped[0]})')
    return DatasetError(f'{source}: {what}')


def _load_manifest(manifest: Path, skipped: list[str] | None = None) -> list[Item]:
    folder = Path(os.path.abspath(manifest.parent))
    items: list[Item] = []
    seen: dict[str, int] = {}
    with open(manifest, encoding='utf-8') as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                item = _manifest_item(line, f'{manifest}:{lineno}', folder, seen, lineno)
            except DatasetError as error:
                _skip(skipped, error)
                continue
            items.append(item)
    if not items:
        raise _none_left(manifest, skipped, 'the manifest has no items')
    return items


def _manifest_item(line: str, where: str, folder: Path, seen: dict[str, int], lineno: int) -> Item:
    """One manifest line as an Item, or a DatasetError naming ``where``."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DatasetError(f'{where}: malformed JSON ({e.msg})') from None
    if not isinstance(record, dict):
        raise DatasetError(f'{where}: expected a JSON object, got {type(record).__name__}')
    missing = [key for key in _REQUIRED_KEYS if key not in record]
    if missing:
        raise DatasetError(f'{where}: missing key(s) {", ".join(missing)}')
    item_id = check_id(record['id'], where)
    if item_id in seen:
        raise DatasetError(f'{where}: duplicate id {item_id!r} (first on line {seen[item_id]})')
    audio, text = record['audio'], record['text']
    if not isinstance(audio, str) or not audio or '\0' in audio:
        raise DatasetError(f'{where}: "audio" must be a non-empty path string')
    if text is not None and not isinstance(text, str):
        raise DatasetError(f'{where}: "text" must be a string or null')
    audio_path = Path(os.path.normpath(folder / audio))  # absolute paths stay as they are
    if not audio_path.is_file():
        raise DatasetError(f'{where}: audio file not found: {audio_path}')
    seen[item_id] = lineno
    meta = {k: v for k, v in record.items() if k not in _REQUIRED_KEYS}
    return Item(item_id, audio_path, text, meta)


def _load_ljspeech(metadata: Path, skipped: list[str] | None = None) -> list[Item]:
    """
    Parse LJ-Speech ``metadata.csv``.

    Fields are split on ``|`` only: LJ transcripts contain unbalanced double quotes, which a CSV
    reader would treat as quoting and silently merge lines.
    """
    folder = Path(os.path.abspath(metadata.parent))
    items: list[Item] = []
    seen: dict[str, int] = {}
    with open(metadata, encoding='utf-8-sig') as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip('\r\n')
            if not line.strip():
                continue
            try:
                item = _ljspeech_item(line, f'{metadata}:{lineno}', folder, seen, lineno)
            except DatasetError as error:
                _skip(skipped, error)
                continue
            items.append(item)
    if not items:
        raise _none_left(metadata, skipped, 'no items')
    return items


def _ljspeech_item(line: str, where: str, folder: Path, seen: dict[str, int], lineno: int) -> Item:
    """One ``metadata.csv`` line as an Item, or a DatasetError naming ``where``."""
    fields = line.split('|')
    if len(fields) not in (2, 3):
        raise DatasetError(f'{where}: expected "id|text" or "id|text|normalized", got {len(fields)} fields')
    item_id = check_id(fields[0].strip(), where)
    if item_id in seen:
        raise DatasetError(f'{where}: duplicate id {item_id!r} (first on line {seen[item_id]})')
    # The normalized column spells numbers and abbreviations out, which is what was spoken.
    text = fields[2].strip() if len(fields) == 3 else ''
    text = text or fields[1].strip()
    if not text:
        raise DatasetError(f'{where}: empty transcript for {item_id!r}')
    audio = folder / 'wavs' / f'{item_id}.wav'
    if not audio.is_file():
        raise DatasetError(f'{where}: audio file not found: {audio}')
    seen[item_id] = lineno
    return Item(item_id, audio, text)


def _relative_inside(audio: Path, folder: Path) -> str | None:
    """``audio`` relative to ``folder`` as a POSIX string when it lies inside it, else None."""
    pairs = (
        (Path(os.path.abspath(audio)), Path(os.path.abspath(folder))),
        (audio.resolve(), folder.resolve()),  # symlinked temp dirs, /tmp vs /private/tmp, ...
    )
    for a, d in pairs:
        try:
            return a.relative_to(d).as_posix()
        except ValueError:
            continue
    return None


def write_manifest(items: Iterable[Item], path: str | Path) -> Path:
    """
    Write ``items`` as a JSON-lines manifest, atomically, and return its path.

    ``path`` may be a folder (``manifest.jsonl`` is written in it). Audio inside the manifest's
    folder is written relative so the folder stays movable. The file appears only once complete
    (temporary file + fsync + ``os.replace`` + fsync of the folder), so neither an interrupted run
    nor a power loss leaves a truncated manifest.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent
    lines: list[str] = []
    seen: set[str] = set()
    for item in items:
        check_id(item.id, 'write_manifest')
        if item.id in seen:
            raise DatasetError(f'write_manifest: duplicate id {item.id!r}')
        seen.add(item.id)
        clash = [k for k in item.meta if k in _REQUIRED_KEYS]
        if clash:
            raise DatasetError(f'write_manifest: item {item.id!r} has meta keys {clash} that clash with fields')
        audio = Path(item.audio)
        rel = _relative_inside(audio, folder)
        record = {'id': item.id, 'audio': rel if rel is not None else os.path.abspath(audio), 'text': item.text}
        record.update(item.meta)
        lines.append(json.dumps(record, ensure_ascii=False))
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(''.join(line + '\n' for line in lines))
            f.flush()
            os.fsync(f.fileno())  # the data reaches the disk before the name that publishes it
        os.replace(tmp, path)
        fsync_dir(folder)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def select(items: Sequence[Item], ids: Sequence[str]) -> list[Item]:
    """Return the items with ``ids``, in the order of ``ids``; unknown or repeated ids are errors."""
    by_id = {item.id: item for item in items}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        shown = ', '.join(repr(i) for i in unknown[:10])
        more = f' (and {len(unknown) - 10} more)' if len(unknown) > 10 else ''
        raise DatasetError(f'unknown id(s): {shown}{more}')
    repeated = sorted(i for i, count in Counter(ids).items() if count > 1)
    if repeated:
        raise DatasetError(f'id(s) requested more than once: {", ".join(map(repr, repeated))}')
    return [by_id[i] for i in ids]


def split(items: Sequence[Item], holdout: int | Sequence[str], seed: int = 0) -> tuple[list[Item], list[Item]]:
    """
    Split into (train, holdout), both in the original item order.

    ``holdout`` is a count (picked by a shuffle seeded with ``seed``) or a list of ids. The shuffle
    runs over the sorted ids, so the same set of items gives the same split whatever their order.
    Both sizes are logged so a run's log shows what it trained and evaluated on.
    """
    if isinstance(holdout, bool):
        raise DatasetError('holdout must be a count or a list of ids, not a bool')
    if isinstance(holdout, int):
        if holdout < 0:
            raise DatasetError(f'holdout count must be >= 0, got {holdout}')
        if holdout >= len(items):
            raise DatasetError(f'holdout of {holdout} leaves nothing to train on ({len(items)} items)')
        ids = sorted(item.id for item in items)
        random.Random(seed).shuffle(ids)
        held = set(ids[:holdout])
    else:
        if isinstance(holdout, str):
            raise DatasetError('holdout must be a count or a list of ids, not a single string')
        held = {item.id for item in select(items, list(holdout))}
        if len(held) >= len(items):
            raise DatasetError(f'holdout of {len(held)} ids leaves nothing to train on ({len(items)} items)')
    train = [item for item in items if item.id not in held]
    test = [item for item in items if item.id in held]
    log.info('split: %d train, %d holdout', len(train), len(test))
    return train, test
