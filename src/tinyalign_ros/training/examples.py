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
Training examples: utterances turned into cached encoder features and the LLM token ids they should spell.

Features are encoded once into the encoder's disk cache and streamed back batch by batch, so memory
stays bounded however long the corpus is; batches group utterances of similar length.
"""

from __future__ import annotations

from dataclasses import dataclass
import random
import threading
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .config import TrainConfig, TrainError
from ..audio import load_audio
from ..data import Item
from ..encoder import n_feature_frames, WhisperEncoder
from ..llm import LLM
from ..projector import Projector


@dataclass
class Example:
    """One training utterance as the trainer sees it: a cache key, a length and token ids."""

    id: str  # noqa: A003 - Item.id, the manifest's field name, carried through training
    key: str
    n_frames: int
    target_ids: list[int]
    text: str


def target_text(text: str) -> str:
    """
    Return what the projector learns to spell.

    The transcript as people write it (cased, punctuated, a question ends in "?"), with a leading
    space so the first word gets the LLM's word-initial token.

    Case and punctuation are barely audible, but the LLM reads a cased, punctuated question far
    better than a lowercase run of words, and the Whisper encoder's frames carry the context
    (a rising question, a sentence start) that lets the head place them.
    """
    return ' ' + ' '.join(str(text).split())


def index_examples(items: Sequence[Item], encoder: WhisperEncoder, llm: LLM) -> list[Example]:
    """
    Describe each item for the trainer (cache key, frame count, target ids) without encoding it.

    Needs an encoder with ``cache_dir`` set: features are read back from disk during training.
    """
    if encoder.cache is None:
        raise TrainError('training needs an encoder with a feature cache (cache_dir)')
    examples: list[Example] = []
    for item in items:
        if item.text is None:
            raise TrainError(f'utterance {item.id} has no transcript')
        ids = llm.tokenize(target_text(item.text))
        if not ids:
            continue
        audio = load_audio(item.audio)
        n_frames = n_feature_frames(len(audio), encoder.policy.window_for(len(audio)))
        examples.append(Example(item.id, encoder.cache_key(audio), n_frames, ids, item.text))
    return examples


def encode_examples(items: Sequence[Item], examples: Sequence[Example], encoder: WhisperEncoder,
                    progress: Callable[[int, int], None] | None = None, batch_size: int = 8,
                    stop: threading.Event | None = None) -> None:
    """
    Put the features of ``items`` into the encoder's cache (already cached ones are skipped).

    Runs in the caller's thread or in a background thread while training starts on what is
    already cached (CTranslate2 releases the GIL while it encodes).
    """
    by_id = {ex.id: ex for ex in examples}
    todo = [item for item in items if item.id in by_id and not encoder.cache.path(by_id[item.id].key).is_file()]
    done = len(items) - len(todo)
    if not todo and progress is not None:
        progress(done, len(items))
    for start in range(0, len(todo), batch_size):
        if stop is not None and stop.is_set():
            return
        chunk = todo[start: start + batch_size]
        encoder.features_batch([load_audio(item.audio) for item in chunk], batch_size=batch_size)
        if progress is not None:
            progress(done + start + len(chunk), len(items))


def prepare_examples(items: Sequence[Item], encoder: WhisperEncoder, llm: LLM,
                     progress: Callable[[int, int], None] | None = None,
                     batch_size: int = 8) -> list[Example]:
    """Index and encode every item into the cache; returns the examples."""
    examples = index_examples(items, encoder, llm)
    encode_examples(items, examples, encoder, progress, batch_size)
    return examples


def cached(examples: Sequence[Example], encoder: WhisperEncoder) -> list[Example]:
    """Keep the examples whose features are already on disk."""
    return [ex for ex in examples if encoder.cache.path(ex.key).is_file()]


def build_vocab(examples: Sequence[Example], extra_ids: Sequence[int] = (), n_vocab: int | None = None) -> torch.Tensor:
    """
    Build the token head's vocabulary, sorted.

    With ``n_vocab`` (the LLM's embedding rows) the head is open: every token the LLM has, so an
    adapter can emit any word, including words its training text never had. Training stays cheap
    because each step normalises over a sample of rows (:func:`sample_head_rows`). Without it, the
    tokens of the training transcripts (a closed head; kept for comparison and old adapters).
    """
    if n_vocab is not None:
        return torch.arange(int(n_vocab), dtype=torch.long)
    ids = {i for ex in examples for i in ex.target_ids} | set(extra_ids)
    return torch.tensor(sorted(ids), dtype=torch.long)


def neighbour_table(projector: Projector, rows: Sequence[int], k: int, chunk: int = 2048) -> dict[int, list[int]]:
    """
    For each head position in ``rows``, the ``k`` most similar other positions of the head.

    These are the hard negatives of a sampled softmax over an open vocabulary: " The" against
    " the", " cat" against " cats" and " cap". Uniform samples of 49k rows almost never contain
    them, and a head never contrasted with them confuses them at inference, where all rows compete.
    """
    table = projector.token_table
    rows = sorted({int(r) for r in rows})
    out: dict[int, list[int]] = {}
    if k <= 0 or not rows:
        return out
    with torch.no_grad():
        for start in range(0, len(rows), chunk):
            part = torch.tensor(rows[start: start + chunk], dtype=torch.long)
            sims = table[part] @ table.T
            sims[torch.arange(part.numel()), part] = -2.0
            top = sims.topk(k, dim=1).indices
            for r, nb in zip(part.tolist(), top.tolist()):
                out[r] = nb
    return out


def length_batches(examples: Sequence[Example], batch_size: int, rng: random.Random) -> list[list[Example]]:
    """Batches of similar length (less padding), in random order each epoch."""
    order = sorted(examples, key=lambda ex: (ex.n_frames + rng.random() * 25))
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def load_batch(batch: Sequence[Example], encoder: WhisperEncoder) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a batch's features from the cache and pad them: ([B, T, d], lengths [B])."""
    arrays = []
    for ex in batch:
        arr = encoder.cache.get(ex.key) if encoder.cache is not None else None
        if arr is None:
            raise TrainError(f'features of {ex.id} are missing from the cache {encoder.cache.dir}')
        arrays.append(arr)
    lengths = torch.tensor([a.shape[0] for a in arrays], dtype=torch.long)
    x = torch.zeros(len(arrays), int(lengths.max()), arrays[0].shape[1])
    for i, a in enumerate(arrays):
        x[i, : a.shape[0]] = torch.from_numpy(a)
    return x, lengths


def augment_features(x: torch.Tensor, lengths: torch.Tensor, config: TrainConfig, rng: random.Random) -> torch.Tensor:
    """Time masks and feature dropout on encoder frames: cheap regularisation that needs no re-encoding."""
    x = x.clone()
    for i in range(x.shape[0]):
        n = int(lengths[i])
        for _ in range(config.time_mask):
            width = rng.randint(0, 8)
            if n > width * 4 and width:
                start = rng.randint(0, n - width)
                x[i, start: start + width] = 0
    if config.feature_dropout > 0:
        x = F.dropout(x, config.feature_dropout, training=True)
    return x
