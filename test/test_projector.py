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
Tests for the projectors.

Shapes per design and reduction, masking of padded frames, output scaling to the LLM's embedding norm, the
token head over a (sub-)vocabulary and the CTC collapse that turns frames into the embeddings the aligned path
injects.

Everything runs on random features and the tiny random LLM's embedding table: the checks are
about mechanics, which must hold exactly whatever the weights are.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from tinyalign_ros.llm import LLM
from tinyalign_ros.projector import (
    BridgeFormer, build_projector, ConcatMLP, keep_positions, LinearProjector, Projector, PROJECTOR_TYPES,
    ProjectorConfig, ProjectorConfigError, REDUCTIONS, repeats_word_end,
)
import torch

ENC = 64  # the tiny Whisper's width
LLM_DIM = 64  # the tiny LLM's hidden size


def small(type_: str = 'bridgeformer', **changes) -> ProjectorConfig:
    """Build a projector small enough to run in milliseconds on the tiny models' widths."""
    base = {'type': type_, 'encoder_dim': ENC, 'llm_dim': LLM_DIM, 'd_model': 32, 'n_layers': 2, 'n_heads': 4,
            'ff_dim': 64, 'dropout': 0.0, 'reduce_factor': 4, 'n_slots': 6, 'top_k': 4}
    base.update(changes)
    return ProjectorConfig(**base)


def make(type_: str = 'bridgeformer', seed: int = 0, **changes) -> Projector:
    torch.manual_seed(seed)
    return build_projector(small(type_, **changes)).eval()


def feats(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, ENC, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ shapes


@pytest.mark.parametrize('reduction', REDUCTIONS)
@pytest.mark.parametrize('type_', PROJECTOR_TYPES)
def test_every_design_and_reduction_gives_documented_shapes(llm: LLM, type_: str, reduction: str) -> None:
    projector = make(type_, reduction=reduction)
    lengths = torch.tensor([37, 18, 5])
    out = projector(feats(3, 37), lengths)
    if reduction == 'adaptive':
        expected_t, expected_lengths = 6, [6, 6, 6]
    else:
        expected_t, expected_lengths = math.ceil(37 / 4), [math.ceil(n / 4) for n in (37, 18, 5)]
    assert out.embeds.shape == (3, expected_t, LLM_DIM)
    assert out.lengths.tolist() == expected_lengths
    assert out.logits is None  # no vocabulary bound yet
    assert out.hidden is not None and out.hidden.shape[:2] == (3, expected_t)

    projector.bind_llm(llm.embedding_matrix)
    out = projector(feats(3, 37), lengths)
    assert out.logits.shape == (3, expected_t, 1 + llm.embedding_matrix.shape[0])
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.embeds).all()


def test_lengths_default_to_the_full_frame_count() -> None:
    out = make('linear')(feats(2, 9))
    assert out.lengths.tolist() == [3, 3]


def test_build_projector_picks_the_class_and_accepts_a_dict() -> None:
    assert isinstance(build_projector(small('bridgeformer')), BridgeFormer)
    assert isinstance(build_projector(small('concat_mlp')), ConcatMLP)
    assert isinstance(build_projector(small('linear').to_dict()), LinearProjector)
    assert build_projector(small('linear').to_dict()).config == small('linear')


def test_forward_refuses_features_of_the_wrong_width() -> None:
    with pytest.raises(ProjectorConfigError, match=f'{ENC}'):
        make('linear')(torch.zeros(1, 8, ENC + 1))
    with pytest.raises(ProjectorConfigError):
        make('linear')(torch.zeros(8, ENC))  # missing batch dimension


# ------------------------------------------------------------------ masking


@pytest.mark.parametrize('reduction', REDUCTIONS)
@pytest.mark.parametrize('type_', PROJECTOR_TYPES)
def test_zero_padding_in_a_batch_does_not_change_valid_outputs(llm: LLM, type_: str, reduction: str) -> None:
    """
    The batch layout training uses must not leak into the valid positions.

    The layout is zero padding (see train.load_batch); the same utterance alone vs second in a padded batch,
    in eval mode.
    """
    projector = make(type_, reduction=reduction)
    projector.bind_llm(llm.embedding_matrix)
    short = feats(1, 18, seed=1)[0]
    batch = torch.zeros(2, 37, ENC)
    batch[0] = feats(1, 37, seed=2)[0]
    batch[1, :18] = short
    with torch.no_grad():
        alone = projector(short.unsqueeze(0))
        together = projector(batch, torch.tensor([37, 18]))
    n = int(alone.lengths[0])
    assert int(together.lengths[1]) == n
    torch.testing.assert_close(together.embeds[1, :n], alone.embeds[0, :n], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(together.logits[1, :n], alone.logits[0, :n], atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize('reduction', REDUCTIONS)
def test_padding_values_beyond_lengths_are_ignored(reduction: str) -> None:
    """
    Frames past ``lengths`` are not part of the utterance, whatever they hold.

    A caller that pads with anything but zeros (or normalizes features after padding) must get the same
    output. 18 frames is not a multiple of reduce_factor, so the last reduced position mixes valid and padded
    frames.
    """
    projector = make('bridgeformer', reduction=reduction)
    short = feats(1, 18, seed=1)[0]
    batch = feats(2, 37, seed=3) * 5.0  # garbage everywhere ...
    batch[1, :18] = short  # ... except the valid frames of item 1
    with torch.no_grad():
        alone = projector(short.unsqueeze(0))
        together = projector(batch, torch.tensor([37, 18]))
    n = int(alone.lengths[0])
    torch.testing.assert_close(together.embeds[1, :n], alone.embeds[0, :n], atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------ scaling and binding


@pytest.mark.parametrize('type_', PROJECTOR_TYPES)
def test_embeds_have_the_llms_mean_embedding_norm(llm: LLM, type_: str) -> None:
    projector = make(type_)
    norms = projector(feats(2, 20)).embeds.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))  # unbound: unit vectors
    projector.bind_llm(llm.embedding_matrix)
    target = llm.embedding_matrix.detach().norm(dim=1).mean()
    assert float(projector.embed_norm) == pytest.approx(float(target), rel=1e-5)
    norms = projector(feats(2, 20)).embeds.norm(dim=-1)
    torch.testing.assert_close(norms, torch.full_like(norms, float(target)), atol=1e-5, rtol=1e-4)
    assert float(target) != pytest.approx(1.0, abs=0.05)  # the check above is not the unit case again


def test_bind_llm_with_a_sub_vocabulary(llm: LLM) -> None:
    projector = make('bridgeformer')
    vocab = torch.tensor([5, 17, 42, 100, 300])
    projector.bind_llm(llm.embedding_matrix, vocab)
    assert projector.is_bound
    assert projector.vocab_ids.tolist() == vocab.tolist()
    torch.testing.assert_close(projector.token_rows, llm.embedding_matrix.detach()[vocab])
    out = projector(feats(1, 40))
    assert out.logits.shape == (1, 10, 1 + len(vocab))
    projector.blank.bias.data.fill_(-50.0)  # never blank: every frame emits a token
    ids = projector.decode_ids(feats(1, 40)[0])
    assert ids and set(ids) <= set(vocab.tolist())
    # Binding again without ids keeps the stored vocabulary (what adapter loading relies on).
    projector.bind_llm(llm.embedding_matrix)
    assert projector.vocab_ids.tolist() == vocab.tolist()


def test_head_scores_are_cosines_to_the_centred_rows_without_storing_them(llm: LLM) -> None:
    projector = make('bridgeformer', seed=2)
    projector.bind_llm(llm.embedding_matrix)
    assert projector.token_rows.data_ptr() == llm.embedding_matrix.data_ptr()  # an open head shares the table
    x = feats(1, 24, seed=5)
    out = projector(x)
    table = llm.embedding_matrix.detach().float()
    centred = torch.nn.functional.normalize(table - table.mean(dim=0), dim=1)
    direction = torch.nn.functional.normalize(projector.out(out.hidden), dim=-1)
    expected = projector.logit_scale.exp() * direction @ centred.T
    torch.testing.assert_close(out.logits[..., 1:], expected, atol=1e-4, rtol=1e-4)
    rows = torch.tensor([3, 17, 40])
    sampled = projector(x, head_rows=rows).logits[..., 1:]
    torch.testing.assert_close(sampled, expected[..., rows], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(projector.head_table(rows), centred[rows], atol=1e-5, rtol=1e-5)


def test_bind_llm_refuses_a_mismatched_table(llm: LLM) -> None:
    projector = make('linear')
    with pytest.raises(ProjectorConfigError, match='llm_dim'):
        projector.bind_llm(torch.zeros(10, LLM_DIM + 1))
    with pytest.raises(ProjectorConfigError, match='outside'):
        projector.bind_llm(llm.embedding_matrix, torch.tensor([1, llm.embedding_matrix.shape[0]]))


def test_unbound_project_returns_the_raw_scaled_outputs() -> None:
    projector = make('linear')
    x = feats(1, 13)[0]
    emb = projector.project(x.numpy())
    assert projector.decode_ids(x) == []
    torch.testing.assert_close(emb, projector(x.unsqueeze(0)).embeds[0])
    assert emb.shape == (4, LLM_DIM)


# ------------------------------------------------------------------ decode_ids / project


def test_decode_and_project_agree_and_mix_only_embedding_rows(llm: LLM) -> None:
    """
    One embedding per decoded id.

    Each is a convex mix of at most top_k rows of the bound sub-vocabulary whose heaviest row is the decoded
    token.
    """
    table = llm.embedding_matrix.detach().double()
    vocab = torch.arange(40, 70)  # 30 rows in a 64-d space: linearly independent
    projector = make('bridgeformer', seed=3)
    projector.bind_llm(llm.embedding_matrix, vocab)
    projector.blank.bias.data.fill_(-50.0)
    x = feats(1, 60, seed=4)[0]
    ids = projector.decode_ids(x)
    emb = projector.project(x)
    assert len(ids) >= 3
    assert emb.shape == (len(ids), LLM_DIM)
    rows = table[vocab]  # [V, d]
    coeffs = torch.linalg.lstsq(rows.T, emb.double().T).solution.T  # [n, V]
    torch.testing.assert_close(coeffs @ rows, emb.double(), atol=1e-5, rtol=1e-4)
    assert (coeffs > -1e-4).all(), 'a mix weight is negative: not a convex combination'
    torch.testing.assert_close(coeffs.sum(dim=1), torch.ones(len(ids), dtype=torch.double), atol=1e-4, rtol=0)
    assert ((coeffs > 1e-4).sum(dim=1) <= projector.config.top_k).all()
    assert vocab[coeffs.argmax(dim=1)].tolist() == ids


def confident_linear(llm: LLM, token_by_feature: dict[int, int], blank_feature: float = 5.0) -> Projector:
    """
    Build a linear projector (one frame per position) whose head is certain.

    Feature dimension ``f`` set to 1 points the output exactly at token ``token_by_feature[f]``'s centred
    embedding; an all-zero frame scores best as blank.
    """
    projector = build_projector(small('linear', reduce_factor=1, reduction='stack', top_k=8)).eval()
    projector.bind_llm(llm.embedding_matrix)
    table = llm.embedding_matrix.detach().float()
    centred = table - table.mean(dim=0)
    with torch.no_grad():
        projector.out.weight.zero_()
        projector.out.bias.zero_()
        projector.blank.weight.zero_()
        projector.blank.bias.fill_(blank_feature)
        for feature, token in token_by_feature.items():
            projector.out.weight[:, feature] = centred[token] * 10.0
            projector.blank.weight[0, feature] = -100.0
        projector.logit_scale.fill_(math.log(100.0))
    return projector


def frames(pattern: list[int | None]) -> torch.Tensor:
    """Feature frames: an int sets that one dimension to 1, None is an all-zero (blank) frame."""
    x = torch.zeros(len(pattern), ENC)
    for i, feature in enumerate(pattern):
        if feature is not None:
            x[i, feature] = 1.0
    return x


def test_a_confident_head_emits_the_real_embedding_row(llm: LLM) -> None:
    token = 123
    projector = confident_linear(llm, {0: token})
    x = frames([0] * 7)
    assert projector.decode_ids(x) == [token]  # seven identical frames collapse to one token
    emb = projector.project(x)
    assert emb.shape == (1, LLM_DIM)
    row = llm.embedding_matrix.detach()[token]
    torch.testing.assert_close(emb[0], row, atol=1e-4 * float(row.norm()), rtol=1e-3)


def test_ctc_collapse_merges_repeats_and_splits_on_blank(llm: LLM) -> None:
    a, b = 50, 77
    projector = confident_linear(llm, {0: a, 1: b})
    x = frames([0, 0, None, 0, 1, 1, None, None, 1, 0])
    ids = projector.decode_ids(x)
    assert ids == [a, a, b, b, a]
    emb = projector.project(x)
    table = llm.embedding_matrix.detach()
    torch.testing.assert_close(emb, table[torch.tensor(ids)], atol=1e-4, rtol=1e-3)
    assert projector.decode_ids(frames([None] * 5)) == []
    assert projector.project(frames([None] * 5)).shape == (0, LLM_DIM)


@pytest.mark.parametrize('previous, piece, repeats', [
    (' fourteen', 'teen', True), (' lower', 'lower', True), (' Especially', 'ially', True),
    (' regards', 'ARDS', True),  # case does not matter
    ('fourteen', 'teen', False),  # the first is not a word's start
    (' fourteen', ' teen', False),  # the second starts a word of its own
    (' is', 's', False),  # one letter is too little to call a repeat
    (' cat', "'s", False), (' the', 're', False), ('', 'ab', False),
])
def test_repeats_word_end(previous: str, piece: str, repeats: bool) -> None:
    assert repeats_word_end(previous, piece) is repeats


def test_keep_positions_compares_with_the_last_word_kept() -> None:
    pieces = [' fourteen', 'teen', ' sixty', 'ty', ' the', 'teen']
    assert keep_positions([0, 1, 2, 3, 4], pieces) == [0, 2, 4]
    assert keep_positions([0, 1, 5, 4], pieces) == [0, 3]  # the second "teen" repeats "fourteen" too
    assert keep_positions([4, 1], pieces) == [0, 1] and keep_positions([], pieces) == []


def test_the_reading_drops_a_word_piece_emitted_twice(llm: LLM) -> None:
    whole, piece, other = 50, 77, 91
    pieces = [''] * int(llm.embedding_matrix.shape[0])
    pieces[whole], pieces[piece], pieces[other] = ' fourteen', 'teen', ' years'
    projector = confident_linear(llm, {0: whole, 1: piece, 2: other})
    x = frames([0, 0, None, 1, None, 2, None, 1])  # "fourteen" "teen" "years" "teen"
    assert projector.decode_ids(x) == [whole, piece, other, piece]  # no pieces: the plain collapse
    assert projector.decode_ids(x, pieces) == [whole, other, piece]  # only the repeat right after the word
    table = llm.embedding_matrix.detach()
    torch.testing.assert_close(projector.project(x, pieces), table[torch.tensor([whole, other, piece])],
                               atol=1e-4, rtol=1e-3)
    assert len(projector.lattice(x, 3, pieces)) == 3


@pytest.mark.real
def test_the_embedded_llms_pieces_and_how_rarely_a_real_word_looks_repeated() -> None:
    """The rule on SmolLM2's own pieces, and its cost: real words it would cut, weighted by frequency."""
    from wordfreq import top_n_list, word_frequency

    smollm = LLM(None, embeddings_only=True)
    pieces = smollm.piece_texts
    assert len(pieces) == smollm.embedding_matrix.shape[0]

    def ids(text: str) -> list[int]:
        return smollm.tokenize(text)

    assert len(ids(' fourteen')) == 1 and len(ids('teen')) == 1
    assert repeats_word_end(pieces[ids(' fourteen')[0]], pieces[ids('teen')[0]])
    assert pieces[ids(' fourteen')[0]] == ' fourteen'
    words = top_n_list('en', 50000)
    cut = [w for w in words if len(keep_positions(ids(' ' + w), pieces)) < len(ids(' ' + w))]
    share = sum(word_frequency(w, 'en') for w in cut) / sum(word_frequency(w, 'en') for w in words)
    print(f'{len(cut)} of {len(words)} words would lose a piece, {share:.5%} of running text: {cut[:12]}')
    assert share < 2e-4


def test_blank_bias_makes_decoding_emit_fewer_tokens(llm: LLM) -> None:
    projector = make('bridgeformer', seed=5)
    projector.bind_llm(llm.embedding_matrix)
    x = feats(1, 80, seed=6)[0]
    base = len(projector.decode_ids(x))
    projector.config.blank_bias = 1e4
    assert projector.decode_ids(x) == []
    projector.config.blank_bias = -1e4
    assert len(projector.decode_ids(x)) >= base


def test_project_restores_training_mode_and_accepts_numpy(llm: LLM) -> None:
    projector = make('bridgeformer', dropout=0.5)
    projector.bind_llm(llm.embedding_matrix)
    projector.train()
    x = feats(1, 30)[0]
    first = projector.project(x.numpy())
    second = projector.project(x)
    assert projector.training  # put back as it was
    torch.testing.assert_close(first, second)  # eval inside: dropout off, deterministic


# ------------------------------------------------------------------ config


@pytest.mark.parametrize('changes,match', [
    ({'type': 'qformer'}, 'qformer'),
    ({'reduction': 'max'}, 'max'),
    ({'encoder_dim': 0}, 'encoder_dim'),
    ({'llm_dim': 0}, 'llm_dim'),
    ({'reduce_factor': 0}, 'reduce_factor'),
    ({'n_slots': 0}, 'n_slots'),
    ({'top_k': 0}, 'top_k'),
    ({'n_layers': -1}, 'n_layers'),
    ({'d_model': 30, 'n_heads': 4}, 'divisible'),
    ({'dropout': 1.0}, 'dropout'),
    ({'dropout': -0.1}, 'dropout'),
])
def test_config_validation(changes: dict, match: str) -> None:
    with pytest.raises(ProjectorConfigError, match=match):
        small(**changes)
    assert issubclass(ProjectorConfigError, ValueError)


def test_heads_only_matter_for_the_bridgeformer() -> None:
    assert small('linear', d_model=30, n_heads=4).d_model == 30
    assert small('bridgeformer', n_layers=0).n_layers == 0


def test_from_dict_round_trips_and_refuses_unknown_keys() -> None:
    config = small('concat_mlp', reduction='mean', top_k=3)
    assert ProjectorConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ProjectorConfigError, match='colour'):
        ProjectorConfig.from_dict({**config.to_dict(), 'colour': 'red'})
    with pytest.raises(ProjectorConfigError, match='colour'):
        build_projector({'type': 'linear', 'colour': 'red'})


def test_n_parameters_counts_trainable_weights_only() -> None:
    projector = make('linear')
    expected = (ENC * 4) * LLM_DIM + LLM_DIM + (ENC * 4) + 1 + 1  # out, blank, logit_scale
    assert projector.n_parameters() == expected
    state = projector.state_dict()
    assert 'vocab_ids' in state and 'token_inv_norm' not in state and 'token_rows' not in state
    assert np.isclose(float(projector.logit_scale.detach().exp()), 10.0)
