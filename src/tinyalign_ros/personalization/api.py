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
The personalization job contract: what a caller (the ROS nodes, the CLI) and the engine agree on, as plain Python types.

The personalize action server and the adapter services are written against these Protocols and
dataclasses, not against :mod:`tinyalign_ros.personalization.job` itself, so that:

- the node can be tested with a fake job (no training in node tests);
- the engine stays ROS-free: it receives numpy audio and Python values, never messages;
- both sides agree on one contract, checked by the type checker and by the node tests.

The engine provides a *backend factory*: a callable ``factory(context: BackendContext) -> Backend``
named by the node's ``personalize.backend`` parameter as ``'module:attribute'``. A backend
bundles the job that trains adapters and the store that keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import importlib
import math
from pathlib import Path
import re
import threading
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

SOURCE_RECORD = 'record'
SOURCE_FOLDER = 'folder'
SOURCE_ROSBAG = 'rosbag'
SOURCES = (SOURCE_RECORD, SOURCE_FOLDER, SOURCE_ROSBAG)

PHASE_RECORDING = 'recording'
PHASE_ENCODING = 'encoding'
PHASE_TRAINING = 'training'
PHASE_EVALUATING = 'evaluating'
PHASE_SAVING = 'saving'
PHASES = (PHASE_RECORDING, PHASE_ENCODING, PHASE_TRAINING, PHASE_EVALUATING, PHASE_SAVING)

# An operator id names a folder in the adapter store: no separators, no dots, nothing hidden.
# Always applied with ``fullmatch``: ``match`` with ``$`` lets a trailing newline through.
OPERATOR_ID_PATTERN = re.compile(r'[A-Za-z0-9][A-Za-z0-9_-]{0,63}')


class OperatorIdError(ValueError):
    """An operator id that could escape the store folder or is otherwise unusable."""


def validate_operator_id(operator_id: str) -> str:
    """Return ``operator_id`` if it is safe to use as a folder name, else raise OperatorIdError."""
    if not isinstance(operator_id, str) or not OPERATOR_ID_PATTERN.fullmatch(operator_id):
        raise OperatorIdError(
            f'operator id {operator_id!r} is not allowed: use 1-64 letters, digits, "_" or "-", '
            'starting with a letter or digit (no "/", "\\", "." or spaces)'
        )
    return operator_id


@dataclass
class Limits:
    """Budgets of one personalization run; ``None`` means the job's own default."""

    max_utterances: int | None = None
    max_record_s: float | None = None
    max_train_s: float | None = None
    max_steps: int | None = None

    def __post_init__(self) -> None:
        for name in ('max_utterances', 'max_steps'):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f'{name} must be a positive integer or None, got {value!r}')
        for name in ('max_record_s', 'max_train_s'):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be a positive number of seconds or None, got {value!r}')


@dataclass
class TrainingOptions:
    """How to train; empty strings / ``None`` mean the job's defaults."""

    holdout: int | None = None
    holdout_ids: list[str] = field(default_factory=list)
    objective: str = ''
    method: str = ''  # 'projector', 'lora' or 'input' (the first layer block only)
    pseudo_label: bool = False
    gate_margin: float | None = None
    seed: int | None = None


@dataclass
class PersonalizeRequest:
    """
    One run: whose voice, where the speech comes from, and the budgets.

    ``utterances`` holds the recorded enrollment answers (float32 mono 16 kHz, prompt text) when
    ``source`` is SOURCE_RECORD; for folder and rosbag sources it is empty and the job reads
    ``path`` (a rosbag's ``topics`` are [audio topic, transcript topic]).
    """

    operator_id: str
    source: str
    path: str = ''
    topics: list[str] = field(default_factory=list)
    utterances: list[tuple[np.ndarray, str]] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    options: TrainingOptions = field(default_factory=TrainingOptions)

    def __post_init__(self) -> None:
        validate_operator_id(self.operator_id)
        if self.source not in SOURCES:
            raise ValueError(f'source must be one of {SOURCES}, got {self.source!r}')


@dataclass
class Progress:
    """What the job reports while it runs (becomes the action's feedback)."""

    phase: str
    progress: float = 0.0  # 0..1 over the whole run
    step: int = 0
    loss: float = math.nan
    eta_s: float = -1.0  # negative: unknown
    message: str = ''


@dataclass
class PersonalizeResult:
    """
    The outcome. ``accepted``: the quality gate kept the new adapter (it is in the store).

    ``canceled``: the run stopped because of the cancel event and changed nothing in the store.
    ``cancel_too_late``: the cancel arrived after the store was switched; the run counts as done
    (``success``) and the message says so. ``skipped``: input files or answers left out, each
    with the reason (the run goes on when enough remain).
    """

    success: bool
    accepted: bool = False
    message: str = ''
    adapter_id: str = ''
    adapter_path: str = ''
    mode: str = 'aligned'  # how the operator should be answered from now on
    metrics_before: dict[str, float] = field(default_factory=dict)
    metrics_after: dict[str, float] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)  # seconds per phase and 'total'
    n_train: int = 0
    n_holdout: int = 0
    canceled: bool = False
    cancel_too_late: bool = False
    skipped: list[str] = field(default_factory=list)


CANCEL_TOO_LATE = 'the cancel came too late: the run had already saved its result'

GOAL_SUCCEEDED = 'succeeded'
GOAL_CANCELED = 'canceled'
GOAL_ABORTED = 'aborted'


def goal_status(result: PersonalizeResult, cancel_requested: bool) -> tuple[str, str]:
    """
    Decide the terminal state of a goal and its message from what the job did.

    A cancel is only honoured when the job stopped before changing the store: a job that reports
    success had already switched the store when it saw the cancel (or never saw it), so the goal
    SUCCEEDS and the message says the cancel came too late. This keeps the goal's state, the
    store and the adapter the node answers with in agreement.
    """
    message = result.message
    if result.canceled:
        return GOAL_CANCELED, message
    if result.success:
        if (cancel_requested or result.cancel_too_late) and CANCEL_TOO_LATE not in message:
            message = f'{message}; {CANCEL_TOO_LATE}' if message else CANCEL_TOO_LATE
        return GOAL_SUCCEEDED, message
    if cancel_requested:
        return GOAL_CANCELED, message
    return GOAL_ABORTED, message


@dataclass
class AdapterVersion:
    """One stored adapter of one operator."""

    adapter_id: str
    operator_id: str
    path: str
    created: str = ''  # ISO 8601
    active: bool = False
    metrics: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class PersonalizeJob(Protocol):
    """
    Trains an adapter for one operator. Must honour ``cancel`` within about a second.

    The caller sets ``cancel`` as soon as a cancel is requested (not on its next feedback tick):
    the job decides at one point under the store's lock whether the cancel still prevents the
    switch of the active adapter, and reports the decision (``canceled`` or ``cancel_too_late``).
    """

    def run(self, request: PersonalizeRequest, on_progress: Callable[[Progress], None],
            cancel: threading.Event) -> PersonalizeResult:
        ...


def run_in_thread(job: PersonalizeJob, request: PersonalizeRequest, on_progress: Callable[[Progress], None],
                  cancel: threading.Event, poll_s: float = 0.2,
                  on_poll: Callable[[], None] | None = None) -> PersonalizeResult:
    """
    Run ``job`` in a worker thread and wait for it; the one runner of the CLI and the action server.

    ``on_poll`` runs every ``poll_s`` while the job works (feedback, cancel checks). Ctrl-C sets
    ``cancel`` and waits for the job to stop cleanly, so the previous adapter stays active. A job
    that raises, or returns something else, becomes a failed result instead of killing the caller.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box['result'] = job.run(request, on_progress, cancel)
        except Exception as exc:  # noqa: BLE001 - becomes the result's failure message
            box['result'] = PersonalizeResult(success=False, message=f'job failed: {type(exc).__name__}: {exc}')

    worker = threading.Thread(target=target, name='tinyalign_personalize', daemon=True)
    worker.start()
    while worker.is_alive():
        try:
            if on_poll is not None:
                on_poll()
            worker.join(timeout=poll_s)
        except KeyboardInterrupt:
            cancel.set()
            worker.join()
    result = box.get('result')
    if not isinstance(result, PersonalizeResult):
        return PersonalizeResult(success=False, message=f'job returned {type(result).__name__}, '
                                 'not a PersonalizeResult')
    return result


@runtime_checkable
class AdapterStore(Protocol):
    """Per-operator adapter versions with an atomically switched ``active`` pointer."""

    def operators(self) -> list[str]:
        ...

    def versions(self, operator_id: str) -> list[AdapterVersion]:
        """Kept versions, oldest first."""

    def active(self, operator_id: str) -> AdapterVersion | None:
        ...

    def activate(self, operator_id: str, adapter_id: str) -> AdapterVersion:
        """Make a kept version active; raises KeyError for an unknown one."""

    def rollback(self, operator_id: str) -> AdapterVersion | None:
        """Re-activate the version that was active before the current one (None: no adapter)."""

    def mode(self, operator_id: str) -> str:
        """'aligned', or 'cascade' while the aligned path is worse for this operator."""


@dataclass
class BackendContext:
    """What the node hands the engine's backend factory: the loaded models and where to store."""

    pipeline: Any  # tinyalign_ros.pipeline.Pipeline, shared so models are loaded once
    store_dir: Path
    work_dir: Path
    log: Callable[[str], None] = print


@dataclass
class Backend:
    job: PersonalizeJob
    store: AdapterStore


class BackendError(RuntimeError):
    """The personalization backend named by a parameter cannot be loaded."""


def load_backend(spec: str, context: BackendContext) -> Backend:
    """Import ``'package.module:factory'`` and call it with ``context``."""
    module_name, _, attr = spec.partition(':')
    if not module_name or not attr:
        raise BackendError(f'backend must look like "package.module:factory", got {spec!r}')
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f'cannot import personalization backend module {module_name!r}: {exc}') from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise BackendError(f'{module_name} has no callable {attr!r} (the personalization backend factory)')
    backend = factory(context)
    if not isinstance(backend.job, PersonalizeJob) or not isinstance(backend.store, AdapterStore):
        raise BackendError(f'{spec} returned a backend whose job/store do not implement the protocols')
    return backend
