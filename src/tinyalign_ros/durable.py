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
Writes that survive a power loss, and disk-full errors a person can act on.

A rename publishes a file atomically with respect to a *kill*, but not to a power loss: until the
file's data and the directory entry reach the disk, the kernel may still lose either, and after a
reboot the new name can point at an empty file. So everything the store publishes goes through
:func:`publish`: the data is fsynced before the rename and the folder after it.

A full disk is an ordinary event on a robot (recordings pile up). libsndfile reports it as
"System error." and Python as a bare errno; :func:`disk_full_message` turns it into a sentence that
names the folder and the space left.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
import shutil
from typing import Any

# Errors that mean "the device cannot take more data" rather than a bug or a bad path.
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def fsync_file(path: str | Path) -> None:
    """Flush one file's data and size to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (renames, new names) to the disk, where the OS allows it."""
    with contextlib.suppress(OSError):  # some filesystems refuse to open or sync a directory
        fsync_file(path)


def fsync_tree(path: str | Path) -> None:
    """Flush every file of a folder, then the folder itself (a new adapter folder before its rename)."""
    root = Path(path)
    for item in sorted(root.iterdir()):
        if item.is_file() and not item.is_symlink():
            fsync_file(item)
    fsync_dir(root)


def publish(tmp: str | Path, path: str | Path) -> None:
    """Rename the finished ``tmp`` onto ``path`` durably: data first, then the name, then the folder."""
    tmp, path = Path(tmp), Path(path)
    if tmp.is_dir():
        fsync_tree(tmp)
    else:
        fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a new file with real OS errors (ENOSPC stays ENOSPC), fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str | Path, obj: Any, indent: int = 2) -> None:
    """
    Write ``obj`` as JSON to ``path`` whole or not at all (a temporary sibling, then :func:`publish`).

    Benchmark results and reports are read by other tools; a run killed while writing must leave the
    previous file, not half of a new one. The parent folder is created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.partial')
    write_bytes(tmp, (json.dumps(obj, indent=indent, default=str) + '\n').encode('utf-8'))
    publish(tmp, path)


def is_disk_full(exc: BaseException) -> bool:
    """Tell whether ``exc`` is one of the errors a full disk (or an exhausted quota) raises."""
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


def disk_full_message(path: str | Path, what: str) -> str:
    """Say 'the disk is full: cannot write <what> to <folder> (N MB free of M MB)'."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        usage = shutil.disk_usage(folder)
        space = f' ({usage.free / 1e6:.1f} MB free of {usage.total / 1e6:.0f} MB)'
    except OSError:
        space = ''
    return f'the disk is full: cannot write {what} to {Path(path)}{space}; free space there and retry'


__all__ = ['fsync_file', 'fsync_dir', 'fsync_tree', 'publish', 'write_bytes', 'is_disk_full', 'disk_full_message']
