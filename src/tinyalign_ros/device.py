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
Where the models run and in which precision: the one place that turns the settings into a device.

Why one module: the encoder (CTranslate2), the projector and the LLM (torch) each need "cpu, cuda or
auto" and a precision, and a robot without a GPU must get the same clear message from the CLI, the
YAML loader and the node when its config asks for one, not a traceback from deep inside torch or
CTranslate2 at the first answer. The names are checked without importing torch (config loading stays
cheap); resolving ``auto`` and checking that CUDA is really there imports the backend that will run.
"""

from __future__ import annotations

from typing import Any, Callable

DEVICES = ('cpu', 'cuda', 'auto')
DTYPES = ('float32', 'float16', 'bfloat16')


class DeviceError(ValueError):
    """A device or precision setting that cannot be used on this machine."""


def check_device(name: Any, key: str = 'device') -> str:
    """Return ``name`` if it is one of :data:`DEVICES`, else raise a :class:`DeviceError` naming ``key``."""
    if name not in DEVICES:
        raise DeviceError(f'{key} must be one of {list(DEVICES)}, got {name!r}')
    return str(name)


def check_dtype(name: Any, key: str = 'dtype') -> str:
    """Return ``name`` if it is one of :data:`DTYPES`, else raise a :class:`DeviceError` naming ``key``."""
    if name not in DTYPES:
        raise DeviceError(f'{key} must be one of {list(DTYPES)}, got {name!r}')
    return str(name)


def torch_cuda_available() -> bool:
    """Whether torch can use a CUDA GPU (False, not an exception, when torch was built without CUDA)."""
    import torch

    try:
        return bool(torch.cuda.is_available())
    except (RuntimeError, AssertionError):  # a broken driver reads as "no GPU"
        return False


def ctranslate2_cuda_available() -> bool:
    """
    Whether CTranslate2 (faster-whisper's engine) sees a CUDA GPU.

    Asked separately from torch because the two are built separately: on a Jetson the PyPI
    CTranslate2 wheel is CPU-only while NVIDIA's torch wheel has CUDA (docs/jetson.md).
    """
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count()) > 0
    except (ImportError, RuntimeError, OSError):
        return False


def cuda_missing_message(key: str, backend: str) -> str:
    """Explain why ``cuda`` cannot be used for ``key`` and what to set instead."""
    how = ('install a CUDA build of torch (see docs/jetson.md)' if backend == 'torch'
           else 'install a CUDA build of CTranslate2 (see docs/jetson.md)')
    return (f'{key} is "cuda" but {backend} sees no CUDA GPU on this machine: set {key} to "cpu" '
            f'(or "auto", which picks the GPU when there is one), or {how}')


def resolve_device(name: str, key: str = 'device', backend: str = 'torch',
                   available: Callable[[], bool] | None = None) -> str:
    """
    Turn a device setting into the device a model is loaded on: ``'cpu'`` or ``'cuda'``.

    ``auto`` is ``cuda`` when ``backend`` (``'torch'`` or ``'ctranslate2'``) sees a GPU, else
    ``cpu``; ``cuda`` without a GPU raises a :class:`DeviceError` saying what to change.
    ``available`` replaces the backend's own check (tests).
    """
    check_device(name, key)
    if name == 'cpu':
        return 'cpu'
    if available is None:
        if backend not in ('torch', 'ctranslate2'):
            raise ValueError(f'backend must be "torch" or "ctranslate2", got {backend!r}')
        available = torch_cuda_available if backend == 'torch' else ctranslate2_cuda_available
    has_cuda = available()
    if name == 'auto':
        return 'cuda' if has_cuda else 'cpu'
    if not has_cuda:
        raise DeviceError(cuda_missing_message(key, backend))
    return 'cuda'


def resolve_dtype(name: str, key: str = 'dtype') -> Any:
    """Return the ``torch.dtype`` of a precision setting (one of :data:`DTYPES`)."""
    import torch

    return getattr(torch, check_dtype(name, key))


def dtype_name(dtype: Any) -> str:
    """Return the setting name of a ``torch.dtype`` (``torch.bfloat16`` -> ``'bfloat16'``)."""
    return str(dtype).rpartition('.')[2]
