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
Data-parallel training over several processes with plain ``torch.distributed``.

Why plain torch.distributed and not Accelerate: the projector is one small module, the loop is
ours (streamed cache, time budget, early stopping, atomic checkpoints), and what a distributed run
needs on top is a process group, a DDP wrapper and a handful of collectives. Accelerate would add a
dependency and a launcher of its own for those few lines, and would hide which rank decides what.

Launch with ``torchrun`` (see ``docs/distributed.md``); it sets ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK`` and the rendezvous address. Without ``WORLD_SIZE`` (or with 1) nothing here starts
a process group and every helper is a no-op, so a one-process run is exactly the code it always was.

Who decides what: rank 0 validates, checkpoints and writes the adapter, and its clock and cancel
flag decide when the run stops; the decisions are broadcast, so every rank takes the same number of
steps and no rank waits forever at a collective the others skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
import datetime
import gc
import os
from typing import Any

import torch
import torch.distributed as dist

from .config import TrainError


@dataclass(frozen=True)
class Dist:
    """This process's place in a run: rank, world size, and the GPU index on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ''  # '' = no process group (one process)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes (checkpoints, the adapter, logs) and validates."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank gets here (no-op for one process)."""
        if self.enabled:
            dist.barrier()

    def broadcast(self, values: list[float], device: torch.device) -> list[float]:
        """Return rank 0's ``values`` on every rank: the decisions (stop, clock) all ranks must share."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.broadcast(t, src=0)
        return t.tolist()

    def sum(self, value: float, device: torch.device) -> float:  # noqa: A003 - the collective's name
        """Return the sum of ``value`` over all ranks, on every rank."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t[0])

    def broadcast_object(self, value: Any) -> Any:
        """Return rank 0's ``value`` (any picklable object) on every rank."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def shard(self, n: int) -> slice:
        """
        Which of ``n`` items of a global batch this rank computes: a contiguous, disjoint slice.

        Sizes differ by at most one; ranks past the end get an empty slice (the caller skips such
        batches on every rank alike, see :func:`tinyalign_ros.training.trainer.train`).
        """
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))


def from_env(device: str = 'cpu', timeout_s: float = 1800.0) -> Dist:
    """
    Join the process group torchrun describes in the environment, or return the one-process context.

    The backend is gloo on the CPU and nccl on CUDA (``device`` is the ``TrainConfig.device``
    setting). Calling it again in a process already in a group returns the same context.
    """
    world = int(os.environ.get('WORLD_SIZE', '1') or 1)
    if world <= 1:
        return Dist()
    rank = int(os.environ.get('RANK', '0'))
    local_rank = int(os.environ.get('LOCAL_RANK', str(rank)))
    if not dist.is_available():
        raise TrainError('WORLD_SIZE > 1 but this torch build has no torch.distributed')
    use_cuda = device == 'cuda' or (device == 'auto' and torch.cuda.is_available())
    backend = 'nccl' if use_cuda else 'gloo'
    if not dist.is_initialized():
        if use_cuda:
            if not torch.cuda.is_available():
                raise TrainError('device cuda was asked for, but torch sees no CUDA GPU; use --device cpu')
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                backend=dist.get_backend())


def shutdown(context: Dist, finished: bool = True) -> None:
    """
    Leave the process group (each rank, at the end of a run); no-op for one process.

    After a finished run the barrier keeps a rank from tearing its group down while a peer is still
    writing, and the collection drops the DDP wrappers (and the work they hold) while the group
    still exists: gloo work destroyed later, during interpreter shutdown, can abort a rank that
    succeeded (SIGABRT, "terminate called without an active exception"). A rank that failed
    (``finished=False``) skips the barrier: its peers may be inside another collective, and leaving
    at once is what makes theirs fail fast instead of waiting out the timeout.
    """
    if not (context.enabled and dist.is_initialized()):
        return
    try:
        if finished:
            dist.barrier()
    finally:
        gc.collect()
        dist.destroy_process_group()
