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
Projectors: the only trained part, mapping Whisper encoder frames into the LLM's embedding space.

Reading order: :class:`ProjectorConfig` (what is saved in an adapter), the shared :class:`Projector`
base (output scaling and the token head that ties outputs to the LLM's own embedding table), then
the three designs: :class:`BridgeFormer` (the product's projector), :class:`ConcatMLP` (SLAM-ASR
style baseline) and :class:`LinearProjector`.

Every projector returns, per reduced frame, an embedding in the LLM's input space. Its *token head*
scores that embedding against the LLM's (centred, normalised) token-embedding rows plus a learned
"blank" score. That head is what lets training stay LLM-free (targets are the LLM's own token
embeddings, scored CTC-style) and what turns frames into the run of embeddings the LLM reads at
inference (:meth:`Projector.project`): non-blank frames are collapsed CTC-style and each emitted
position is a probability-weighted mix of real embedding rows, so the LLM sees inputs from the space
it was trained on rather than raw projector activations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from .strict import build

PROJECTOR_TYPES = ('bridgeformer', 'concat_mlp', 'linear')
# Rows of a half-precision embedding table upcast to float32 at a time (8192 x 576 x 4 B = 18 MiB for
# SmolLM2): the token head then scores in float32 without ever holding a float32 copy of the table.
HEAD_CHUNK_ROWS = 8192
REDUCTIONS = ('stack', 'mean', 'adaptive')


class ProjectorConfigError(ValueError):
    """A projector configuration that cannot describe a working projector."""


@dataclass
class ProjectorConfig:
    """Hyper-parameters of a projector; saved verbatim in every adapter's metadata."""

    type: str = 'bridgeformer'  # noqa: A003 - the key stored in every adapter's metadata
    encoder_dim: int = 384
    llm_dim: int = 576
    d_model: int = 384
    n_layers: int = 3
    n_heads: int = 6
    ff_dim: int = 1024
    dropout: float = 0.1
    reduction: str = 'stack'  # 'stack' k frames, 'mean' over k frames, or 'adaptive' pool to n_slots
    reduce_factor: int = 4  # 4 Whisper frames = 80 ms per output position
    n_slots: int = 64  # only for reduction='adaptive' (the paper's literal "casted token size")
    top_k: int = 8  # embedding rows mixed per emitted position at inference
    blank_bias: float = 0.0  # added to the blank score at inference (>0 emits fewer tokens)

    def __post_init__(self) -> None:
        if self.type not in PROJECTOR_TYPES:
            raise ProjectorConfigError(f'projector type {self.type!r} is not one of {PROJECTOR_TYPES}')
        if self.reduction not in REDUCTIONS:
            raise ProjectorConfigError(f'reduction {self.reduction!r} is not one of {REDUCTIONS}')
        for name in ('encoder_dim', 'llm_dim', 'd_model', 'reduce_factor', 'n_slots', 'top_k'):
            if int(getattr(self, name)) < 1:
                raise ProjectorConfigError(f'{name} must be >= 1, got {getattr(self, name)}')
        if self.n_layers < 0:
            raise ProjectorConfigError(f'n_layers must be >= 0, got {self.n_layers}')
        if self.type == 'bridgeformer' and self.d_model % self.n_heads:
            raise ProjectorConfigError(f'd_model {self.d_model} is not divisible by n_heads {self.n_heads}')
        if not 0.0 <= self.dropout < 1.0:
            raise ProjectorConfigError(f'dropout must be in [0, 1), got {self.dropout}')

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProjectorConfig:
        return build(cls, data, ProjectorConfigError, 'projector settings')

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProjectorOutput:
    """Per-position outputs of a batch: embeddings in LLM space and token-head logits."""

    embeds: torch.Tensor  # [B, T', llm_dim], scaled to the LLM's mean embedding norm
    lengths: torch.Tensor  # [B] valid positions per item
    logits: torch.Tensor | None = None  # [B, T', 1 + V] blank first, None until a vocabulary is bound
    hidden: torch.Tensor | None = field(default=None, repr=False)


@dataclass
class Lattice:
    """One utterance as read by the token head: per emitted position, the k best tokens, best first."""

    ids: torch.Tensor  # [n, k] LLM token ids
    logp: torch.Tensor  # [n, k] log-probabilities over tokens (blank excluded)
    rows: torch.Tensor  # [n, k] the same tokens as rows of the bound head

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def greedy_emits(best: torch.Tensor) -> torch.Tensor:
    """Mark the frames where the greedy CTC collapse emits a token: not blank (row 0), not a repeat of the previous."""
    return (best != 0) & torch.cat([torch.tensor([True], device=best.device), best[1:] != best[:-1]])


def repeats_word_end(previous: str, piece: str) -> bool:
    """
    Tell whether ``piece`` only repeats the end of the word ``previous`` begins ("fourteen" + "teen").

    Why: CTC collapses repeats of the same token only. Over word pieces, the head sometimes emits a
    whole word at one frame and, a few frames later, its last piece again (" regards" then "ards",
    " lower" then "lower"), which reads as an inserted word. ``previous`` must start a word (its text
    begins with a space) and ``piece`` must continue one (no leading space, two letters or more).
    A real word spelled this way ("springing" as " spring" + "ing") is about one word in 10,000
    of running English (wordfreq's 50,000 most frequent, weighted by frequency; docs/results.md).
    """
    if not previous.startswith(' ') or len(piece) < 2 or not piece.isalpha():
        return False
    return previous.strip().lower().endswith(piece.lower())


def keep_positions(ids: Sequence[int], pieces: Sequence[str]) -> list[int]:
    """Return the positions of a token reading to keep: all but pieces that repeat the kept word before them."""
    keep: list[int] = []
    for i, token in enumerate(ids):
        if keep and repeats_word_end(pieces[ids[keep[-1]]], pieces[token]):
            continue
        keep.append(i)
    return keep


def reduce_lengths(lengths: torch.Tensor, config: ProjectorConfig) -> torch.Tensor:
    """Count the valid output positions for input frame counts (ceil division, or fixed slots)."""
    if config.reduction == 'adaptive':
        return torch.full_like(lengths, config.n_slots)
    return torch.div(lengths + config.reduce_factor - 1, config.reduce_factor, rounding_mode='floor')


def reduce_frames(x: torch.Tensor, lengths: torch.Tensor, config: ProjectorConfig) -> torch.Tensor:
    """
    Reduce the length *before* any transformer layer, because the length is the cost driver.

    'stack' concatenates k consecutive frames (keeps all information, Ultravox/SLAM style), 'mean'
    averages them, 'adaptive' pools each utterance to a fixed number of slots (the paper's literal
    design; kept for comparison).
    """
    batch, n_frames, dim = x.shape
    if config.reduction == 'adaptive':
        out = x.new_zeros(batch, config.n_slots, dim)
        for i in range(batch):
            valid = x[i, : max(int(lengths[i]), 1)].transpose(0, 1).unsqueeze(0)
            out[i] = F.adaptive_avg_pool1d(valid, config.n_slots)[0].transpose(0, 1)
        return out
    # Zero everything past each utterance's length, whatever the caller padded with.
    past_end = torch.arange(n_frames, device=x.device)[None, :, None] >= lengths.to(x.device)[:, None, None]
    x = x.masked_fill(past_end, 0.0)
    k = config.reduce_factor
    pad = (-n_frames) % k
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    x = x.view(batch, (n_frames + pad) // k, k, dim)
    if config.reduction == 'mean':
        return x.mean(dim=2)
    return x.reshape(batch, (n_frames + pad) // k, k * dim)


def reduced_input_dim(config: ProjectorConfig) -> int:
    return config.encoder_dim * config.reduce_factor if config.reduction == 'stack' else config.encoder_dim


class Projector(nn.Module):
    """
    Shared behaviour: output scaling, the token head and the inference-time collapse.

    Subclasses implement :meth:`encode` (frames -> hidden states and output embeddings).
    """

    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__()
        self.config = config
        # Mean L2 norm of the LLM's token embeddings: without it the projected audio is far quieter
        # than the text around it and the LLM ignores it.
        self.register_buffer('embed_norm', torch.tensor(1.0))
        # Token head: cosine similarity to centred embedding rows, times a learned temperature.
        self.logit_scale = nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32))
        self.register_buffer('vocab_ids', torch.zeros(0, dtype=torch.long))
        self.register_buffer('embed_mean', torch.zeros(config.llm_dim), persistent=False)
        self.register_buffer('token_rows', torch.zeros(0, config.llm_dim), persistent=False)
        # 1 / |row - mean| per head row: the head's centred, normalized table is never stored, because
        # for an open head it would copy the LLM's whole embedding table (113 MB for SmolLM2).
        self.register_buffer('token_inv_norm', torch.zeros(0), persistent=False)

    # -- binding to the LLM -------------------------------------------------------------------
    def bind_llm(self, embedding_matrix: torch.Tensor, vocab_ids: torch.Tensor | None = None) -> None:
        """
        Attach the frozen LLM's embedding table (not saved in adapters; rebuilt at load time).

        An open head keeps the LLM's own table, in the LLM's dtype and on its device, instead of a
        float32 copy (108 MiB for SmolLM2 when the LLM runs in bfloat16): its statistics and its
        scores are computed in float32 a chunk of rows at a time. The projector's own weights stay
        float32 and follow the table's device.

        ``vocab_ids`` restricts the token head to a sub-vocabulary (fixed from training data, which
        keeps the head cheap); ``None`` keeps the vocabulary already stored (from an adapter) or, if
        there is none, uses every row.
        """
        weight = embedding_matrix.detach()
        if weight.shape[1] != self.config.llm_dim:
            raise ProjectorConfigError(
                f'LLM embedding width {weight.shape[1]} does not match projector llm_dim {self.config.llm_dim}'
            )
        if vocab_ids is not None:
            self.vocab_ids = torch.as_tensor(vocab_ids, dtype=torch.long).clone()
        elif self.vocab_ids.numel() == 0:
            self.vocab_ids = torch.arange(weight.shape[0], dtype=torch.long)
        if int(self.vocab_ids.max()) >= weight.shape[0]:
            raise ProjectorConfigError('adapter vocabulary refers to token ids outside this LLM')
        self.to(weight.device)
        self.vocab_ids = self.vocab_ids.to(weight.device)
        self.embed_norm = torch.cat([block.norm(dim=1) for block in _float_blocks(weight)]).mean()
        self.embed_mean = _float_mean(weight)
        open_head = self.vocab_ids.numel() == weight.shape[0] and bool(
            torch.equal(self.vocab_ids, torch.arange(weight.shape[0], device=weight.device)))
        # An open head shares the LLM's own table instead of copying it (113 MB for SmolLM2 in float32);
        # a restricted head copies its rows, in float32 (they are few).
        rows = weight if open_head else weight[self.vocab_ids].float()
        self.token_rows = rows
        self.token_inv_norm = 1.0 / torch.cat(
            [(block - self.embed_mean).norm(dim=1) for block in _float_blocks(rows)]).clamp_min(1e-12)

    @property
    def is_bound(self) -> bool:
        return self.token_rows.numel() > 0

    def head_table(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Return the head's centred, unit-length rows (all, or the positions ``rows``), computed on demand."""
        if rows is None:
            return (self.token_rows - self.embed_mean) * self.token_inv_norm[:, None]
        return (self.token_rows[rows] - self.embed_mean) * self.token_inv_norm[rows][:, None]

    @property
    def token_table(self) -> torch.Tensor:
        """Return the whole centred, normalized head table (a new tensor each call: the neighbour search)."""
        return self.head_table()

    # -- forward ------------------------------------------------------------------------------
    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (hidden [B, T', d], reduced lengths [B]); implemented by each design."""
        raise NotImplementedError

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None,
                head_rows: torch.Tensor | None = None) -> ProjectorOutput:
        """
        Project a padded batch.

        ``head_rows`` (positions in the bound vocabulary) scores only those rows: training samples negatives
        this way, since the head is a large part of a step's cost.
        """
        if features.dim() != 3 or features.shape[-1] != self.config.encoder_dim:
            raise ProjectorConfigError(
                f'expected features [batch, frames, {self.config.encoder_dim}], got {tuple(features.shape)}'
            )
        features = features.to(self.logit_scale.device)
        if lengths is None:
            lengths = torch.full((features.shape[0],), features.shape[1], dtype=torch.long, device=features.device)
        hidden, out_lengths = self.encode(features, lengths)
        direction = self.out(hidden)
        embeds = F.normalize(direction, dim=-1) * self.embed_norm
        logits = None
        if self.is_bound:
            scale = self.logit_scale.exp().clamp(max=100.0)
            rows = self.token_rows if head_rows is None else self.token_rows[head_rows]
            inv_norm = self.token_inv_norm if head_rows is None else self.token_inv_norm[head_rows]
            unit = F.normalize(direction, dim=-1)
            # cos(unit, row - mean) without materializing the centred table: (u.row - u.mean) / |row - mean|
            token_scores = scale * (_dot_rows(unit, rows) - (unit @ self.embed_mean).unsqueeze(-1)) * inv_norm
            logits = torch.cat([self.blank(hidden), token_scores], dim=-1)
        return ProjectorOutput(embeds=embeds, lengths=out_lengths, logits=logits, hidden=hidden)

    # -- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def decode_ids(self, features: torch.Tensor | np.ndarray, pieces: Sequence[str] | None = None) -> list[int]:
        """Greedy CTC reading of one utterance as LLM token ids (the projector alone: ``wer_nearest``)."""
        ids, _ = self.read(features, pieces)
        return ids

    @torch.no_grad()
    def project(self, features: torch.Tensor | np.ndarray, pieces: Sequence[str] | None = None) -> torch.Tensor:
        """
        Compute the embeddings the aligned path injects into the LLM for one utterance, [n, llm_dim].

        One position per emitted token (CTC collapse), each a mix of the top-k embedding rows
        weighted by the head's probabilities; without a bound vocabulary, the raw scaled outputs.
        """
        _, embeds = self.read(features, pieces)
        return embeds

    @torch.no_grad()
    def frame_logits(self, features: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Head logits of one utterance per reduced frame, blank first and ``blank_bias`` added: [T', 1 + V]."""
        was_training = self.training
        self.eval()
        try:
            x = torch.as_tensor(np.asarray(features, dtype=np.float32)).float()
            if x.dim() == 2:
                x = x.unsqueeze(0)
            out = self(x)
            if out.logits is None:
                raise ProjectorConfigError('the projector has no token head bound; call bind_llm first')
            logits = out.logits[0, :int(out.lengths[0])].float().clone()
            logits[:, 0] += self.config.blank_bias
            return logits
        finally:
            self.train(was_training)

    def lattice(self, features: torch.Tensor | np.ndarray, k: int | None = None,
                pieces: Sequence[str] | None = None) -> Lattice:
        """
        Read one utterance as a short lattice: per emitted position, the k best tokens and their log-probs.

        Positions are the greedy CTC collapse (a frame whose best score is not blank and differs from
        the previous frame's); the log-probs are over tokens only, renormalized without the blank, so
        a later stage (:mod:`tinyalign_ros.fusion`) can weigh the alternatives against the LLM's prior.
        Given ``pieces`` (each LLM token's text, :attr:`LLM.piece_texts`), a position whose best token
        only repeats the end of the word before it is dropped (:func:`repeats_word_end`).
        """
        logits = self.frame_logits(features)
        positions = greedy_emits(logits.argmax(dim=-1)).nonzero().flatten()
        k = min(k or self.config.top_k, logits.shape[1] - 1)
        token_logp = logits[positions, 1:].log_softmax(dim=-1)
        top_logp, top_idx = token_logp.topk(k, dim=-1)
        if pieces is not None and len(positions) > 1:
            keep = keep_positions(self.vocab_ids[top_idx[:, 0]].tolist(), pieces)
            top_logp, top_idx = top_logp[keep], top_idx[keep]
        # The lattice is small and read by the CPU side (fusion, routing): it lives in host memory.
        return Lattice(ids=self.vocab_ids[top_idx].cpu(), logp=top_logp.cpu(), rows=top_idx.cpu())

    def mix(self, rows: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Embed each position as the softmax(``scores``)-weighted mix of its head ``rows``: [n, llm_dim]."""
        if rows.shape[0] == 0:
            return self.token_rows.new_zeros(0, self.config.llm_dim)
        table = self.token_rows
        weights = scores.softmax(dim=-1).to(table.device)
        return (weights.unsqueeze(-1) * table[rows.to(table.device)].float()).sum(dim=1)

    @torch.no_grad()
    def read(self, features: torch.Tensor | np.ndarray,
             pieces: Sequence[str] | None = None) -> tuple[list[int], torch.Tensor]:
        """Read one utterance once: the greedy token ids and the embeddings to inject (see :meth:`project`)."""
        if not self.is_bound:
            was_training = self.training
            self.eval()
            try:
                x = torch.as_tensor(np.asarray(features, dtype=np.float32)).float()
                out = self(x.unsqueeze(0) if x.dim() == 2 else x)
                return [], out.embeds[0, :int(out.lengths[0])]
            finally:
                self.train(was_training)
        reading = self.lattice(features, self.config.top_k, pieces)
        return reading.ids[:, 0].tolist(), self.mix(reading.rows, reading.logp)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _float_blocks(table: torch.Tensor) -> list[torch.Tensor]:
    """
    Return ``table`` as float32 blocks of rows: itself when it is float32, else upcast chunks.

    A float32 table is never split, so its statistics are bit for bit what they were before
    half-precision tables existed.
    """
    if table.dtype == torch.float32:
        return [table]
    return [table[i:i + HEAD_CHUNK_ROWS].float() for i in range(0, table.shape[0], HEAD_CHUNK_ROWS)]


def _float_mean(table: torch.Tensor) -> torch.Tensor:
    """Return the float32 mean row of ``table`` without a float32 copy of a half-precision table."""
    if table.dtype == torch.float32:
        return table.mean(dim=0)
    total = torch.zeros(table.shape[1], dtype=torch.float64, device=table.device)
    for i in range(0, table.shape[0], HEAD_CHUNK_ROWS):
        total += table[i:i + HEAD_CHUNK_ROWS].double().sum(dim=0)
    return (total / table.shape[0]).float()


def _dot_rows(unit: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """
    Return ``unit @ rows.T`` in ``unit``'s dtype, upcasting a half-precision ``rows`` a chunk at a time.

    Scoring in float32 keeps the head's ranking what a float32 table of the same values gives; the
    chunks bound the extra memory to :data:`HEAD_CHUNK_ROWS` rows.
    """
    if rows.dtype == unit.dtype:
        return unit @ rows.T
    return torch.cat([unit @ rows[i:i + HEAD_CHUNK_ROWS].to(unit.dtype).T
                      for i in range(0, rows.shape[0], HEAD_CHUNK_ROWS)], dim=-1)


class BridgeFormer(Projector):
    """
    Input MLP over reduced frames, transformer layers without positional encoding, output MLP.

    No positional encoding: Whisper features already carry time. The length reduction happens first
    so the transformer runs at 12.5 positions per second instead of 50.
    """

    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__(config)
        d = config.d_model
        self.inp = nn.Sequential(
            nn.LayerNorm(reduced_input_dim(config)),
            nn.Linear(reduced_input_dim(config), d),
            nn.GELU(),
            nn.Linear(d, d),
        )
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d, config.n_heads, config.ff_dim, config.dropout,
                activation='gelu', batch_first=True, norm_first=True,
            )
            for _ in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.out = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, config.llm_dim))
        self.blank = nn.Linear(d, 1)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_lengths = reduce_lengths(lengths, self.config)
        x = self.inp(reduce_frames(features, lengths, self.config))
        pad_mask = torch.arange(x.shape[1], device=x.device)[None, :] >= out_lengths.to(x.device)[:, None]
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=pad_mask)
        return self.norm(x), out_lengths


class ConcatMLP(Projector):
    """SLAM-ASR style baseline: concatenate k frames, Linear -> ReLU -> Linear."""

    def __init__(self, config: ProjectorConfig, hidden_dim: int = 2048) -> None:
        super().__init__(config)
        self.mlp = nn.Sequential(nn.Linear(reduced_input_dim(config), hidden_dim), nn.ReLU())
        self.out = nn.Linear(hidden_dim, config.llm_dim)
        self.blank = nn.Linear(hidden_dim, 1)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mlp(reduce_frames(features, lengths, self.config)), reduce_lengths(lengths, self.config)


class LinearProjector(Projector):
    """The smallest baseline: one linear map of the reduced frames."""

    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__(config)
        self.out = nn.Linear(reduced_input_dim(config), config.llm_dim)
        self.blank = nn.Linear(reduced_input_dim(config), 1)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return reduce_frames(features, lengths, self.config), reduce_lengths(lengths, self.config)


def build_projector(config: ProjectorConfig | dict[str, Any]) -> Projector:
    """Build a projector; used by training and by adapter loading."""
    if isinstance(config, dict):
        config = ProjectorConfig.from_dict(config)
    cls = {'bridgeformer': BridgeFormer, 'concat_mlp': ConcatMLP, 'linear': LinearProjector}[config.type]
    return cls(config)


def new_projector(encoder: Any, llm: Any, vocab_ids: torch.Tensor | None = None,
                  config: ProjectorConfig | None = None) -> Projector:
    """
    Build a freshly initialized projector bound to ``llm``: it runs end to end and understands nothing yet.

    ``encoder`` and ``llm`` are the loaded models (their widths and embedding table are read);
    ``vocab_ids`` restricts the token head (None: every row of the LLM's embeddings); ``config``
    defaults to the standard design for this encoder and LLM.
    """
    config = config or ProjectorConfig(encoder_dim=encoder.d_model, llm_dim=llm.hidden_size)
    projector = build_projector(config)
    projector.bind_llm(llm.embedding_matrix, vocab_ids)
    return projector
