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
Adapters: the one on-disk format for every trained projector.

An adapter is a folder holding ``adapter.safetensors`` (the projector's weights; tensors only, so
loading never unpickles anything) and ``adapter.json`` (what it was made for and how well it did:
encoder and LLM identity, projector type and config, training data summary, metrics). The folder is
written under a temporary name, flushed to the disk and renamed into place, so a crash, a power loss
or a full disk never leaves a half-written adapter where a loader would find it.

An adapter is also data from outside the process (copied between robots, restored from backups),
so loading checks more than the format: the weights file must have the size and SHA-256 written in
the metadata (a truncated or altered file is refused, not loaded as whatever survived), every
float weight must be finite and have a float type, and the vocabulary must be valid token ids. A
broken adapter that loaded would otherwise answer every question with an empty string.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import struct
import tempfile
import time
from typing import Any
import uuid

from safetensors.torch import load_file, save_file
import torch

from .durable import disk_full_message, fsync_dir, fsync_tree, is_disk_full
from .model_files import file_sha256
from .projector import build_projector, Projector, ProjectorConfigError

FORMAT_VERSION = 1
WEIGHTS = 'adapter.safetensors'
METADATA = 'adapter.json'
WEIGHTS_KEY = 'weights'  # metadata entry: {'bytes': size of WEIGHTS, 'sha256': its digest}


class AdapterError(RuntimeError):
    """An adapter that is missing, damaged, or made for other models."""


def new_adapter_id(prefix: str = 'adapter') -> str:
    """Return a sortable, unique id: creation time plus a short random suffix."""
    return f'{prefix}-{time.strftime("%Y%m%d-%H%M%S")}-{uuid.uuid4().hex[:6]}'


def save_adapter(path: str | Path, projector: Projector, metadata: dict[str, Any] | None = None,
                 half: bool = True) -> Path:
    """
    Write ``projector`` and ``metadata`` as an adapter folder at ``path``, atomically.

    ``half`` stores weights as float16 (they are trained in float32; the difference is far below
    the noise of the metrics and halves the size shipped in the repository). Replacing an existing
    adapter renames the old folder aside first and deletes it only once the new one is in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(metadata or {})
    meta.setdefault('adapter_id', path.name)
    meta['format_version'] = FORMAT_VERSION
    meta['projector'] = {'type': projector.config.type, 'config': projector.config.to_dict(),
                         'parameters': projector.n_parameters()}
    meta.setdefault('created', time.strftime('%Y-%m-%dT%H:%M:%S%z'))
    tensors = {}
    for name, value in projector.state_dict().items():
        value = value.detach().cpu().contiguous()
        if half and value.is_floating_point() and name != 'logit_scale':
            value = value.half()
        tensors[name] = value
    tmp = Path(tempfile.mkdtemp(prefix=f'.{path.name}.tmp-', dir=path.parent))
    old = None
    try:
        save_file(tensors, str(tmp / WEIGHTS), metadata={'format': 'tinyalign_ros-adapter'})
        meta[WEIGHTS_KEY] = {'bytes': (tmp / WEIGHTS).stat().st_size, 'sha256': file_sha256(tmp / WEIGHTS)}
        with open(tmp / METADATA, 'w', encoding='utf-8') as f:
            json.dump(meta, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        # mkdtemp makes a private folder; adapters are shared with the nodes, not secrets.
        os.chmod(tmp, 0o755)
        for name in (WEIGHTS, METADATA):
            os.chmod(tmp / name, 0o644)
        fsync_tree(tmp)  # the files' data reaches the disk before the name that publishes them
        if path.exists():
            old = path.with_name(f'.{path.name}.old-{uuid.uuid4().hex[:6]}')
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not path.exists():
            os.replace(old, path)  # the new one never arrived: put the previous adapter back
        if is_disk_full(exc):
            raise OSError(exc.errno, f'{disk_full_message(path.parent, f"adapter {path.name}")} '
                          f'({exc.strerror})') from exc
        raise
    return path


def weights_problem(path: str | Path, meta: dict[str, Any], checksum: bool = True) -> str | None:
    """
    Why the weights file of the adapter at ``path`` cannot be trusted, or None when it can.

    Always checked: a regular file (not a symlink), a well-formed safetensors header whose data
    ends exactly at the end of the file (so truncation is caught even in adapters written before
    checksums were recorded), and the size recorded in the metadata. With ``checksum`` also the
    recorded SHA-256.
    """
    file = Path(path) / WEIGHTS
    if file.is_symlink() or not file.is_file():
        return f'{file} is not a regular file'
    size = file.stat().st_size
    try:
        with open(file, 'rb') as f:
            head = f.read(8)
            if len(head) < 8:
                return f'{file} is truncated ({size} bytes)'
            (n,) = struct.unpack('<Q', head)
            if n > size - 8:
                return f'{file} is truncated (its header needs {n} bytes, the file has {size})'
            header = json.loads(f.read(n).decode('utf-8'))
    except (OSError, ValueError) as exc:
        return f'{file} has a damaged header: {exc}'
    ends = [v.get('data_offsets', [0, 0])[1] for k, v in header.items() if k != '__metadata__' and isinstance(v, dict)]
    if not all(isinstance(e, int) for e in ends):
        return f'{file} has a damaged header'
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        return f'{file} is truncated or padded ({size} bytes, its header describes {expected})'
    recorded = meta.get(WEIGHTS_KEY)
    if recorded is None:
        return None  # written before sizes and checksums were recorded: the structure check is all there is
    if not isinstance(recorded, dict):
        return f'{Path(path) / METADATA}: "{WEIGHTS_KEY}" must be an object with bytes and sha256'
    if recorded.get('bytes') != size:
        return f'{file} has {size} bytes, the metadata says {recorded.get("bytes")}'
    if checksum and recorded.get('sha256') != file_sha256(file):
        return f'{file} does not match the SHA-256 in its metadata (altered or damaged)'
    return None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Read the adapter's JSON metadata, with a clear error for a missing or damaged folder."""
    path = Path(path)
    meta_file = path / METADATA
    if not path.is_dir():
        raise AdapterError(f'adapter folder not found: {path}')
    if not meta_file.is_file() or not (path / WEIGHTS).is_file():
        raise AdapterError(f'{path} is not an adapter (needs {WEIGHTS} and {METADATA})')
    try:
        meta = json.loads(meta_file.read_text(encoding='utf-8'))
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise AdapterError(f'damaged adapter metadata {meta_file}: {exc}') from exc
    if not isinstance(meta, dict):
        raise AdapterError(f'damaged adapter metadata {meta_file}: expected a JSON object')
    if meta.get('format_version') != FORMAT_VERSION or 'projector' not in meta:
        raise AdapterError(f'{meta_file} has an unknown format (format_version={meta.get("format_version")})')
    projector = meta['projector']
    if not isinstance(projector, dict) or not isinstance(projector.get('config'), dict):
        raise AdapterError(f'{meta_file}: "projector" must be an object whose "config" is an object')
    return meta


def check_compatible(meta: dict[str, Any], encoder_identity: dict[str, Any] | None,
                     llm_identity: dict[str, Any] | None, path: str | Path = '') -> None:
    """Refuse an adapter trained for another encoder or LLM, naming both sides."""
    for role, current in (('encoder', encoder_identity), ('llm', llm_identity)):
        if current is None:
            continue
        made_for = meta.get(role) or {}
        for key in ('sha256', 'd_model', 'hidden_size'):
            if key in made_for and key in current and made_for[key] != current[key]:
                raise AdapterError(
                    f'adapter {path} was made for {role} {made_for.get("name", "?")} '
                    f'({key}={str(made_for[key])[:16]}), but the loaded {role} is {current.get("name", "?")} '
                    f'({key}={str(current[key])[:16]}); train an adapter for this model pair '
                    '(`tinyalign align`) or load the matching models'
                )


def load_adapter(path: str | Path, encoder_identity: dict[str, Any] | None = None,
                 llm_identity: dict[str, Any] | None = None,
                 embedding_matrix: torch.Tensor | None = None) -> tuple[Projector, dict[str, Any]]:
    """Load an adapter folder; check it against the models in use; bind it to the LLM if given."""
    path = Path(path)
    meta = read_metadata(path)
    check_compatible(meta, encoder_identity, llm_identity, path)
    try:
        projector = build_projector(meta['projector']['config'])
    except (ProjectorConfigError, TypeError, KeyError, ValueError, AttributeError) as exc:
        raise AdapterError(f'adapter {path} has an invalid projector config: {exc}') from exc
    problem = weights_problem(path, meta)
    if problem is not None:
        raise AdapterError(f'damaged adapter weights: {problem}')
    try:
        tensors = load_file(str(path / WEIGHTS))
    except Exception as exc:  # safetensors raises its own error types for truncated files
        raise AdapterError(f'damaged adapter weights {path / WEIGHTS}: {exc}') from exc
    _check_tensors(path, tensors, projector, embedding_matrix)
    projector.vocab_ids = tensors.get('vocab_ids', projector.vocab_ids).long()
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    try:
        missing, unexpected = projector.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise AdapterError(f'adapter {path} does not match its projector config: {exc}') from exc
    if missing or unexpected:
        raise AdapterError(f'adapter {path} does not match its projector config '
                           f'(missing {missing[:3]}, unexpected {unexpected[:3]})')
    if embedding_matrix is not None:
        projector.bind_llm(embedding_matrix)
    projector.eval()
    return projector, meta


def _check_tensors(path: Path, tensors: dict[str, torch.Tensor], projector: Projector,
                   embedding_matrix: torch.Tensor | None) -> None:
    """Refuse weights that are well-formed but unusable: wrong kinds, NaN/Inf, impossible token ids."""
    expected = projector.state_dict()
    for name, value in tensors.items():
        want = expected.get(name)
        if want is None:
            continue  # reported as "unexpected" by load_state_dict
        if want.is_floating_point() and not value.is_floating_point():
            raise AdapterError(f'adapter {path}: weight {name!r} has dtype {value.dtype}, expected floating point')
        if value.is_floating_point() and value.numel() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise AdapterError(f'adapter {path}: weight {name!r} holds {bad} NaN/Inf values')
    vocab = tensors.get('vocab_ids')
    if vocab is None:
        return
    if vocab.is_floating_point() or vocab.dtype == torch.bool or vocab.dim() != 1:
        raise AdapterError(f'adapter {path}: vocab_ids must be a 1-D integer tensor, '
                           f'got {vocab.dtype} {tuple(vocab.shape)}')
    if vocab.numel():
        low, high = int(vocab.min()), int(vocab.max())
        if low < 0:
            raise AdapterError(f'adapter {path}: vocab_ids holds negative token id {low}')
        if embedding_matrix is not None and high >= embedding_matrix.shape[0]:
            raise AdapterError(f'adapter {path}: vocab_ids holds token id {high}, but the LLM has only '
                               f'{embedding_matrix.shape[0]} tokens')
        if int(torch.unique(vocab).numel()) != int(vocab.numel()):
            raise AdapterError(f'adapter {path}: vocab_ids repeats token ids')


def average_adapters(paths: list[str | Path], weights: list[float] | None = None) -> tuple[Projector, dict[str, Any]]:
    """
    Average adapters' weights (a weight-space ensemble): (the averaged projector, its metadata).

    Why: a continuation trained on a new draw of the mix learns what the draw holds and forgets some
    of what its starting point knew; the average of the two often keeps both (WiSE-FT, model soups),
    at no inference cost. The adapters must share one lineage: the same projector config, head
    vocabulary and models. ``weights`` (default equal) must be non-negative and are normalized.
    The metadata keeps the models the adapters were made for and names the parts (``averaged_from``,
    each with its own training data summary); it has no metrics, as the average was not scored.
    """
    if len(paths) < 2:
        raise AdapterError(f'averaging needs at least two adapters, got {len(paths)}')
    weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    if len(weights) != len(paths) or min(weights) < 0 or sum(weights) <= 0:
        raise AdapterError(f'averaging needs one non-negative weight per adapter, not all zero; got {weights}')
    loaded = [load_adapter(p) for p in paths]
    first, meta = loaded[0]
    for (projector, other), path in zip(loaded[1:], paths[1:]):
        if other.get('projector', {}).get('config') != meta.get('projector', {}).get('config'):
            raise AdapterError(f'adapter {path} has another projector config than {paths[0]}')
        if other.get('encoder') != meta.get('encoder') or other.get('llm') != meta.get('llm'):
            raise AdapterError(f'adapter {path} was made for other models than {paths[0]}')
        if not torch.equal(projector.vocab_ids, first.vocab_ids):
            raise AdapterError(f'adapter {path} has another head vocabulary than {paths[0]}')
    total = sum(weights)
    states = [projector.state_dict() for projector, _ in loaded]
    with torch.no_grad():
        for name, value in states[0].items():
            if value.is_floating_point():
                value.copy_(sum(w / total * s[name].float() for w, s in zip(weights, states)))
    averaged = {k: meta[k] for k in ('encoder', 'llm') if k in meta}
    averaged['averaged_from'] = [{'path': str(p), 'adapter_id': m.get('adapter_id'), 'weight': w / total,
                                  'initialized_from': m.get('initialized_from'), 'data': m.get('data')}
                                 for p, (_, m), w in zip(paths, loaded, weights)]
    return first, averaged
