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
Training the projector: the loop.

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

from dataclasses import asdict, dataclass, field
import math
from pathlib import Path
import random
import threading
import time
from typing import Any, Callable, Sequence

import torch

from .config import Cancelled, TrainConfig, TrainError
from .examples import augment_features, cached, Example, length_batches, load_batch, neighbour_table
from .objectives import ce_loss, ctc_loss, slots_loss
from ..adapter import save_adapter
from ..encoder import WhisperEncoder
from ..llm import LLM
from ..metrics import wer
from ..projector import Projector


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


def summarize(result: TrainResult, config: TrainConfig) -> dict[str, Any]:
    """Return what goes into an adapter's metadata about its training run."""
    return {'objective': config.objective, 'config': asdict(config), 'steps': result.steps,
            'seconds': round(result.seconds, 1), 'stopped_by': result.stopped_by,
            'best_val_wer': result.best_val_wer, 'vocab_size': result.vocab_size,
            'n_train': result.n_train, 'n_val': result.n_val, 'history': result.history}
