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
Training the projector.

EmbedLink-style objectives that keep the LLM out of the loop, and the conventional next-token
objective through the frozen LLM for comparison.

Objectives (``TrainConfig.objective``):

- ``ctc`` (the product's choice): each reduced frame is scored against the LLM's own token
  embeddings (cosine to the centred rows, see :class:`tinyalign_ros.projector.Projector`) plus a
  blank, and a CTC loss asks those scores to spell the transcript's token ids. Targets are the LLM's
  input embeddings of the transcript, as in EmbedLink, but CTC finds *where* each token is, which the
  fixed-slot regression cannot. The LLM never runs forward or backward.
- ``slots``: the paper's literal EmbedLink, MSE + cosine between T adaptive-pooled slots and the
  transcript's embeddings padded to T. Kept to show why it collapses (padding dominates the loss).
- ``ce``: the projected frames are injected into the prompt and the frozen LLM's next-token
  cross-entropy of the transcript is back-propagated to the projector (SLAM-ASR style; optional
  LoRA on the LLM through peft). This is the cost baseline.

The trainer streams cached encoder features from disk batch by batch (memory stays bounded),
batches by length, uses AdamW with warm-up and cosine decay, clips gradients, validates on a
held-out split with early stopping, checks a cancel flag every step, and checkpoints atomically.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
import math
from pathlib import Path
import random
import threading
import time
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from .adapter import save_adapter
from .audio import load_audio
from .data import Item
from .encoder import n_feature_frames, WhisperEncoder
from .evaluate import REPEAT_PROMPT
from .llm import LLM, PromptConfig
from .metrics import wer
from .projector import build_projector, Projector, ProjectorConfig

OBJECTIVES = ('ctc', 'slots', 'ce')


class TrainError(RuntimeError):
    """Training cannot start or continue (no data, bad settings)."""


class Cancelled(Exception):
    """Raised inside the loop when the cancel flag is set; the caller keeps the previous adapter."""


@dataclass
class TrainConfig:
    objective: str = 'ctc'
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    max_steps: int = 20000
    max_time_s: float = 3000.0
    batch_size: int = 16
    grad_clip: float = 1.0
    seed: int = 0
    val_items: int = 64  # held out from the training items (by utterance) for early stopping
    eval_every: int = 500
    patience: int = 6  # evaluations without a better validation WER before stopping
    time_mask: int = 2  # SpecAugment-style masks over encoder frames (count; width <= 8 frames)
    feature_dropout: float = 0.1
    min_lr_ratio: float = 0.05
    lora_rank: int = 0  # ce only: LoRA rank on the LLM's q/v projections (0 = frozen LLM)
    negatives: int = 4096  # ctc only: vocabulary rows sampled per step besides the batch's own (0 = all)
    hard_negatives: int = 8  # ctc only: nearest head rows of each target token added to every step's sample
    # L2-SP: weight of a pull toward the starting weights (sum of squared differences, mean per
    # parameter tensor). Fine-tuning on a few minutes of one voice drifts away from what the start
    # knew; this keeps it near, so general speech is not forgotten. 0 = plain fine-tuning.
    anchor: float = 0.0
    # True: the learning rate decays over whichever runs out first, steps or seconds. False: over the
    # steps alone, so a run is reproducible whatever the machine's load (the time budget still stops it).
    schedule_by_time: bool = True

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise TrainError(f'objective must be one of {OBJECTIVES}, got {self.objective!r}')
        if self.batch_size < 1 or self.max_steps < 1 or self.lr <= 0:
            raise TrainError('batch_size, max_steps and lr must be positive')
        if self.negatives < 0:
            raise TrainError(f'negatives must be >= 0, got {self.negatives}')
        if self.anchor < 0:
            raise TrainError(f'anchor must be >= 0, got {self.anchor}')

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainError(f'unknown training settings: {unknown}')
        return cls(**data)


@dataclass
class Example:
    """One training utterance as the trainer sees it: a cache key, a length and token ids."""

    id: str  # noqa: A003 - Item.id, the manifest's field name, carried through training
    key: str
    n_frames: int
    target_ids: list[int]
    text: str


@dataclass
class Progress:
    phase: str
    step: int
    max_steps: int
    loss: float | None = None
    eta_s: float | None = None
    message: str = ''


@dataclass
class TrainResult:
    projector: Projector
    steps: int
    seconds: float
    best_val_wer: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_by: str = 'max_steps'
    vocab_size: int = 0
    n_train: int = 0
    n_val: int = 0


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


# -- data ---------------------------------------------------------------------------------------
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


def bound_heap(mmap_threshold: int = 1 << 20) -> bool:
    """
    Ask glibc to serve allocations above ``mmap_threshold`` with mmap, returned to the OS on free.

    Training allocates batches of a different size every step; glibc's default raises its mmap
    threshold after the first large free (up to 32 MB), so those buffers then come from the heap and
    fragment it, and the process' resident memory creeps up over a long run. A fixed threshold
    stops that. Returns False (and changes nothing) where glibc is not the C library.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_mmap_threshold = -3  # from malloc.h
    return bool(mallopt(m_mmap_threshold, int(mmap_threshold)))


# -- objectives ---------------------------------------------------------------------------------
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
             neighbours: dict[int, list[int]] | None = None) -> torch.Tensor:
    """CTC over the token head; with ``negatives`` > 0 the softmax covers a sampled sub-vocabulary."""
    target_rows = torch.tensor([vocab_index[i] for ex in batch for i in ex.target_ids], dtype=torch.long)
    rows = sample_head_rows(target_rows, int(projector.vocab_ids.numel()), negatives, generator, neighbours)
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


# -- the loop -----------------------------------------------------------------------------------
def lr_at(step: int, config: TrainConfig, elapsed_s: float = 0.0) -> float:
    """
    Return the learning rate: linear warm-up, then cosine decay.

    The decay runs over whichever budget (steps or time) runs out first, so a run cut by its time
    budget still ends at a low learning rate.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    by_steps = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    by_time = elapsed_s / config.max_time_s if config.schedule_by_time else 0.0
    progress = min(1.0, max(by_steps, by_time))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def anchor_penalty(projector: Projector, start: dict[str, torch.Tensor]) -> torch.Tensor:
    """
    Compute L2-SP: each trainable tensor's mean squared distance from its start, summed.

    A per-tensor mean, so one weight does not depend on the projector's size.
    """
    total = torch.zeros(())
    for name, param in projector.named_parameters():
        if param.requires_grad and name in start:
            total = total + (param - start[name]).pow(2).mean().to(total.device)
    return total


def greedy_wer(projector: Projector, examples: Sequence[Example], encoder: WhisperEncoder, llm: LLM) -> float:
    """Projector-alone WER (CTC greedy reading) on the examples whose features are cached."""
    refs, hyps = [], []
    for ex in cached(examples, encoder):
        feats = encoder.cache.get(ex.key)
        hyps.append(llm.tokenizer.decode(projector.decode_ids(feats), skip_special_tokens=True))
        refs.append(ex.text)
    return wer(refs, hyps) if refs else math.inf


def train(projector: Projector, examples: Sequence[Example], encoder: WhisperEncoder, llm: LLM,
          config: TrainConfig, val_examples: Sequence[Example] | None = None,
          progress: Callable[[Progress], None] | None = None,
          cancel: threading.Event | None = None, checkpoint_dir: Path | None = None,
          checkpoint_meta: dict[str, Any] | None = None, checkpoint_every: int = 1000) -> TrainResult:
    """
    Train ``projector`` in place (it must already be bound to ``llm``); return the best state.

    Raises :class:`Cancelled` when ``cancel`` is set; the caller decides what survives.
    """
    if not examples:
        raise TrainError('no training examples')
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    head_gen = torch.Generator().manual_seed(config.seed)
    examples = list(examples)
    if val_examples is None:
        # The first items (a seeded shuffle already) are encoded first, so validation can start early.
        n_val = min(config.val_items, len(examples) // 5)
        val_examples, examples = examples[:n_val], examples[n_val:]
    vocab_index = {int(t): i for i, t in enumerate(projector.vocab_ids.tolist())}
    if config.objective == 'ctc':
        missing = {i for ex in examples for i in ex.target_ids} - set(vocab_index)
        if missing:
            raise TrainError(f'{len(missing)} training token ids are outside the projector vocabulary')
    neighbours = None
    if config.objective == 'ctc' and config.negatives > 0 and config.hard_negatives > 0:
        neighbours = neighbour_table(projector, [vocab_index[i] for ex in examples for i in ex.target_ids],
                                     config.hard_negatives)
    lora_params: list[torch.nn.Parameter] = []
    if config.objective == 'ce' and config.lora_rank > 0:
        lora_params = _add_lora(llm, config.lora_rank)
    params = [p for p in projector.parameters() if p.requires_grad] + lora_params
    optim = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    anchor_start = ({name: p.detach().clone() for name, p in projector.named_parameters() if p.requires_grad}
                    if config.anchor > 0 else {})
    pad_id = llm.tokenizer.pad_token_id if llm.tokenizer.pad_token_id is not None else 0
    start = time.perf_counter()
    step = 0
    history: list[dict[str, float]] = []
    best_wer, best_state, bad_evals = math.inf, None, 0
    stopped_by = 'max_steps'
    running = None
    projector.train()
    while step < config.max_steps and stopped_by == 'max_steps':
        # Features may still be arriving from a background encoder: each epoch uses what is cached.
        available = cached(examples, encoder)
        if not available:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f'cancelled at step {step}')
            if time.perf_counter() - start > config.max_time_s:
                stopped_by = 'time_budget'
                break
            (cancel or threading.Event()).wait(1.0)
            continue
        for batch in length_batches(available, config.batch_size, rng):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f'cancelled at step {step}')
            elapsed = time.perf_counter() - start
            if elapsed > config.max_time_s:
                stopped_by = 'time_budget'
                break
            x, lengths = load_batch(batch, encoder)
            x = augment_features(x, lengths, config, rng)
            for group in optim.param_groups:
                group['lr'] = lr_at(step, config, elapsed)
            if config.objective == 'ctc':
                loss = ctc_loss(projector, x, lengths, batch, vocab_index, config.negatives, head_gen, neighbours)
            elif config.objective == 'slots':
                loss = slots_loss(projector, x, lengths, batch, llm.embedding_matrix, pad_id)
            else:
                loss = ce_loss(projector, x, lengths, batch, llm)
            if anchor_start:
                loss = loss + config.anchor * anchor_penalty(projector, anchor_start)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optim.step()
            step += 1
            value = float(loss.detach())
            running = value if running is None else 0.98 * running + 0.02 * value
            if progress is not None and (step % 10 == 0 or step == 1):
                rate = (time.perf_counter() - start) / step
                eta = min(rate * (config.max_steps - step), max(0.0, config.max_time_s - elapsed))
                progress(Progress('training', step, config.max_steps, running, eta))
            last = step >= config.max_steps
            if val_examples and (step % config.eval_every == 0 or last):
                projector.eval()
                val_wer = greedy_wer(projector, val_examples, encoder, llm)
                projector.train()
                history.append({'step': step, 'seconds': round(time.perf_counter() - start, 1),
                                'train_loss': round(running, 4), 'val_wer': round(val_wer, 4)})
                if progress is not None:
                    progress(Progress('evaluating', step, config.max_steps, running, None,
                                      f'validation WER {val_wer:.3f}'))
                if val_wer < best_wer:
                    best_wer, bad_evals = val_wer, 0
                    best_state = {k: v.detach().clone() for k, v in projector.state_dict().items()}
                    if checkpoint_dir is not None:
                        save_adapter(checkpoint_dir, projector, {**(checkpoint_meta or {}), 'step': step,
                                                                 'val_wer': val_wer})
                else:
                    bad_evals += 1
                    if bad_evals >= config.patience:
                        stopped_by = 'early_stopping'
                        break
            elif checkpoint_dir is not None and not val_examples and step % checkpoint_every == 0:
                save_adapter(checkpoint_dir, projector, {**(checkpoint_meta or {}), 'step': step})
            if last:
                break
    if best_state is not None:
        projector.load_state_dict(best_state)
    projector.eval()
    return TrainResult(projector, step, time.perf_counter() - start, None if best_wer is math.inf else best_wer,
                       history, stopped_by, int(projector.vocab_ids.numel()), len(examples), len(val_examples or []))


def _add_lora(llm: LLM, rank: int) -> list[torch.nn.Parameter]:
    """Add LoRA (peft) to the LLM's attention q/v projections, for the conventional baseline only."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=['q_proj', 'v_proj'], lora_dropout=0.0)
    llm.model = get_peft_model(llm.model, config)
    return [p for p in llm.model.parameters() if p.requires_grad]


def new_projector(encoder: WhisperEncoder, llm: LLM, vocab_ids: torch.Tensor | None = None,
                  config: ProjectorConfig | None = None) -> Projector:
    """
    Build a freshly initialized projector bound to ``llm``: it runs end to end and understands nothing yet.

    ``vocab_ids`` restricts its token head (None: every row of the LLM's embeddings); ``config``
    defaults to the standard design for this encoder and LLM.
    """
    config = config or ProjectorConfig(encoder_dim=encoder.d_model, llm_dim=llm.hidden_size)
    projector = build_projector(config)
    projector.bind_llm(llm.embedding_matrix, vocab_ids)
    return projector


def summarize(result: TrainResult, config: TrainConfig) -> dict[str, Any]:
    """Return what goes into an adapter's metadata about its training run."""
    return {'objective': config.objective, 'config': asdict(config), 'steps': result.steps,
            'seconds': round(result.seconds, 1), 'stopped_by': result.stopped_by,
            'best_val_wer': result.best_val_wer, 'vocab_size': result.vocab_size,
            'n_train': result.n_train, 'n_val': result.n_val, 'history': result.history}


__all__ = ['TrainConfig', 'Example', 'Progress', 'TrainResult', 'Cancelled', 'TrainError', 'prepare_examples',
           'neighbour_table', 'build_vocab', 'train', 'index_examples', 'encode_examples', 'cached', 'greedy_wer',
           'new_projector', 'summarize', 'ctc_loss', 'ce_loss', 'slots_loss', 'target_text', 'sample_head_rows',
           'bound_heap', 'anchor_penalty']
