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
It runs on the CPU or a GPU (``TrainConfig.device``), optionally under autocast (``dtype``), and in
several processes at once under torchrun (:mod:`.distributed`): each rank computes its slice of
every global batch, DDP averages the gradients, rank 0 validates and writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
import inspect
import math
from pathlib import Path
import random
import threading
import time
from typing import Any, Callable, Iterable, Sequence

import torch

from .config import Cancelled, resolve_train_device, resolve_train_dtype, TrainConfig, TrainError
from .distributed import Dist
from .examples import augment_features, cached, Example, length_batches, load_batch, neighbour_table
from .objectives import ce_loss, ctc_loss, slots_loss
from ..adapter import save_adapter
from ..encoder import WhisperEncoder
from ..llm import LLM
from ..metrics import wer
from ..projector import build_projector, Projector


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
    world_size: int = 1  # processes that trained together (torchrun); config.batch_size is their global batch


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


def make_optimizer(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """
    Return the AdamW every training run uses: the fused kernel where all parameters allow it.

    The fused step updates all tensors in one kernel instead of a Python loop of small operations:
    with the shipped projector it is 2.5 ms of a 70 ms CPU step instead of 7 ms (docs/results.md,
    "Training cost"). It is used for float32 weights on one CPU or CUDA device, which is what the
    projector has; anything else (LoRA on a half-precision LLM, say) takes the plain loop, which
    computes the same update, and so does a torch older than 2.4 (a robot's vendor build), whose
    fused kernel is CUDA-only.
    """
    params = list(params)
    fused = bool(params) and all(p.dtype == torch.float32 and p.device.type in ('cpu', 'cuda') for p in params) \
        and len({p.device for p in params}) == 1
    if fused:
        try:
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, ValueError):  # this torch has no fused kernel for these devices
            pass
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def anchor_penalty(projector: Projector, start: dict[str, torch.Tensor]) -> torch.Tensor:
    """
    Compute L2-SP: each trainable tensor's mean squared distance from its start, summed.

    A per-tensor mean, so one weight does not depend on the projector's size.
    """
    total = torch.zeros((), device=projector.logit_scale.device)
    for name, param in projector.named_parameters():
        if param.requires_grad and name in start:
            total = total + (param - start[name]).pow(2).mean().to(total.device)
    return total


def greedy_wer(projector: Projector, examples: Sequence[Example], encoder: WhisperEncoder, llm: LLM) -> float:
    """Projector-alone WER (CTC greedy reading) on the examples whose features are cached."""
    refs, hyps = [], []
    for ex in cached(examples, encoder):
        feats = encoder.cache.get(ex.key)
        hyps.append(llm.tokenizer.decode(projector.decode_ids(feats, llm.piece_texts), skip_special_tokens=True))
        refs.append(ex.text)
    return wer(refs, hyps) if refs else math.inf


def train(projector: Projector, examples: Sequence[Example], encoder: WhisperEncoder, llm: LLM,
          config: TrainConfig, val_examples: Sequence[Example] | None = None,
          progress: Callable[[Progress], None] | None = None,
          cancel: threading.Event | None = None, checkpoint_dir: Path | None = None,
          checkpoint_meta: dict[str, Any] | None = None, checkpoint_every: int = 1000,
          dist: Dist | None = None) -> TrainResult:
    """
    Train ``projector`` in place (it must already be bound to ``llm``); return the best state.

    Raises :class:`Cancelled` when ``cancel`` is set; the caller decides what survives. The
    projector comes back on the CPU whatever ``config.device`` trained it on.

    With ``dist`` (several processes, see :mod:`.distributed`) ``config.batch_size`` is the global
    batch: every rank draws the same batches and computes its own contiguous slice of each, so the
    update is that of one process with the same batch. Only rank 0 validates, checkpoints and
    reports progress; the other ranks return the last step's weights, not the best.
    """
    if not examples:
        raise TrainError('no training examples')
    dist = dist or Dist()
    device = resolve_train_device(config.device, dist.local_rank)
    amp_dtype = resolve_train_dtype(config.dtype, device)
    if dist.enabled and config.batch_size % dist.world_size:
        raise TrainError(f'batch_size {config.batch_size} is the global batch and must be a multiple of the number '
                         f'of processes ({dist.world_size})')
    if dist.enabled and config.objective == 'ce' and config.lora_rank > 0:
        raise TrainError('LoRA on the LLM (lora_rank > 0) is not supported in a distributed run: DDP wraps the '
                         'projector only')
    # Rank 0 seeds exactly as a one-process run; other ranks draw their own dropout masks.
    torch.manual_seed(config.seed + dist.rank)
    rng = random.Random(config.seed)
    # One process draws batches and augmentation from one stream (as it always has). Ranks must draw
    # identical batches, so their augmentation (which depends on their slice) gets a stream of its own.
    aug_rng = random.Random(f'{config.seed}:augment:{dist.rank}') if dist.enabled else rng
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
    if device.type != 'cpu':
        projector.to(device)
        if config.objective == 'ce':
            llm.require_model().to(device)
    lora_params: list[torch.nn.Parameter] = []
    if config.objective == 'ce' and config.lora_rank > 0:
        lora_params = _add_lora(llm, config.lora_rank)
    forward: Any = projector
    if dist.enabled:
        forward = _Replica(projector, device, config.objective)
    params = [p for p in projector.parameters() if p.requires_grad] + lora_params
    optim = make_optimizer(params, config.lr, config.weight_decay)
    anchor_start = ({name: p.detach().clone() for name, p in projector.named_parameters() if p.requires_grad}
                    if config.anchor > 0 else {})
    pad_id = llm.tokenizer.pad_token_id if llm.tokenizer.pad_token_id is not None else 0
    # float16 gradients underflow without loss scaling; bfloat16 keeps float32's range and needs none.
    scaler = torch.amp.GradScaler('cuda') if amp_dtype == torch.float16 else None
    autocast = amp_dtype != torch.float32
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
        if dist.enabled and len(available) != len(examples):
            # Ranks must draw the same batches: a distributed run extracts every feature first.
            raise TrainError(f'rank {dist.rank}: {len(examples) - len(available)} training features are missing '
                             f'from {encoder.cache.dir}; every rank must see the same feature cache')
        if not available:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f'cancelled at step {step}')
            if time.perf_counter() - start > config.max_time_s:
                stopped_by = 'time_budget'
                break
            (cancel or threading.Event()).wait(1.0)
            continue
        for batch in length_batches(available, config.batch_size, rng):
            cancelled = cancel is not None and cancel.is_set()
            elapsed = time.perf_counter() - start
            if dist.enabled:  # rank 0's clock and cancel flag: every rank stops at the same step
                elapsed, flag = dist.broadcast([elapsed, float(cancelled)], device)
                cancelled = bool(flag)
            if cancelled:
                raise Cancelled(f'cancelled at step {step}')
            if elapsed > config.max_time_s:
                stopped_by = 'time_budget'
                break
            part, share = batch, 1.0
            if dist.enabled:
                if len(batch) < dist.world_size:
                    continue  # an epoch's short last batch: a rank without items could not join the all-reduce
                part = batch[dist.shard(len(batch))]
                share = _share(part, batch, config.objective)
            x, lengths = load_batch(part, encoder)
            x = augment_features(x, lengths, config, aug_rng)
            if device.type != 'cpu':
                x, lengths = x.to(device, non_blocking=True), lengths.to(device)
            for group in optim.param_groups:
                group['lr'] = lr_at(step, config, elapsed)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=autocast):
                if config.objective == 'ctc':
                    loss = ctc_loss(forward, x, lengths, part, vocab_index, config.negatives, head_gen, neighbours,
                                    sample_from=batch)
                elif config.objective == 'slots':
                    loss = slots_loss(forward, x, lengths, part, llm.embedding_matrix, pad_id)
                else:
                    loss = ce_loss(forward, x, lengths, part, llm)
            penalty = None
            if dist.enabled:
                # DDP averages gradients over ranks; weighting each rank's mean by its share of the
                # batch (times the world size) makes that average the gradient of the whole batch's mean.
                data_loss = loss.detach().float() * share
                loss = loss * (share * dist.world_size)
            if anchor_start:
                penalty = config.anchor * anchor_penalty(projector, anchor_start)
                loss = loss + penalty
            optim.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                optim.step()
            else:
                scaler.scale(loss).backward()
                scaler.unscale_(optim)  # clip the true gradients, not the scaled ones
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                scaler.step(optim)
                scaler.update()
            step += 1
            if dist.enabled:  # the whole batch's loss (as one process would log it), not this rank's slice
                value = dist.sum(float(data_loss), device) + (float(penalty.detach()) if penalty is not None else 0.0)
            else:
                value = float(loss.detach())
            running = value if running is None else 0.98 * running + 0.02 * value
            if progress is not None and dist.is_main and (step % 10 == 0 or step == 1):
                rate = (time.perf_counter() - start) / step
                eta = min(rate * (config.max_steps - step), max(0.0, config.max_time_s - elapsed))
                progress(Progress('training', step, config.max_steps, running, eta))
            last = step >= config.max_steps
            if val_examples and (step % config.eval_every == 0 or last):
                early = False
                if dist.is_main:  # the other ranks wait for the verdict at the broadcast below
                    projector.eval()
                    val_wer = greedy_wer(_on_cpu(projector, llm, device), val_examples, encoder, llm)
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
                        early = bad_evals >= config.patience
                if dist.enabled:
                    early = bool(dist.broadcast([float(early)], device)[0])
                if early:
                    stopped_by = 'early_stopping'
                    break
            elif checkpoint_dir is not None and not val_examples and step % checkpoint_every == 0 and dist.is_main:
                save_adapter(checkpoint_dir, projector, {**(checkpoint_meta or {}), 'step': step})
            if last:
                break
    if best_state is not None:
        projector.load_state_dict(best_state)
    if device.type != 'cpu':
        _back_to_cpu(projector, llm, config)
    projector.eval()
    return TrainResult(projector, step, time.perf_counter() - start, None if best_wer is math.inf else best_wer,
                       history, stopped_by, int(projector.vocab_ids.numel()), len(examples), len(val_examples or []),
                       dist.world_size)


def _share(part: Sequence[Example], batch: Sequence[Example], objective: str) -> float:
    """
    Return the fraction of the batch's loss that ``part`` carries.

    ``ctc`` and ``slots`` average over utterances, ``ce`` over target tokens (one cross-entropy mean
    over the whole padded batch), so that is what the fraction counts.
    """
    if objective == 'ce':
        return sum(len(ex.target_ids) for ex in part) / max(1, sum(len(ex.target_ids) for ex in batch))
    return len(part) / len(batch)


class _Scored(torch.nn.Module):
    """
    The projector's forward, returning only what the objective scores.

    DDP expects a gradient for every parameter reachable from the forward's outputs. ``slots`` and
    ``ce`` never score the token head's logits, so the blank and the temperature behind them would
    get none and the all-reduce would wait for them forever; without the logits in the output DDP
    sees them as unused (``find_unused_parameters``) and reduces the rest.
    """

    def __init__(self, projector: Projector, keep_logits: bool) -> None:
        super().__init__()
        self.projector = projector
        self.keep_logits = keep_logits

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.projector(*args, **kwargs)
        return out if self.keep_logits else replace(out, logits=None)


class _Replica:
    """
    The projector as the objectives see it in a distributed run: calls go through DDP, the rest to the projector.

    The forward must go through the DDP wrapper (that is where it prepares the gradient all-reduce);
    the objectives also read the projector's own attributes (its vocabulary), which the wrapper hides.
    """

    def __init__(self, projector: Projector, device: torch.device, objective: str) -> None:
        from torch.nn.parallel import DistributedDataParallel

        # Buffers (the LLM's embedding table among them) are the same on every rank and never
        # change: broadcasting them every step would copy 100+ MB for nothing.
        no_buffer_sync = ({'forward_sync_buffers': False} if 'forward_sync_buffers' in
                          inspect.signature(DistributedDataParallel).parameters else {'broadcast_buffers': False})
        self._projector = projector
        self._ddp = DistributedDataParallel(_Scored(projector, keep_logits=objective == 'ctc'),
                                            device_ids=[device.index] if device.type == 'cuda' else None,
                                            find_unused_parameters=objective != 'ctc', **no_buffer_sync)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._ddp(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._projector, name)


def _on_cpu(projector: Projector, llm: LLM, device: torch.device) -> Projector:
    """
    Return ``projector`` itself on the CPU, or a CPU copy of a projector training on a GPU.

    Validation reads utterances one at a time through the inference path, which runs on the CPU.
    """
    if device.type == 'cpu':
        return projector
    copy = build_projector(projector.config)
    state = {k: v.detach().cpu() for k, v in projector.state_dict().items()}
    copy.vocab_ids = state['vocab_ids']  # sized by the bound vocabulary, so set before loading
    copy.load_state_dict(state)
    if projector.is_bound:
        copy.bind_llm(llm.embedding_matrix.detach().cpu())
    return copy.eval()


def _back_to_cpu(projector: Projector, llm: LLM, config: TrainConfig) -> None:
    """
    Move a GPU-trained projector (and the LLM, for ``ce``) back to the CPU, where inference runs.

    Binding again makes the head share the LLM's embedding table once more instead of holding a copy.
    """
    if config.objective == 'ce' and llm.model is not None:
        llm.model.to('cpu')
    projector.to('cpu')
    if projector.is_bound:
        projector.bind_llm(llm.embedding_matrix)


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
            'n_train': result.n_train, 'n_val': result.n_val, 'history': result.history,
            'world_size': result.world_size, 'per_rank_batch': config.batch_size // result.world_size}
