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
one a person asks about. Its prior is read inside the same prompt the answer is generated in, and a
reading's score is ``log p_projector + weight * log p_llm``. Two searches use it:

- ``beam`` (the default): a CTC prefix beam search over the token head's frames. Each hypothesis is
  a prefix of tokens with its CTC probability (summed over the frame paths that spell it); a token
  that extends a prefix adds the LLM's weighted log-probability of that token after the prefix and an
  insertion bonus (the LLM's log-probabilities are negative, so without it the search would drop
  words), and at the end the LLM judges whether the prompt's continuation (the end of the user's
  turn) follows the reading, so a sentence cut short loses. Because it searches frames, it can also
  mend what the greedy collapse decided alone: a word split in two, a short word the blank won, a
  stutter.
- ``lattice``: the greedy CTC collapse fixes the positions, and per position the LLM re-ranks the
  head's k best tokens teacher-forced on the hypothesis so far (two passes).

The injected embeddings are mixes of the adapter's ``top_k`` rows of the LLM's own table at each
token's frame, weighted by the fused scores. The shipped adapter sets ``top_k`` 1: the row of the
token read, which the LLM repeats more faithfully than a mix of two (docs/results.md, "The search's
limits").

Cost: the prompt's keys and values are computed once per prompt. The beam search first reads the
greedy reading in one pass; the hypotheses that grow at a frame and are not yet known are read
together in one batched pass along the greedy continuation, and the words every hypothesis shares
are settled into the cached context, so a pass reads only where they differ. After ``prior_passes``
passes, a prefix not yet read gets a flat prior, which bounds a long utterance's cost. Hypotheses
scoring far below the frame's best are not extended. The lattice search costs one or two passes.
Nothing is trained, and weight 0 is exactly the projector alone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
import math
from typing import Any

import numpy as np
import torch

from .projector import greedy_emits, Lattice, Projector


SEARCHES = ('beam', 'lattice')


class FusionError(ValueError):
    """Fusion settings that cannot work."""


@dataclass
class FusionConfig:
    """How strongly the LLM's prior weighs in; the one home of these defaults (YAML: ``fusion``)."""

    # 0 = the projector alone. Chosen on the QA dev split (docs/results.md, "LLM fusion").
    weight: float = 0.5
    search: str = 'beam'  # 'beam' over the head's frames, or 'lattice' re-ranking of the greedy positions
    candidates: int = 4  # tokens per frame (beam) or alternatives per position (lattice) the LLM weighs
    passes: int = 2  # lattice: re-reads with the corrected left context
    beam: int = 4  # beam: hypotheses kept after each frame
    # beam: added per token read, against the prior's bias to short readings (a rare word costs the
    # prior more than dropping it). Chosen on the QA dev split (docs/results.md, "The insertion bonus").
    insertion_bonus: float = 2.5
    # beam: the prior's weight on punctuation-only tokens ("?", ".", ","), which a speaker does not say:
    # the head guesses them from the words, and the LLM knows better that "What ..." ends in "?".
    # Chosen on the QA dev split (docs/results.md, "Punctuation from the LLM's prior").
    punctuation_weight: float = 1.5
    end_weight: float = 0.5  # beam: weight of the LLM's log-probability that the turn ends after the reading
    margin: float = 5.0  # beam: a hypothesis this far below the frame's best is not extended
    # beam: LLM passes one reading may take (the first reads the greedy reading); past them an unread
    # prefix gets a flat prior (Prior.read_along). A spoken question takes fewer; bounds a long one's cost.
    # 32, not 16: the real recordings (2-10 s) ran out at 16 and read worse under the flat prior
    # (docs/results.md, "The search's limits").
    prior_passes: int = 32
    # beam: the LLM's own most likely next tokens compete too, scored by what the head gives them at the
    # frame, so a word the head ranks too low to offer ("spider" after "How many legs does a", rank 73
    # of 49,152) can still win on the audio plus the prior. 0 = the head's candidates only. Chosen on the
    # QA dev split and the held-out sets (docs/results.md, "The LLM proposes words too").
    llm_candidates: int = 16
    llm_floor: float = -8.0  # beam: the head's log-probability an LLM candidate needs at the frame

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.weight) <= 10.0:
            raise FusionError(f'fusion weight must be in [0, 10], got {self.weight}')
        if self.search not in SEARCHES:
            raise FusionError(f'fusion search must be one of {SEARCHES}, got {self.search!r}')
        if not 1 <= int(self.candidates) <= 64:
            raise FusionError(f'fusion candidates must be in [1, 64], got {self.candidates}')
        if not 1 <= int(self.passes) <= 8:
            raise FusionError(f'fusion passes must be in [1, 8], got {self.passes}')
        if not 1 <= int(self.beam) <= 64:
            raise FusionError(f'fusion beam must be in [1, 64], got {self.beam}')
        if not 0.0 <= float(self.end_weight) <= 10.0 or not -10.0 <= float(self.insertion_bonus) <= 10.0:
            raise FusionError('fusion end_weight must be in [0, 10] and insertion_bonus in [-10, 10], got '
                              f'{self.end_weight} and {self.insertion_bonus}')
        if not 0.0 <= float(self.punctuation_weight) <= 10.0:
            raise FusionError(f'fusion punctuation_weight must be in [0, 10], got {self.punctuation_weight}')
        if not 1 <= int(self.prior_passes) <= 64:
            raise FusionError(f'fusion prior_passes must be in [1, 64], got {self.prior_passes}')
        if not 0 <= int(self.llm_candidates) <= 64:
            raise FusionError(f'fusion llm_candidates must be in [0, 64], got {self.llm_candidates}')
        if not -30.0 <= float(self.llm_floor) <= 0.0:
            raise FusionError(f'fusion llm_floor must be in [-30, 0], got {self.llm_floor}')
        if not float(self.margin) > 0.0:
            raise FusionError(f'fusion margin must be > 0, got {self.margin}')

    @property
    def enabled(self) -> bool:
        return self.weight > 0.0 and self.candidates > 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fuse(projector: Projector, llm: Any, features: torch.Tensor | np.ndarray, context_ids: list[int],
         config: FusionConfig, end_id: int | None = None) -> tuple[list[int], torch.Tensor]:
    """
    Read one utterance with the LLM's prior: (token ids, embeddings to inject [n, llm_dim]).

    ``context_ids`` is what precedes the audio in the prompt and ``end_id`` the prompt's first token
    after it (:meth:`LLM.prompt_parts`), so the LLM judges each word where it will read it.
    """
    # A prior without a tokenizer (only next_token_logprobs) spells no pieces: the plain collapse.
    pieces = getattr(llm, 'piece_texts', None)
    if not config.enabled:
        return projector.read(features, pieces)
    if config.search == 'lattice':
        return fuse_reading(projector.lattice(features, lattice_size(projector, config), pieces), projector, llm,
                            context_ids, config)
    return beam_read(projector, llm, features, context_ids, config, end_id)


def lattice_size(projector: Projector, config: FusionConfig) -> int:
    """Alternatives per position a fused reading needs: the LLM's candidates and the injected mix."""
    return max(int(config.candidates), int(projector.config.top_k))


class Prior:
    """
    The LLM's next-token log-probabilities after each prefix of a reading, inside the prompt.

    Remembered per prefix: a teacher-forced pass over a prefix gives the distribution after each of
    its shorter prefixes too, so one pass along a likely continuation answers most of a search's next
    asks. The words every hypothesis shares are *settled* into the LLM's cached context
    (:meth:`settle`), so a pass reads only where the hypotheses differ, whatever the utterance's length.
    """

    def __init__(self, llm: Any, context_ids: list[int]) -> None:
        self.llm, self.context = llm, list(context_ids)
        self.settled: tuple[int, ...] = ()
        self.known: dict[tuple[int, ...], torch.Tensor] = {}
        self.passes = 0
        self.budget: int | None = None  # set by read_along
        self.typical = 0.0
        self.top: dict[tuple[int, ...], list[int]] = {}  # memo of likeliest()

    def read_along(self, reading: tuple[int, ...], budget: int | None = None) -> None:
        """
        Read the prior along ``reading`` (the greedy one) first, and allow ``budget`` passes in all.

        Past the budget, a prefix not yet read gets a flat prior: the mean log-probability the LLM gave
        the greedy reading's own tokens, so no hypothesis is favoured for not having been read. (The
        prior at the same position of the greedy reading was tried and misled the search wherever
        the hypotheses' lengths differed from it.) It bounds what a long utterance costs.
        """
        reading = tuple(reading)
        self.read_many([reading])
        self.budget = budget
        if reading:
            picked = [float(self.known[reading[:i]][token]) for i, token in enumerate(reading)]
            self.typical = sum(picked) / len(picked)

    def likeliest(self, prefix: tuple[int, ...], n: int) -> list[int] | None:
        """Return the ``n`` likeliest next tokens after ``prefix``, or None when its prior has not been read."""
        if prefix not in self.known:
            return None
        top = self.top.get(prefix)
        if top is None or len(top) < n:
            row = self.known[prefix]
            top = self.top[prefix] = row.topk(min(n, row.numel())).indices.tolist()
        return top[:n]

    def _over_budget(self) -> bool:
        return self.budget is not None and self.passes >= self.budget

    def settle(self, prefix: tuple[int, ...]) -> None:
        """Take ``prefix`` (shared by every hypothesis from now on) into the context the LLM has cached."""
        self.settled = tuple(int(i) for i in prefix)

    def after(self, prefix: tuple[int, ...], then: tuple[int, ...] = ()) -> torch.Tensor:
        """
        Return log p_llm(next token | prompt, prefix): [V].

        If it must be read, the pass also reads on along ``then`` (a likely continuation, at most
        :data:`READ_AHEAD` tokens): on a CPU a pass over a few more tokens costs about what one over
        the prefix alone does.
        """
        if prefix not in self.known:
            if self._over_budget():  # neutral: what the greedy reading's own tokens scored on average
                return torch.full_like(self.known[()], self.typical)
            self.read_many([prefix + tuple(then)[:READ_AHEAD]])
        return self.known[prefix]

    def read_many(self, asks: list[tuple[int, ...]]) -> None:
        """Read several hypotheses in one batched pass when the LLM can (:meth:`LLM.next_token_logprobs_many`)."""
        asks = [tuple(int(i) for i in ids) for ids in asks]
        base = self.settled
        inside = [ids for ids in asks if ids[:len(base)] == base]
        outside = [ids for ids in asks if ids[:len(base)] != base]  # none in a search; read in the bare prompt
        for start, group in ((len(base), inside), (0, outside)):
            if not group:
                continue
            context = self.context + list(group[0][:start])
            hypotheses = [list(ids[start:]) + [0] for ids in group]
            many = getattr(self.llm, 'next_token_logprobs_many', None)
            if many is not None and len(group) > 1:
                results = many(context, hypotheses)
                self.passes += 1
            else:
                results = [self.llm.next_token_logprobs(context, ids) for ids in hypotheses]
                self.passes += len(group)
            for ids, rows in zip(group, results):
                for i in range(len(ids) - start + 1):
                    self.known.setdefault(ids[:start + i], rows[i])

    def prepare(self, asks: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> None:
        """Make sure the prefixes of ``asks`` (prefix, likely continuation) are known, reading what is not together."""
        if self._over_budget():
            return
        missing: dict[tuple[int, ...], tuple[int, ...]] = {}
        for prefix, then in asks:
            if prefix not in self.known and prefix not in missing:
                missing[prefix] = prefix + tuple(then)[:READ_AHEAD]
        self.read_many(list(missing.values()))


# Tokens of the greedy continuation a pass reads on along (more cost a CPU pass more than they save).
READ_AHEAD = 6
# Shared tokens gathered before they are settled into the cached context: each settling is an LLM call,
# and a few unsettled tokens cost a pass next to nothing.
SETTLE_EVERY = 6


NEG_INF = float('-inf')


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    high, low = (a, b) if a > b else (b, a)
    return high + math.log1p(math.exp(low - high))


def _shared_prefix(prefixes: list[tuple[int, ...]]) -> tuple[int, ...]:
    first = prefixes[0]
    n = len(first)
    for other in prefixes[1:]:
        n = min(n, len(other))
        n = next((i for i in range(n) if other[i] != first[i]), n)
    return first[:n]


def prior_weights(config: FusionConfig, llm: Any) -> dict[int, float]:
    """Return the prior's weight per LLM token id where it differs from ``config.weight`` (punctuation)."""
    marks = getattr(llm, 'punctuation_ids', frozenset())
    return {} if config.punctuation_weight == config.weight else dict.fromkeys(marks, float(config.punctuation_weight))


def prefix_beam_search(frame_logp: torch.Tensor, vocab_ids: torch.Tensor, prior: Prior, config: FusionConfig,
                       end_id: int | None = None) -> tuple[tuple[int, ...], list[int]]:
    """
    CTC prefix beam search with the LLM's prior: (the best prefix as head rows, the frame each was read at).

    ``frame_logp`` is [T, 1 + V] log-probabilities with the blank first. A hypothesis's score is its
    CTC log-probability (blank- and token-ending paths kept apart, so "a a" needs a blank between)
    plus its language score: per token, ``weight * log p_llm + insertion_bonus`` (with
    ``punctuation_weight`` for punctuation tokens, :func:`prior_weights`). With ``llm_candidates``, the
    LLM's most likely next tokens after a prefix are offered beside the head's best rows at each frame
    (where the head gives them at least ``llm_floor``), judged with their language score.
    """
    weight, bonus = float(config.weight), float(config.insertion_bonus)
    weights = prior_weights(config, getattr(prior, 'llm', None))
    n_llm, floor = int(config.llm_candidates), float(config.llm_floor)
    row_of: torch.Tensor | None = None
    if n_llm:  # LLM token id -> head row (-1: not in the head)
        row_of = torch.full((int(vocab_ids.max()) + 1,), -1, dtype=torch.long)
        row_of[vocab_ids] = torch.arange(vocab_ids.numel())
    beams: dict[tuple[int, ...], list[float]] = {(): [0.0, NEG_INF]}  # prefix -> [ends in blank, ends in token]
    language: dict[tuple[int, ...], float] = {(): 0.0}
    first_frame: dict[tuple[int, ...], int] = {}

    def llm_ids(prefix: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(int(vocab_ids[r]) for r in prefix)

    # What the greedy collapse reads after each frame: the continuation a prefix's prior is read along.
    greedy = frame_logp.argmax(dim=-1).tolist()
    ahead: list[tuple[int, ...]] = [()] * (len(greedy) + 1)
    for t in range(len(greedy) - 1, -1, -1):
        emits = greedy[t] != 0 and (t == 0 or greedy[t] != greedy[t - 1])
        ahead[t] = ((int(vocab_ids[greedy[t] - 1]),) if emits else ()) + ahead[t + 1]

    for t in range(frame_logp.shape[0]):
        blank = float(frame_logp[t, 0])
        top_logp, top_rows = frame_logp[t, 1:].topk(min(int(config.candidates), frame_logp.shape[1] - 1))
        best_here = max(_logaddexp(*p) + language[k] for k, p in beams.items()) + float(top_logp[0])
        head_rows = top_rows.tolist()
        own_rows = set(head_rows)  # the head's own offers at this frame, which the LLM's need not repeat
        grown: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        # The hypotheses that will grow at this frame need the prior after them: read those together.
        prior.prepare([(llm_ids(prefix), ahead[t]) for prefix, p in beams.items()
                       if _logaddexp(*p) + language[prefix] + float(top_logp[0]) >= best_here - config.margin
                       and any(prefix + (row,) not in language for row in head_rows)])
        for prefix, (p_blank, p_token) in beams.items():
            total = _logaddexp(p_blank, p_token)
            stay = grown[prefix]
            stay[0] = _logaddexp(stay[0], total + blank)
            if prefix:  # the last token held over this frame
                stay[1] = _logaddexp(stay[1], p_token + float(frame_logp[t, 1 + prefix[-1]]))
            # (log p_head, row, already judged with its language score)
            offered = [(logp, row, False) for logp, row in zip(top_logp.tolist(), head_rows)]
            if row_of is not None:
                slack = total + language[prefix] - best_here + config.margin
                offered += [(logp, row, True) for logp, row in _llm_offers(
                    prior, llm_ids(prefix), row_of, frame_logp[t], own_rows, n_llm, floor, slack, weights, weight,
                    bonus)]
            for logp, row, judged in offered:
                if not judged and total + language[prefix] + logp < best_here - config.margin:
                    continue
                longer = prefix + (row,)
                if longer not in language:
                    token = int(vocab_ids[row])
                    prior_logp = float(prior.after(llm_ids(prefix), ahead[t])[token])
                    language[longer] = language[prefix] + weights.get(token, weight) * prior_logp + bonus
                first_frame.setdefault(longer, t)
                entry = grown[longer]
                # The same token again is a new token only after a blank.
                entry[1] = _logaddexp(entry[1], (p_blank if prefix and row == prefix[-1] else total) + logp)
        ranked = sorted(grown.items(), key=lambda kv: _logaddexp(*kv[1]) + language[kv[0]], reverse=True)
        beams = dict(ranked[:int(config.beam)])
        shared = _shared_prefix(list(beams))
        if len(shared) >= len(prior.settled) + SETTLE_EVERY:
            prior.settle(llm_ids(shared))

    def final(prefix: tuple[int, ...]) -> float:
        score = _logaddexp(*beams[prefix]) + language[prefix]
        if end_id is not None and config.end_weight > 0:
            score += float(config.end_weight) * float(prior.after(llm_ids(prefix))[end_id])
        return score

    if end_id is not None and config.end_weight > 0:
        prior.prepare([(llm_ids(prefix), ()) for prefix in beams])
    best = max(beams, key=final)
    return best, [first_frame[best[:i + 1]] for i in range(len(best))]


def _llm_offers(prior: Prior, prefix: tuple[int, ...], row_of: torch.Tensor, frame: torch.Tensor,
                own: set[int], n: int, floor: float, slack: float, weights: dict[int, float],
                weight: float, bonus: float) -> list[tuple[float, int]]:
    """
    Return the LLM's ``n`` likeliest next tokens after ``prefix`` as (log p_head, row) the search may try.

    Only where the prior after ``prefix`` has been read (a prefix past the pass budget proposes
    nothing), the head gives the token at least ``floor`` at this frame (``frame``: [1 + V] with the
    blank first), it is not among the head's own offers (``own``), and its audio plus language score is within
    ``slack`` of the frame's best.
    """
    likeliest = prior.likeliest(prefix, n)
    if likeliest is None:
        return []
    after = prior.after(prefix)
    offers = []
    for token in likeliest:
        row = int(row_of[token]) if token < row_of.numel() else -1
        if row < 0 or row in own:
            continue
        logp = float(frame[1 + row])
        if logp >= floor and logp + weights.get(token, weight) * float(after[token]) + bonus >= -slack:
            offers.append((logp, row))
    return offers


def beam_read(projector: Projector, llm: Any, features: torch.Tensor | np.ndarray, context_ids: list[int],
              config: FusionConfig, end_id: int | None = None) -> tuple[list[int], torch.Tensor]:
    """
    Read one utterance by :func:`prefix_beam_search`: (token ids, embeddings to inject [n, llm_dim]).

    Each token is embedded as the mix of the head's best rows at its own frame (where the head is surest
    of it before the next token starts; the chosen token always among them), weighted by their fused
    scores after the same prefix.
    """
    logits = projector.frame_logits(features).cpu()
    frame_logp = logits.log_softmax(dim=-1)
    vocab_ids = projector.vocab_ids.cpu()
    prior = Prior(llm, context_ids)
    nothing = [], projector.mix(torch.zeros(0, 1, dtype=torch.long), torch.zeros(0, 1))
    greedy = logits.argmax(dim=-1)
    keep = greedy_emits(greedy)
    if not bool(keep.any()):
        return nothing
    # Most asks are prefixes of the greedy reading: read it first.
    prior.read_along(tuple(int(vocab_ids[r - 1]) for r in greedy[keep].tolist()), int(config.prior_passes))
    rows, frames = prefix_beam_search(frame_logp, vocab_ids, prior, config, end_id)
    if not rows:
        return nothing
    k = max(1, int(projector.config.top_k))
    weights = prior_weights(config, llm)
    mixed_rows, scores = [], []
    ends = list(frames[1:]) + [logits.shape[0]]
    for i, (row, start, end) in enumerate(zip(rows, frames, ends)):
        # The token's own frame: where the head is surest of it, between its first frame and the next token's.
        frame = start + int(frame_logp[start:max(end, start + 1), 1 + row].argmax())
        token_logp = logits[frame, 1:].log_softmax(dim=-1)
        others = [r for r in token_logp.topk(k + 1).indices.tolist() if r != row][:k - 1]
        chosen = torch.tensor([row] + others)
        after = prior.after(tuple(int(vocab_ids[r]) for r in rows[:i]))
        chosen_ids = vocab_ids[chosen]
        weight = torch.tensor([weights.get(int(token), float(config.weight)) for token in chosen_ids])
        scores.append(token_logp[chosen] + weight * after[chosen_ids])
        mixed_rows.append(chosen)
    return [int(vocab_ids[r]) for r in rows], projector.mix(torch.stack(mixed_rows), torch.stack(scores))


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
