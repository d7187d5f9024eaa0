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
Tests for LLM fusion: the projector's lattice, the LLM's teacher-forced prior and their combination.

Mechanics on the tiny random models, and the decision itself with a stand-in prior whose preferences
are known, so each check can fail.
"""

from __future__ import annotations

import pytest
from test_projector import ENC, feats, LLM_DIM, make, small
from tinyalign_ros.config import ConfigError, load_config
from tinyalign_ros.fusion import fuse, FusionConfig, FusionError, prefix_beam_search, Prior, SEARCHES
from tinyalign_ros.llm import LLM, LLMError, PromptConfig
from tinyalign_ros.projector import build_projector
import torch


class PreferringPrior:
    """Stand-in for the LLM's prior: every position strongly prefers one token."""

    def __init__(self, token: int, vocab: int) -> None:
        self.token, self.vocab, self.calls = token, vocab, []

    def next_token_logprobs(self, context_ids: list[int], ids: list[int]) -> torch.Tensor:
        self.calls.append((list(context_ids), list(ids)))
        logp = torch.full((len(ids), self.vocab), -30.0)
        logp[:, self.token] = 0.0
        return logp


def torn_projector(llm: LLM, first: int, second: int, lead: float) -> torch.nn.Module:
    """Build a one-frame-per-position projector whose head prefers ``first`` over ``second`` by about ``lead``."""
    projector = build_projector(small('linear', reduce_factor=1, reduction='stack', top_k=2)).eval()
    projector.bind_llm(llm.embedding_matrix)
    table = llm.embedding_matrix.detach().float()
    centred = torch.nn.functional.normalize(table - table.mean(dim=0), dim=1)
    with torch.no_grad():
        projector.out.weight.zero_()
        projector.out.bias.zero_()
        projector.blank.weight.zero_()
        projector.blank.bias.fill_(-100.0)
        projector.out.weight[:, 0] = centred[first] + centred[second] * (1.0 - lead)
        projector.logit_scale.fill_(4.0)
    return projector


def one_frame() -> torch.Tensor:
    x = torch.zeros(1, ENC)
    x[0, 0] = 1.0
    return x


def test_weight_zero_is_exactly_the_projector_alone(llm: LLM) -> None:
    projector = make('bridgeformer', seed=3)
    projector.bind_llm(llm.embedding_matrix)
    x = feats(1, 60, seed=4)[0]
    context, _ = llm.prompt_parts(PromptConfig())
    ids, embeds = fuse(projector, llm, x, context, FusionConfig(weight=0.0))
    assert ids == projector.decode_ids(x)
    torch.testing.assert_close(embeds, projector.project(x))


@pytest.mark.parametrize('search', SEARCHES)
def test_the_prior_flips_an_unsure_position_but_not_a_sure_one(llm: LLM, search: str) -> None:
    a, b = 40, 41
    vocab = llm.embedding_matrix.shape[0]
    unsure = torn_projector(llm, a, b, lead=0.05)
    assert unsure.decode_ids(one_frame()) == [a]
    prior = PreferringPrior(b, vocab)
    ids, embeds = fuse(unsure, prior, one_frame(), [1, 2, 3], FusionConfig(weight=1.0, candidates=4, search=search))
    assert ids == [b]
    assert prior.calls and prior.calls[0][0] == [1, 2, 3]  # judged inside the prompt's context
    table = llm.embedding_matrix.detach().float()
    # The injected position is now mostly b's row: closer to b than to a.
    assert torch.dist(embeds[0], table[b]) < torch.dist(embeds[0], table[a])
    sure = torn_projector(llm, a, b, lead=0.9)
    assert fuse(sure, PreferringPrior(b, vocab), one_frame(), [1], FusionConfig(weight=0.2, search=search))[0] == [a]


@pytest.mark.parametrize('search', SEARCHES)
def test_a_token_outside_the_candidates_is_never_chosen(llm: LLM, search: str) -> None:
    a, b, c = 40, 41, 300
    projector = torn_projector(llm, a, b, lead=0.05)
    ids, _ = fuse(projector, PreferringPrior(c, llm.embedding_matrix.shape[0]), one_frame(), [1],
                  FusionConfig(weight=5.0, candidates=2, search=search))
    assert c not in ids  # the prior cannot invent a word the projector did not hear
    # The lattice keeps every position; the beam may drop one the prior finds so unlikely (5 x -30).
    assert ids == ([a] if search == 'lattice' else [])


def test_next_token_logprobs_agree_with_the_teacher_forced_nll(llm: LLM) -> None:
    context = llm.tokenize('hello there')
    ids = llm.tokenize(' robot arm moves')
    logp = llm.next_token_logprobs(context, ids)
    assert logp.shape == (len(ids), llm.embedding_matrix.shape[0])
    torch.testing.assert_close(logp.exp().sum(dim=1), torch.ones(len(ids)), atol=1e-4, rtol=0)
    picked = -logp[torch.arange(len(ids)), torch.tensor(ids)].mean()
    expected = llm.nll(llm.embed_ids(context).unsqueeze(0), ids)
    assert float(picked) == pytest.approx(expected, rel=1e-4, abs=1e-4)
    # The prompt's cached keys and values are reused: a second, different hypothesis is read as if alone.
    other = llm.tokenize(' stop now please')
    again = llm.next_token_logprobs(context, other)
    expected_other = llm.nll(llm.embed_ids(context).unsqueeze(0), other)
    assert float(-again[torch.arange(len(other)), torch.tensor(other)].mean()) == pytest.approx(
        expected_other, rel=1e-4, abs=1e-4)
    torch.testing.assert_close(llm.next_token_logprobs(context, ids), logp)
    assert llm.next_token_logprobs(context, []).shape == (0, llm.embedding_matrix.shape[0])
    with pytest.raises(LLMError, match='context'):
        llm.next_token_logprobs([], ids)


def test_a_context_that_grows_or_shrinks_reuses_the_cached_one_and_reads_the_same(llm: LLM) -> None:
    prompt = llm.tokenize('hello there robot')
    ids = llm.tokenize(' arm moves')
    fresh = {}
    for context in (prompt, prompt + ids[:1], prompt[:2]):
        llm._prefix = None  # computed from nothing
        fresh[len(context)] = llm.next_token_logprobs(context, ids)
    llm.next_token_logprobs(prompt, ids)
    for context in (prompt + ids[:1], prompt, prompt[:2], prompt):  # grow, shrink back, shrink, grow
        torch.testing.assert_close(llm.next_token_logprobs(context, ids), fresh[len(context)], atol=1e-4, rtol=1e-4)
        assert llm._prefix[0] == tuple(context)


def test_hypotheses_read_together_match_hypotheses_read_alone(llm: LLM) -> None:
    context = llm.tokenize('hello there')
    hypotheses = [llm.tokenize(' robot arm moves'), llm.tokenize(' stop'), llm.tokenize(' go to the kitchen now')]
    together = llm.next_token_logprobs_many(context, hypotheses)
    assert [t.shape[0] for t in together] == [len(h) for h in hypotheses]
    for ids, rows in zip(hypotheses, together):
        torch.testing.assert_close(rows, llm.next_token_logprobs(context, ids), atol=1e-4, rtol=1e-4)
    # The prompt's cache is left as it was: a later single read is unchanged.
    torch.testing.assert_close(llm.next_token_logprobs(context, hypotheses[0]), together[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('search', SEARCHES)
def test_an_utterance_with_nothing_heard_fuses_to_nothing(llm: LLM, search: str) -> None:
    projector = torn_projector(llm, 40, 41, lead=0.05)
    with torch.no_grad():
        projector.blank.bias.fill_(100.0)
    ids, embeds = fuse(projector, llm, one_frame(), [1], FusionConfig(weight=1.0, search=search))
    assert ids == [] and embeds.shape == (0, LLM_DIM)


@pytest.mark.parametrize('changes, match', [
    ({'weight': -0.1}, 'weight'), ({'weight': 11.0}, 'weight'), ({'candidates': 0}, 'candidates'),
    ({'passes': 0}, 'passes'), ({'search': 'greedy'}, 'search'), ({'beam': 0}, 'beam'), ({'margin': 0.0}, 'margin'),
    ({'end_weight': -1.0}, 'end_weight'), ({'prior_passes': 0}, 'prior_passes'),
    ({'punctuation_weight': -0.5}, 'punctuation_weight'), ({'punctuation_weight': 11.0}, 'punctuation_weight'),
])
def test_config_validation(changes: dict, match: str) -> None:
    with pytest.raises(FusionError, match=match):
        FusionConfig(**changes)


def test_the_yaml_config_carries_fusion_settings(tmp_path) -> None:
    path = tmp_path / 'a.yaml'
    path.write_text('fusion:\n  weight: 0.0\n  candidates: 8\n')
    config = load_config(path)
    assert config.fusion.weight == 0.0 and not config.fusion.enabled and config.fusion.candidates == 8
    path.write_text('fusion:\n  weight: -1.0\n')
    with pytest.raises(ConfigError, match='weight'):
        load_config(path)


# -- the beam search over frames, with a stand-in prior whose preferences are known -------------------

BLANK, A, B, C, END = 0, 1, 2, 3, 4  # frame columns: blank, then head rows 0..3 (= LLM ids 0..3 here)


class TablePrior:
    """Stand-in for :class:`Prior`: log p(next | prefix) from a table, flat (log 1/5) where it says nothing."""

    def __init__(self, table: dict[tuple[int, ...], dict[int, float]] | None = None) -> None:
        self.table, self.asked = table or {}, []
        self.settled: tuple[int, ...] = ()

    def prepare(self, asks: list) -> None:
        pass  # the table needs no reading ahead

    def settle(self, prefix: tuple[int, ...]) -> None:
        self.settled = tuple(prefix)  # a table has no cached context; remembered for the search's bookkeeping

    def after(self, prefix: tuple[int, ...], then: tuple[int, ...] = ()) -> torch.Tensor:
        self.asked.append(prefix)
        logp = torch.full((5,), -1.6094)
        for token, value in self.table.get(prefix, {}).items():
            logp[token] = value
        return logp

    def likeliest(self, prefix: tuple[int, ...], n: int) -> list[int]:
        return self.after(prefix).topk(min(n, 5)).indices.tolist()


def frames(*rows: dict[int, float]) -> torch.Tensor:
    """Frame log-probabilities [T, 1 + 4] from per-frame probabilities (blank = column 0); the rest share 1e-6."""
    out = torch.full((len(rows), 5), 1e-6)
    for t, row in enumerate(rows):
        for column, p in row.items():
            out[t, column] = p
    return (out / out.sum(dim=1, keepdim=True)).log()


VOCAB = torch.arange(4)  # head row r is LLM token r


def search(logp: torch.Tensor, prior: TablePrior, end_id: int | None = None, **changes) -> tuple[int, ...]:
    # The head's candidates only unless a test asks for the LLM's (test_the_llm_offers_...).
    config = FusionConfig(**{'weight': 1.0, 'insertion_bonus': 0.0, 'end_weight': 0.0, 'llm_candidates': 0,
                             **changes})
    rows, at = prefix_beam_search(logp, VOCAB, prior, config, end_id)
    assert len(at) == len(rows) and list(at) == sorted(at)  # each token's frame, in reading order
    return rows


def test_the_beam_reads_a_held_token_once_and_a_repeated_one_twice() -> None:
    held = frames({A: 0.9, BLANK: 0.1}, {A: 0.9, BLANK: 0.1}, {BLANK: 0.9, B: 0.1})
    assert search(held, TablePrior(), weight=0.0) == (A - 1,)
    repeated = frames({A: 0.9, BLANK: 0.1}, {BLANK: 0.9, A: 0.1}, {A: 0.9, BLANK: 0.1})
    assert search(repeated, TablePrior(), weight=0.0) == (A - 1, A - 1)


def test_the_prior_restores_a_word_the_blank_won() -> None:
    # Greedy: A, (blank wins over B at 0.6 / 0.4), C. The LLM all but insists on B after A.
    logp = frames({A: 0.95, BLANK: 0.05}, {BLANK: 0.6, B: 0.4}, {C: 0.95, BLANK: 0.05})
    assert search(logp, TablePrior(), weight=0.0) == (A - 1, C - 1)
    prior = TablePrior({(A - 1,): {B - 1: -0.01, C - 1: -8.0}})
    assert search(logp, prior) == (A - 1, B - 1, C - 1)


def test_the_prior_cannot_overrule_a_sure_frame() -> None:
    logp = frames({A: 0.999, BLANK: 0.001}, {C: 0.999, BLANK: 0.001})
    prior = TablePrior({(A - 1,): {B - 1: -0.01, C - 1: -3.0}})
    assert search(logp, prior) == (A - 1, C - 1)


def test_the_end_of_the_turn_keeps_a_sentence_from_being_cut_short() -> None:
    # The last word is unsure against the blank and the prior finds it unlikely, so the beam would drop
    # it; that the user's turn ends right after A is less likely still, and with end_weight the beam keeps it.
    logp = frames({A: 0.95, BLANK: 0.05}, {BLANK: 0.55, C: 0.45})
    prior = TablePrior({(A - 1,): {C - 1: -2.0, END: -9.0}, (A - 1, C - 1): {END: -0.05}})
    assert search(logp, prior, end_id=END) == (A - 1,)
    assert search(logp, prior, end_id=END, end_weight=1.0) == (A - 1, C - 1)


def test_the_insertion_bonus_offsets_the_priors_cost_per_word() -> None:
    logp = frames({A: 0.95, BLANK: 0.05}, {BLANK: 0.5, C: 0.5})
    prior = TablePrior({(A - 1,): {C - 1: -1.0}})
    assert search(logp, prior) == (A - 1,)
    assert search(logp, prior, insertion_bonus=1.5) == (A - 1, C - 1)


def test_the_prior_decides_punctuation_the_head_only_guesses() -> None:
    # After A the head guesses B (".") over C ("?"); the LLM is sure a "?" follows. At the words' weight
    # the head's guess stands; at a higher weight on punctuation the LLM's choice wins.
    class Marks:
        punctuation_ids = frozenset({B - 1, C - 1})

    logp = frames({A: 0.95, BLANK: 0.05}, {B: 0.9, C: 0.1})
    prior = TablePrior({(A - 1,): {B - 1: -3.0, C - 1: -0.1}})
    prior.llm = Marks()
    assert search(logp, prior, weight=0.5, punctuation_weight=0.5) == (A - 1, B - 1)
    assert search(logp, prior, weight=0.5, punctuation_weight=2.0) == (A - 1, C - 1)
    words = TablePrior({(A - 1,): {B - 1: -3.0, C - 1: -0.1}})
    words.llm = type('Words', (), {'punctuation_ids': frozenset()})()
    assert search(logp, words, weight=0.5, punctuation_weight=2.0) == (A - 1, B - 1)  # only punctuation


def test_the_llm_offers_a_word_the_head_ranks_too_low_to_offer() -> None:
    # The head offers one candidate per frame: B after A, with C a distant second (0.09). The LLM is
    # sure of C after A. Only when the LLM may propose its own candidates can C be read at all, and only
    # while the head gives C at least the floor (log 0.09 = -2.4).
    logp = frames({A: 0.999, BLANK: 0.001}, {B: 0.9, C: 0.09, BLANK: 0.01})
    prior = TablePrior({(A - 1,): {B - 1: -6.0, C - 1: -0.01}})
    assert search(logp, prior, weight=0.5, candidates=1) == (A - 1, B - 1)
    assert search(logp, prior, weight=0.5, candidates=1, llm_candidates=2) == (A - 1, C - 1)
    assert search(logp, prior, weight=0.5, candidates=1, llm_candidates=2, llm_floor=-2.0) == (A - 1, B - 1)


def test_the_llm_offers_nothing_where_its_prior_was_not_read() -> None:
    class Flat:
        def next_token_logprobs(self, context: list[int], ids: list[int]) -> torch.Tensor:
            return torch.tensor([[0.0, -1.0, -2.0]]).expand(len(ids), 3).clone()

    prior = Prior(Flat(), [7])
    assert prior.likeliest((5,), 2) is None
    prior.read_many([(5,)])
    assert prior.likeliest((5,), 2) == [0, 1] and prior.likeliest((), 1) == [0]


def test_a_hypothesis_far_below_the_best_is_not_extended() -> None:
    logp = frames({A: 0.95, B: 0.05}, {BLANK: 0.98, C: 0.02}, {BLANK: 0.98, C: 0.02})
    wide, narrow = TablePrior(), TablePrior()
    search(logp, wide, margin=50.0)
    search(logp, narrow, margin=1.0)
    assert (B - 1,) in wide.asked and (B - 1,) not in narrow.asked
    assert len(set(narrow.asked)) < len(set(wide.asked))


def test_the_prior_is_read_once_per_prefix_and_one_pass_fills_in_the_shorter_ones() -> None:
    calls = []

    class Counting:
        def next_token_logprobs(self, context: list[int], ids: list[int]) -> torch.Tensor:
            calls.append(list(ids))
            return torch.arange(len(ids), dtype=torch.float32)[:, None].expand(len(ids), 3).clone()

    prior = Prior(Counting(), [7])
    prior.read_many([(5, 6)])
    assert calls == [[5, 6, 0]]  # the prefix plus a placeholder: one row per prefix, the empty one first
    assert [float(prior.after(prefix)[0]) for prefix in ((), (5,), (5, 6))] == [0.0, 1.0, 2.0]
    assert len(calls) == 1
    prior.after((5, 9))
    assert calls[-1] == [5, 9, 0] and len(calls) == 2
    # Asked with a likely continuation, one pass reads on along it and answers the longer prefixes too.
    prior.after((8,), then=(3, 4))
    assert calls[-1] == [8, 3, 4, 0]
    assert [float(prior.after(prefix)[0]) for prefix in ((8, 3), (8, 3, 4))] == [2.0, 3.0] and len(calls) == 3


def test_past_its_budget_the_prior_is_flat_at_the_greedy_readings_mean() -> None:
    calls = []

    class Counting:
        def next_token_logprobs(self, context: list[int], ids: list[int]) -> torch.Tensor:
            calls.append(list(ids))
            return torch.arange(len(ids), dtype=torch.float32)[:, None].expand(len(ids), 10).clone() - 10 * len(calls)

    prior = Prior(Counting(), [7])
    prior.read_along((5, 6, 4), budget=2)  # the greedy tokens score -10, -9, -8 after their prefixes
    assert len(calls) == 1 and prior.typical == pytest.approx(-9.0)
    prior.after((5, 9))  # within the budget: read
    assert len(calls) == 2
    # Past it: no pass; a prefix already read keeps its own prior, an unread one gets the flat mean.
    assert float(prior.after((5, 6))[0]) == -8.0
    flat = prior.after((5, 8))
    assert torch.equal(flat, torch.full((10,), -9.0))
    prior.prepare([((2, 2), ())])
    assert len(calls) == 2


def test_the_beam_reading_injects_the_chosen_tokens_rows(llm: LLM) -> None:
    a, b = 40, 41
    projector = torn_projector(llm, a, b, lead=0.05)
    ids, embeds = fuse(projector, PreferringPrior(b, llm.embedding_matrix.shape[0]), one_frame(), [1],
                       FusionConfig(weight=1.0, search='beam'))
    assert ids == [b] and embeds.shape == (1, LLM_DIM)
    table = llm.embedding_matrix.detach().float()
    assert torch.dist(embeds[0], table[b]) < torch.dist(embeds[0], table[a])


def test_the_cli_offers_every_search() -> None:
    import argparse

    from tinyalign_ros.cli.common import generation_args

    parser = argparse.ArgumentParser()
    generation_args(parser)
    action = next(a for a in parser._actions if a.dest == 'fusion_search')
    assert tuple(action.choices) == SEARCHES
