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
from tinyalign_ros.fusion import fuse, FusionConfig, FusionError
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


def test_the_prior_flips_an_unsure_position_but_not_a_sure_one(llm: LLM) -> None:
    a, b = 40, 41
    vocab = llm.embedding_matrix.shape[0]
    unsure = torn_projector(llm, a, b, lead=0.05)
    assert unsure.decode_ids(one_frame()) == [a]
    prior = PreferringPrior(b, vocab)
    ids, embeds = fuse(unsure, prior, one_frame(), [1, 2, 3], FusionConfig(weight=1.0, candidates=4))
    assert ids == [b]
    assert prior.calls and prior.calls[0][0] == [1, 2, 3]  # judged inside the prompt's context
    table = llm.embedding_matrix.detach().float()
    # The injected position is now mostly b's row: closer to b than to a.
    assert torch.dist(embeds[0], table[b]) < torch.dist(embeds[0], table[a])
    sure = torn_projector(llm, a, b, lead=0.9)
    assert fuse(sure, PreferringPrior(b, vocab), one_frame(), [1], FusionConfig(weight=0.2))[0] == [a]


def test_a_token_outside_the_candidates_is_never_chosen(llm: LLM) -> None:
    a, b, c = 40, 41, 300
    projector = torn_projector(llm, a, b, lead=0.05)
    ids, _ = fuse(projector, PreferringPrior(c, llm.embedding_matrix.shape[0]), one_frame(), [1],
                  FusionConfig(weight=5.0, candidates=2))
    assert ids == [a]  # the prior cannot invent a word the projector did not hear


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


def test_an_utterance_with_nothing_heard_fuses_to_nothing(llm: LLM) -> None:
    projector = torn_projector(llm, 40, 41, lead=0.05)
    with torch.no_grad():
        projector.blank.bias.fill_(100.0)
    ids, embeds = fuse(projector, llm, one_frame(), [1], FusionConfig(weight=1.0))
    assert ids == [] and embeds.shape == (0, LLM_DIM)


@pytest.mark.parametrize('changes, match', [
    ({'weight': -0.1}, 'weight'), ({'weight': 11.0}, 'weight'), ({'candidates': 0}, 'candidates'),
    ({'passes': 0}, 'passes'),
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
