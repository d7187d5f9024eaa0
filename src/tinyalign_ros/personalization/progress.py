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
Progress of a personalization run, as the job contract's :class:`~tinyalign_ros.personalization.api.Progress` reports.

The run's internal steps (recording, encoding, scoring before, training, scoring after, saving) map
onto the contract's phases and onto one progress fraction that never moves back.
"""

from __future__ import annotations

from dataclasses import replace
import logging
import math
import threading
import time
from typing import Callable

from .api import PHASE_ENCODING, PHASE_EVALUATING, PHASE_RECORDING, PHASE_SAVING, PHASE_TRAINING, Progress

log = logging.getLogger(__name__)


PHASE_SPANS = {'recording': (0.0, 0.1), 'encoding': (0.1, 0.3), 'before': (0.3, 0.4), 'training': (0.4, 0.85),
               'after': (0.85, 0.95), 'saving': (0.95, 1.0)}
PHASE_NAMES = {'recording': PHASE_RECORDING, 'encoding': PHASE_ENCODING, 'before': PHASE_EVALUATING,
               'training': PHASE_TRAINING, 'after': PHASE_EVALUATING, 'saving': PHASE_SAVING}


class Reporter:
    """
    Turn the run's steps into Progress reports.

    The last one is repeated twice a second from a heartbeat thread, so a listener hears from the
    job even while one long call (an LLM generation, an encoder batch) runs.
    """

    def __init__(self, on_progress: Callable[[Progress], None], start_at: float = 0.0, period_s: float = 0.5) -> None:
        self._on_progress = on_progress
        self._start_at = start_at
        self._period = period_s
        self._lock = threading.Lock()
        self._last: Progress | None = None
        self._sent_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name='personalize-progress', daemon=True)
        self.phase = 'recording'

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def __call__(self, phase: str, within: float = 0.0, step: int = 0, loss: float | None = None,
                 eta_s: float | None = None, message: str = '') -> None:
        self.phase = phase
        low, high = PHASE_SPANS[phase]
        fraction = low + (high - low) * min(max(within, 0.0), 1.0)
        progress = self._start_at + (1 - self._start_at) * fraction
        with self._lock:
            # A phase can hold several counted readings (an accepted run's scores, then its LLM
            # readings), each counting from zero: a progress bar must still never move back.
            if self._last is not None:
                progress = max(progress, self._last.progress)
        report = Progress(PHASE_NAMES[phase], progress=progress, step=step,
                          loss=math.nan if loss is None else float(loss),
                          eta_s=-1.0 if eta_s is None else max(0.0, float(eta_s)), message=message)
        self._send(report)

    def _send(self, report: Progress) -> None:
        with self._lock:
            self._last, self._sent_at = report, time.monotonic()
        try:
            self._on_progress(report)
        except Exception:  # noqa: BLE001 - a broken listener must not break the run
            log.exception('progress callback failed')

    def _beat(self) -> None:
        while not self._stop.wait(self._period):
            with self._lock:
                last, since = self._last, time.monotonic() - self._sent_at
            if last is not None and since >= self._period:
                eta = last.eta_s - since if last.eta_s >= 0 else -1.0
                self._send(replace(last, eta_s=max(0.0, eta) if eta >= 0 else -1.0))
