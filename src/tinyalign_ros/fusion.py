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
LLM fusion: the frozen LLM's own prior chooses between the projector's close alternatives.

Why: the projector hears sounds, the LLM knows language. When the token head is torn between
" friends" and " France" after "What is the capital of", the LLM that will read the audio knows which
one a person asks about. Fusion reads the projector's lattice (:meth:`Projector.lattice`: the k best
tokens per emitted position), scores every alternative with the LLM teacher-forced on the hypothesis
so far, inside the same prompt the answer is generated in, and keeps per position the token that
maximizes ``log p_projector + weight * log p_llm``. A second pass re-reads with the corrected
left context. The injected embeddings stay mixes of the LLM's own rows, now weighted by the fused
scores, so the answer is still generated from projected audio, not from a transcript.

Cost: one teacher-forced LLM pass over prompt + utterance per pass (the prompt's keys and values are
computed once per prompt and reused). Nothing is trained, and weight 0 is exactly the projector alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from .projector import Lattice, Projector


class FusionError(ValueError):
    """Fusion settings that cannot work."""


@dataclass
class FusionConfig:
    """How strongly the LLM's prior weighs in; the one home of these defaults (YAML: ``fusion``)."""

    weight: float = 1.0  # 0 = the projector alone; chosen on the QA dev split (docs/results.md)
    candidates: int = 4  # alternatives per emitted position the LLM chooses among
    passes: int = 2  # re-reads with the corrected left context

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.weight) <= 10.0:
            raise FusionError(f'fusion weight must be in [0, 10], got {self.weight}')
        if not 1 <= int(self.candidates) <= 64:
            raise FusionError(f'fusion candidates must be in [1, 64], got {self.candidates}')
        if not 1 <= int(self.passes) <= 8:
            raise FusionError(f'fusion passes must be in [1, 8], got {self.passes}')

    @property
    def enabled(self) -> bool:
        return self.weight > 0.0 and self.candidates > 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fuse(projector: Projector, llm: Any, features: torch.Tensor | np.ndarray, context_ids: list[int],
         config: FusionConfig) -> tuple[list[int], torch.Tensor]:
    """
    Read one utterance with the LLM's prior: (token ids, embeddings to inject [n, llm_dim]).

    ``context_ids`` is what precedes the audio in the prompt (:meth:`LLM.prompt_parts`), so the LLM
    judges each word where it will read it.
    """
    return fuse_reading(projector.lattice(features, lattice_size(projector, config)), projector, llm, context_ids,
                        config)


def lattice_size(projector: Projector, config: FusionConfig) -> int:
    """Alternatives per position a fused reading needs: the LLM's candidates and the injected mix."""
    return max(int(config.candidates), int(projector.config.top_k))


def fuse_reading(reading: Lattice, projector: Projector, llm: Any, context_ids: list[int],
                 config: FusionConfig) -> tuple[list[int], torch.Tensor]:
    """Like :func:`fuse`, on a lattice already read (its best column is the projector-alone reading)."""
    return pick(reading, fused_scores(reading, llm, context_ids, config), projector.config.top_k, projector)


def fused_scores(reading: Lattice, llm: Any, context_ids: list[int], config: FusionConfig) -> torch.Tensor:
    """Return ``log p_projector + weight * log p_llm`` for every lattice alternative: [n, k]."""
    scores = reading.logp.clone()
    n = len(reading)
    if n == 0 or not config.enabled:
        return scores
    candidates = min(int(config.candidates), reading.ids.shape[1])
    choice = torch.zeros(n, dtype=torch.long)
    for _ in range(int(config.passes)):
        hypothesis = reading.ids[torch.arange(n), choice]
        prior = llm.next_token_logprobs(context_ids, hypothesis.tolist())  # [n, V]
        fused = reading.logp[:, :candidates] + config.weight * prior.gather(1, reading.ids[:, :candidates])
        new_choice = fused.argmax(dim=-1)
        scores = reading.logp.clone()
        scores[:, :candidates] = fused
        if torch.equal(new_choice, choice):
            break
        choice = new_choice
    return scores


def pick(reading: Lattice, scores: torch.Tensor, top_k: int,
         projector: Projector) -> tuple[list[int], torch.Tensor]:
    """Keep per position the best-scored token and embed the top_k best as a score-weighted mix."""
    if len(reading) == 0:
        return [], projector.mix(reading.rows, scores)
    k = min(int(top_k), scores.shape[1])
    order = scores.argsort(dim=-1, descending=True)[:, :k]
    ids = reading.ids.gather(1, order)
    rows = reading.rows.gather(1, order)
    return ids[:, 0].tolist(), projector.mix(rows, scores.gather(1, order))
