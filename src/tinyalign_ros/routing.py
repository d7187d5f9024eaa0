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
Per-utterance routing between the projected audio and Whisper's transcript.

Answer from the projected audio when the aligned path is sure of what it heard, else from
Whisper's transcript.

The aligned path skips Whisper's decoder, which is most of the cascade's latency, but it reads some
utterances (an unusual voice, a noisy room, words it never learned) far worse than Whisper. Its own
token head says how sure it is: :func:`confidence` is the mean, over the positions where the head
emits a token, of the probability margin between its best and second-best token. A threshold on
that number, learned per operator from held-out speech (:func:`learn_threshold`), decides each
utterance. Only the projector's logits are needed (``projector(x, lengths).logits``), so the
decision costs one projector pass that the aligned path makes anyway. An utterance sent to Whisper
is decoded from the same fitted-window encoder pass (:meth:`WhisperEncoder.transcribe_encoded`), so
the decision does not add a second encoding to the fallback. benchmarks/bench_routing.py learns its
threshold from that reading's errors; a personalization, from the cascade's 30 s reading, which it
has read already for its gate.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, Sequence

import numpy as np
import torch

# How an utterance is answered: from the projected audio, from Whisper's transcript, or chosen per
# utterance by the aligned path's confidence. A path fixed in advance (a configuration, an operator's
# recorded mode) is one of the first two.
MODES = ('aligned', 'cascade', 'auto')
FIXED_MODES = MODES[:2]

# Used until a personalization has learned an operator's own threshold: what benchmarks/bench_routing.py
# learned for the shipped (alignment-v2) adapter on 32 dev utterances of two voices, against Whisper's
# reading of the fitted window (0.94: on them no utterance went to the aligned path, whose readings
# made 37 word errors there against Whisper's 19; docs/results.md, "auto mode reads Whisper from the
# fitted window"). Rerun the benchmark when the base adapter changes.
DEFAULT_THRESHOLD = 0.94


@dataclass
class Confidence:
    """How sure the token head is about one utterance."""

    margin: float  # mean top-1 minus top-2 probability over emitting positions (0..1)
    entropy: float  # mean entropy (nats) of the token distribution over emitting positions
    n_tokens: int  # positions where a token (not the blank) wins

    def to_dict(self) -> dict[str, Any]:
        return {'margin': round(self.margin, 4), 'entropy': round(self.entropy, 4), 'n_tokens': self.n_tokens}


@torch.no_grad()
def confidence_from_logits(logits: torch.Tensor, blank_bias: float = 0.0) -> Confidence:
    """
    Confidence of one utterance from its head logits ``[T, 1 + V]`` (blank first).

    Only positions where a token beats the blank count: blank frames are silence and between-word
    gaps, and every projector is sure about those. An utterance with no token at all scores 0 (the
    aligned path heard nothing, so Whisper should get a chance).
    """
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f'expected logits [positions, 1 + vocabulary], got {tuple(logits.shape)}')
    scores = logits.float().clone()
    scores[:, 0] += blank_bias
    best = scores.argmax(dim=-1)
    emitting = best != 0
    n = int(emitting.sum())
    if n == 0:
        return Confidence(0.0, math.inf, 0)
    tokens = scores[emitting, 1:].softmax(dim=-1)
    k = min(2, tokens.shape[1])
    top = tokens.topk(k, dim=-1).values
    margin = top[:, 0] - (top[:, 1] if k > 1 else 0.0)
    entropy = -(tokens * tokens.clamp_min(1e-12).log()).sum(dim=-1)
    return Confidence(float(margin.mean()), float(entropy.mean()), n)


@torch.no_grad()
def confidence(projector: Any, features: np.ndarray | torch.Tensor) -> Confidence:
    """Confidence of the projector's reading of one utterance's encoder features ``[frames, d]``."""
    was_training = projector.training
    projector.eval()
    try:
        x = torch.as_tensor(np.asarray(features, dtype=np.float32))
        if x.dim() == 2:
            x = x.unsqueeze(0)
        lengths = torch.tensor([x.shape[1]], dtype=torch.long)
        out = projector(x, lengths)
        if out.logits is None:
            return Confidence(0.0, math.inf, 0)
        n = int(out.lengths[0])
        return confidence_from_logits(out.logits[0, :n], float(getattr(projector.config, 'blank_bias', 0.0)))
    finally:
        projector.train(was_training)


def learn_threshold(margins: Sequence[float], aligned_errors: Sequence[float], cascade_errors: Sequence[float],
                    default: float = DEFAULT_THRESHOLD) -> tuple[float, dict[str, Any]]:
    """
    Learn the margin above which an utterance is answered from the projected audio.

    Every candidate threshold (each observed margin, and one above them all = always the cascade) is
    scored by the word errors its routing would make on these utterances (aligned errors where the
    margin clears it, cascade errors elsewhere); among the best, the lowest threshold wins, since the
    aligned path answers sooner. Returns the threshold and the numbers behind it.
    """
    if not (len(margins) == len(aligned_errors) == len(cascade_errors)):
        raise ValueError('margins, aligned_errors and cascade_errors must have the same length')
    if not margins:
        return default, {'n': 0, 'reason': 'no held-out utterances: default threshold'}
    m = np.asarray(margins, dtype=float)
    a = np.asarray(aligned_errors, dtype=float)
    c = np.asarray(cascade_errors, dtype=float)
    candidates = sorted(set(m.tolist())) + [float(m.max()) + 1e-6]
    best_t, best_err = candidates[-1], float(c.sum())
    for t in candidates:
        errors = float(np.where(m >= t, a, c).sum())
        if errors < best_err - 1e-9 or (abs(errors - best_err) <= 1e-9 and t < best_t):
            best_t, best_err = t, errors
    routed = m >= best_t
    numbers = {'n': len(m), 'aligned_share': round(float(routed.mean()), 4),
               'errors_auto': round(best_err, 4), 'errors_aligned': round(float(a.sum()), 4),
               'errors_cascade': round(float(c.sum()), 4)}
    return round(float(best_t), 6), numbers


def route(margin: float, threshold: float) -> str:
    """'aligned' when the head is at least ``threshold`` sure, else 'cascade'."""
    return 'aligned' if margin >= threshold else 'cascade'


__all__ = ['Confidence', 'DEFAULT_THRESHOLD', 'confidence', 'confidence_from_logits', 'learn_threshold', 'route']
