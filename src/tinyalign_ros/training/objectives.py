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
The training objectives: what a batch of projected audio is scored against.

See :mod:`.trainer` for what each objective (``TrainConfig.objective``) means and why ``ctc`` is
the product's choice.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .examples import Example
from ..evaluate import REPEAT_PROMPT
from ..llm import LLM, PromptConfig
from ..projector import Projector


def sample_head_rows(target_rows: torch.Tensor, n_vocab: int, negatives: int,
                     generator: torch.Generator | None = None,
                     neighbours: dict[int, list[int]] | None = None) -> torch.Tensor | None:
    """
    Choose the vocabulary positions a CTC step scores.

    The batch's own tokens, their nearest neighbours in
    the head (hard negatives, see :func:`neighbour_table`) and ``negatives`` others drawn uniformly
    (a fresh draw each step, so every row is contrasted often). ``None`` = the whole head.

    The head has no per-token weights, so sampling changes only which rows the softmax normalises
    over; inference still scores the whole vocabulary.
    """
    if negatives <= 0 or negatives + target_rows.numel() >= n_vocab:
        return None
    parts = [target_rows, torch.randperm(n_vocab, generator=generator)[:negatives]]
    if neighbours:
        near = [n for r in torch.unique(target_rows).tolist() for n in neighbours.get(r, ())]
        if near:
            parts.append(torch.tensor(near, dtype=torch.long))
    return torch.unique(torch.cat(parts))  # sorted, which searchsorted needs


def ctc_loss(projector: Projector, x: torch.Tensor, lengths: torch.Tensor, batch: Sequence[Example],
             vocab_index: dict[int, int], negatives: int = 0,
             generator: torch.Generator | None = None,
             neighbours: dict[int, list[int]] | None = None,
             sample_from: Sequence[Example] | None = None) -> torch.Tensor:
    """
    CTC over the token head; with ``negatives`` > 0 the softmax covers a sampled sub-vocabulary.

    ``sample_from`` is the whole batch when ``batch`` is one rank's slice of it: the sampled rows
    then hold every token of the whole batch, as in one process, so each rank normalises over the
    same rows and the ranks' gradients add up to one process's.
    """
    target_rows = torch.tensor([vocab_index[i] for ex in batch for i in ex.target_ids], dtype=torch.long)
    sample_rows = target_rows if sample_from is None else torch.tensor(
        [vocab_index[i] for ex in sample_from for i in ex.target_ids], dtype=torch.long)
    rows = sample_head_rows(sample_rows, int(projector.vocab_ids.numel()), negatives, generator, neighbours)
    out = projector(x, lengths, head_rows=rows)
    log_probs = out.logits.log_softmax(dim=-1).transpose(0, 1)  # [T', B, 1+V]
    targets = ((target_rows if rows is None else torch.searchsorted(rows, target_rows)) + 1).to(log_probs.device)
    target_lengths = torch.tensor([len(ex.target_ids) for ex in batch], dtype=torch.long)
    return F.ctc_loss(log_probs, targets, out.lengths, target_lengths, blank=0, zero_infinity=True)


def slots_loss(projector: Projector, x: torch.Tensor, lengths: torch.Tensor, batch: Sequence[Example],
               embedding_matrix: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Paper-literal EmbedLink: slot i regresses onto token i's embedding, padding beyond the text."""
    out = projector(x, lengths)
    n_slots = out.embeds.shape[1]
    ids = torch.full((len(batch), n_slots), pad_id, dtype=torch.long)
    for i, ex in enumerate(batch):
        t = ex.target_ids[:n_slots]
        ids[i, : len(t)] = torch.tensor(t)
    target = embedding_matrix[ids].detach()
    mse = F.mse_loss(out.embeds, target)
    cos = 1 - F.cosine_similarity(out.embeds, target, dim=-1).mean()
    return mse + cos


def ce_loss(projector: Projector, x: torch.Tensor, lengths: torch.Tensor, batch: Sequence[Example],
            llm: LLM, prompt: PromptConfig = REPEAT_PROMPT) -> torch.Tensor:
    """
    Conventional objective: next-token cross-entropy of the transcript through the frozen LLM.

    One padded LLM forward/backward for the whole batch: [prompt | audio frames | suffix | target].
    """
    out = projector(x, lengths)
    before, after = llm.prompt_parts(prompt)
    emb = llm.embedding_matrix
    rows, labels = [], []
    for i, ex in enumerate(batch):
        audio = out.embeds[i, : int(out.lengths[i])]
        target = torch.tensor(ex.target_ids, dtype=torch.long)
        seq = torch.cat([emb[torch.tensor(before, dtype=torch.long)], audio,
                         emb[torch.tensor(after, dtype=torch.long)], emb[target]])
        label = torch.full((seq.shape[0],), -100, dtype=torch.long)
        label[-len(ex.target_ids):] = target
        label = label.to(emb.device)
        rows.append(seq)
        labels.append(label)
    width = max(r.shape[0] for r in rows)
    inputs = emb.new_zeros(len(rows), width, emb.shape[1])
    label_t = torch.full((len(rows), width), -100, dtype=torch.long, device=emb.device)
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=emb.device)
    for i, (r, lab) in enumerate(zip(rows, labels)):
        inputs[i, : r.shape[0]] = r
        label_t[i, : r.shape[0]] = lab
        mask[i, : r.shape[0]] = 1
    logits = llm.require_model()(inputs_embeds=inputs, attention_mask=mask).logits
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), label_t[:, 1:].reshape(-1), ignore_index=-100)
