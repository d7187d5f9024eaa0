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
The quality gate: keep a newly trained adapter or not, and answer the operator on the aligned path or the cascade.

The gate compares the scores of the starting and the new adapter on the operator's held-out speech
and on the canary; :func:`decide_mode` picks the per-operator mode from the same numbers. The
scores are taken of exactly the weights that would be stored (:func:`as_saved`) and remembered
under their fingerprint (:func:`projector_digest`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
import json
from typing import Any

import torch

from .config import PersonalizeConfig
from ..projector import Projector


def gate(before: dict[str, float], after: dict[str, float], config: PersonalizeConfig) -> tuple[bool, str]:
    """Keep the new adapter? Only for a real, margin-sized improvement that costs the canary little."""
    name = config.gate_metric
    b, a = before.get(name), after.get(name)
    if a is None or b is None:
        return False, f'{name} could not be measured (before {b}, after {a})'
    change = (a - b) / b if b > 0 else 0.0
    summary = f'{name} {b:.3f} -> {a:.3f} ({change:+.0%})'
    if b <= 0:
        return False, f'{summary}: already perfect, nothing to gain'
    if not a <= b * (1 - config.gate_margin) or not a < b:
        return False, f'{summary}: needs at least -{config.gate_margin:.0%}'
    cb, ca = before.get('wer_canary'), after.get('wer_canary')
    if cb is not None and ca is not None:
        if ca > cb + config.canary_tolerance:
            return False, (f'{summary}, but the general canary got worse: wer {cb:.3f} -> {ca:.3f} '
                           f'(tolerance +{config.canary_tolerance:.3f})')
        summary += f', canary {cb:.3f} -> {ca:.3f}'
    return True, summary


def decide_mode(aligned_wer: float | None, cascade_wer: float | None) -> str:
    """'cascade' while the aligned path hears the operator worse than Whisper's transcription does."""
    if aligned_wer is None or cascade_wer is None:
        return 'aligned'
    return 'cascade' if aligned_wer > cascade_wer else 'aligned'


@dataclass
class Scores:
    """Everything measured for one adapter in one run."""

    heldout: dict[str, Any]
    canary: float | None
    details: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0  # what the fast readings took when they were measured (a cache hit costs ~0)
    repeat_seconds: float | None = None  # the same for the LLM reading, once it has been measured

    def metrics(self, cascade: float | None) -> dict[str, float]:
        out = {k: self.heldout.get(k) for k in ('wer_nearest', 'wer_repeat', 'nll_audio')}
        out['wer_canary'] = self.canary
        out['wer_cascade'] = cascade
        return {k: float(v) for k, v in out.items() if v is not None}


@torch.no_grad()
def as_saved(projector: Projector) -> Projector:
    """
    Round the weights in place the way an adapter file stores them.

    Float16, the logit scale in float32: the gate then judges exactly the adapter that is kept, and
    its remembered scores are found again when it is loaded as the next run's start.
    """
    for name, parameter in projector.named_parameters():
        if name != 'logit_scale':
            parameter.copy_(parameter.half().float())
    return projector


def projector_digest(projector: Projector) -> str:
    """
    Fingerprint an adapter's weights and design.

    Scores remembered under the fingerprint are the scores of exactly these weights (a retrained or
    edited adapter gets a new one).
    """
    h = hashlib.sha256(json.dumps(projector.config.to_dict(), sort_keys=True, default=str).encode())
    named = sorted(projector.named_parameters()) + [('vocab_ids', projector.vocab_ids)]
    for name, tensor in named:  # buffers derived from the LLM are covered by its identity in the key
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes()
                 if tensor.is_floating_point() else tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]
