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
The settings of one training run (:class:`TrainConfig`), and how a run fails or is cancelled.

The base-adapter recipe (``assets/recipes/align.yaml``, read by :mod:`.align`) and a
personalization run (:mod:`tinyalign_ros.personalization.job`) both end in a ``TrainConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..device import DeviceError, DEVICES, DTYPES, resolve_device, resolve_dtype
from ..strict import build

OBJECTIVES = ('ctc', 'slots', 'ce')


class TrainError(RuntimeError):
    """Training cannot start or continue (no data, bad settings)."""


class Cancelled(Exception):
    """Raised inside the loop when the cancel flag is set; the caller keeps the previous adapter."""


@dataclass
class TrainConfig:
    objective: str = 'ctc'
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    max_steps: int = 20000
    max_time_s: float = 3000.0
    batch_size: int = 16
    grad_clip: float = 1.0
    seed: int = 0
    val_items: int = 64  # held out from the training items (by utterance) for early stopping
    eval_every: int = 500
    patience: int = 6  # evaluations without a better validation WER before stopping
    time_mask: int = 2  # SpecAugment-style masks over encoder frames (count; width <= 8 frames)
    feature_dropout: float = 0.1
    min_lr_ratio: float = 0.05
    lora_rank: int = 0  # ce only: LoRA rank on the LLM's q/v projections (0 = frozen LLM)
    negatives: int = 4096  # ctc only: vocabulary rows sampled per step besides the batch's own (0 = all)
    hard_negatives: int = 8  # ctc only: nearest head rows of each target token added to every step's sample
    # L2-SP: weight of a pull toward the starting weights (sum of squared differences, mean per
    # parameter tensor). Fine-tuning on a few minutes of one voice drifts away from what the start
    # knew; this keeps it near, so general speech is not forgotten. 0 = plain fine-tuning.
    anchor: float = 0.0
    # True: the learning rate decays over whichever runs out first, steps or seconds. False: over the
    # steps alone, so a run is reproducible whatever the machine's load (the time budget still stops it).
    schedule_by_time: bool = True
    device: str = 'cpu'  # cpu | cuda | auto (cuda when present); under torchrun each rank uses its LOCAL_RANK GPU
    # Autocast precision of the forward: float32 (off: a CPU run's numbers stay those of the code before
    # devices were configurable) | float16 | bfloat16.
    dtype: str = 'float32'

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise TrainError(f'objective must be one of {OBJECTIVES}, got {self.objective!r}')
        if self.batch_size < 1 or self.max_steps < 1 or self.lr <= 0:
            raise TrainError('batch_size, max_steps and lr must be positive')
        if self.negatives < 0:
            raise TrainError(f'negatives must be >= 0, got {self.negatives}')
        if self.anchor < 0:
            raise TrainError(f'anchor must be >= 0, got {self.anchor}')
        if self.device not in DEVICES:
            raise TrainError(f'device must be one of {DEVICES}, got {self.device!r}')
        if self.dtype not in DTYPES:
            raise TrainError(f'dtype must be one of {DTYPES}, got {self.dtype!r}')

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return build(cls, data, TrainError, 'training settings')


# Training keeps its own small resolver until the inference side's device module lands; both answer
# the same question (which torch device a setting names) and are meant to become one at the merge.
def resolve_train_device(name: str, local_rank: int = 0) -> torch.device:
    """
    Return the torch device a ``TrainConfig.device`` setting names on this machine.

    ``auto`` is CUDA when present, else the CPU (:func:`tinyalign_ros.device.resolve_device`, the
    same rule and message as inference). A CUDA run under torchrun takes the GPU of its
    ``local_rank``, so the processes of one node never share a GPU. Asking for CUDA where there is
    none is an error, not a silent fall back to a run 50x slower.
    """
    try:
        kind = resolve_device(name, 'device')
    except DeviceError as exc:
        raise TrainError(str(exc)) from exc
    if kind == 'cpu':
        return torch.device('cpu')
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise TrainError(f'local rank {local_rank} needs GPU {local_rank}, but this node has {count}; '
                         'start at most one process per GPU (torchrun --nproc_per_node)')
    return torch.device('cuda', local_rank)


def resolve_train_dtype(name: str, device: torch.device) -> torch.dtype:
    """
    Return the autocast precision for ``device``; refuse one the device cannot run.

    float16 on the CPU is refused: CPU autocast is meant for bfloat16, and without a gradient scaler
    (a CUDA-only tool) small float16 gradients would underflow to zero.
    """
    if name not in DTYPES:
        raise TrainError(f'dtype must be one of {DTYPES}, got {name!r}')
    if name == 'float16' and device.type != 'cuda':
        raise TrainError('dtype float16 needs a CUDA device (use bfloat16 on the CPU)')
    if name == 'bfloat16' and device.type == 'cuda' and not torch.cuda.is_bf16_supported():
        raise TrainError(f'{torch.cuda.get_device_name(device)} does not support bfloat16; use float16')
    return resolve_dtype(name)
