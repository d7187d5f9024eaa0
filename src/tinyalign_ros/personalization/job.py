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
On-device personalization: learn one operator's voice from a few minutes of speech, safely.

One run (:meth:`PersonalizationJob.run`) goes through these phases, each reported through the
progress callback and each checking the cancel flag:

1. ``recording``: collect the operator's utterances (enrollment answers, a dataset folder, or a
   rosbag2 with an audio topic and a transcript topic) and save them to the store's recordings
   folder *first*, so a cancelled, failed or killed run never loses speech. Unlabeled speech is
   labeled by the cascade ASR only when asked (``pseudo_label``), and marked lower-trust.
2. ``encoding``: cache Whisper features for the operator's speech, a small general set and a
   general canary set (both synthesized once with espeak-ng from sentences written below).
3. ``evaluating``: score the starting adapter (the operator's active one, else the pipeline's base
   adapter) on the operator's held-out utterances (split by utterance, deterministically) and on
   the canary; transcribe the first ``cascade_items`` held-out utterances with the cascade for the
   per-operator mode.
4. ``training``: fine-tune a copy of the starting projector with the LLM-free CTC objective (or the
   conventional ``ce`` one for comparison), the whole projector or LoRA adapters on its linear
   layers, on the operator's utterances mixed with general ones (so other speech is not forgotten),
   within a wall-clock and a step budget.
5. ``evaluating`` again, then the **quality gate**: the new adapter is kept only when the chosen
   metric improves by a relative margin and the canary does not get worse by more than a
   tolerance; otherwise the previous adapter stays active and the result says why, with numbers.
6. ``saving``: the adapter is written atomically into the store and only then made active; the
   operator's mode ('aligned', or 'cascade' while Whisper's own transcription is better on the
   held-out utterances it read) is recorded with the numbers that decided it; a PNG of the training curve and
   the before/after metrics is written next to the adapter.

The job is ROS-free: the action server calls it through :mod:`tinyalign_ros.personalization.api`
(the backend factory is :func:`ros_backend`) and the CLI calls it directly. The phases' parts live
beside it: :mod:`.sources` (1), :mod:`.sentences` (2), :mod:`.gate` (3, 5), :mod:`.methods` (4),
:mod:`.store` and :mod:`.report` (6), :mod:`.progress` (the reports).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
import hashlib
import json
import logging
import math
from pathlib import Path
import random
import threading
import time
from typing import Any, Callable
import uuid

import numpy as np
import soundfile as sf
import torch

from .api import (Backend, BackendContext, CANCEL_TOO_LATE, Limits, PersonalizeRequest, PersonalizeResult, Progress,
                  SOURCE_FOLDER, SOURCE_RECORD, TrainingOptions)
from .config import OPERATOR_AUGMENT, PersonalizeConfig, PersonalizeError
from .gate import as_saved, decide_mode, gate, projector_digest, Scores
from .methods import check_method, finish as finish_method, prepare as prepare_method
from .progress import Reporter
from .report import PLOT_NAME, plot_run
from .sentences import CANARY_SENTENCES, GENERAL_SENTENCES
from .sources import recordings_from_bag, recordings_from_folder, TRUST_HUMAN, TRUST_PSEUDO
from .store import AdapterStore, Recording, SaveCancelled, StoreError, write_json_atomic
from ..adapter import AdapterError, load_adapter
from ..audio import AudioError, load_audio, SAMPLE_RATE, validate
from ..augment import augment
from ..data import DatasetError, Item, load_dataset, split
from ..durable import is_disk_full
from ..encoder import FeatureCache, FRAMES_PER_SECOND, WhisperEncoder
from ..enrollment import ENROLLMENT_PROMPTS
from ..evaluate import evaluate, READINGS_VERSION
from ..fusion import FusionConfig
from ..memory import peak_rss_mb, release_memory
from ..metrics import wer
from ..projector import new_projector, Projector
from ..routing import confidence, DEFAULT_THRESHOLD, learn_threshold
from ..synth import DEFAULT_VOICES, HELDOUT_VOICES, synthesize_corpus
from ..training.config import Cancelled, TrainConfig
from ..training.examples import encode_examples, Example, index_examples
from ..training.trainer import greedy_wer, Progress as TrainProgress, summarize, train, TrainResult

log = logging.getLogger(__name__)


# What the LLM "repeat" reading of one held-out utterance costs on 2 cores (SmolLM2-135M in bfloat16):
# the fused reading's search, then the repeat, both growing with the utterance. Training is given
# what is left of the budget after it, so an estimate too low overruns the budget. Measured on an idle
# machine: 2.85 s per LJ recording (7.2 s of audio), 1.36 s per robot command (1.8 s); rounded up for
# a run's own overheads (docs/results.md, "The LLM reading's time").
REPEAT_S_PER_ITEM = 1.0
REPEAT_S_PER_AUDIO_S = 0.4


def repeat_seconds(audio_s: list[float]) -> float:
    """Estimate what one adapter's LLM reading of utterances this long (seconds each) takes."""
    return sum(REPEAT_S_PER_ITEM + REPEAT_S_PER_AUDIO_S * s for s in audio_s)


# Failures that come from the input or the machine, not from a bug: the result explains them, and
# a traceback in the log would only bury that explanation.
EXPECTED_ERRORS = (PersonalizeError, OSError, AudioError, DatasetError, AdapterError, StoreError, sf.LibsndfileError)


def _describe(exc: BaseException) -> str:
    """One line for a failure; a full disk is said in words, not as an errno."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if 'the disk is full' in text:
        return text
    if is_disk_full(exc):
        return f'the disk is full: {exc}'
    return f'{type(exc).__name__}: {exc}'


class PersonalizationJob:
    """
    Trains one operator's adapter; implements the node's ``PersonalizeJob`` Protocol.

    ``models`` is a :class:`~tinyalign_ros.pipeline.Pipeline` (shared with the assistant, so the
    models are loaded once) or anything with ``encoder``, ``llm``, ``projector`` and
    ``adapter_id``. The job never changes the pipeline: it trains a copy, and the caller decides
    when to answer with the new adapter (the node swaps it in after an accepted run).
    """

    def __init__(self, models: Any, store: AdapterStore, config: PersonalizeConfig | None = None,
                 log_fn: Callable[[str], None] | None = None) -> None:
        self.models = models
        self.store = store
        self.config = config or PersonalizeConfig()
        self.work_dir = Path(self.config.work_dir) if self.config.work_dir else store.work_dir
        self._log = log_fn or log.info
        self._lock = threading.Lock()  # one run at a time: they share caches and the store's pointer
        self.last_run: dict[str, Any] = {}  # details of the last completed run (plot, cascade WER, steps)

    @property
    def enrollment_prompts(self) -> tuple[str, ...]:
        """
        Return what an operator should read aloud at enrollment (:mod:`tinyalign_ros.enrollment`).

        The node's built-in list when no prompts file is configured.
        """
        return ENROLLMENT_PROMPTS

    def run(self, request: PersonalizeRequest, on_progress: Callable[[Progress], None],
            cancel: threading.Event) -> PersonalizeResult:
        """Personalize once; a failed or cancelled run never raises, its result says what happened."""
        if not self._lock.acquire(blocking=False):
            return PersonalizeResult(success=False, message='another personalization is already running')
        self.last_run = {}
        reporter = Reporter(on_progress, start_at=0.3 if request.source == SOURCE_RECORD else 0.0)
        try:
            run = _Run(self, request, reporter, cancel)
        except PersonalizeError as exc:  # the request's options do not make a valid configuration
            self._lock.release()
            return PersonalizeResult(success=False, message=f'bad request: {exc}')
        reporter.start()
        try:
            result = run.execute()
        except (Cancelled, SaveCancelled):
            result = replace(run.failure(f'cancelled during {reporter.phase}'), canceled=True)
        except Exception as exc:  # noqa: BLE001 - the result carries the reason; the caller keeps running
            if not isinstance(exc, EXPECTED_ERRORS):  # bad input and a full disk are not bugs: no traceback
                log.exception('personalization failed')
            result = run.failure(f'failed during {reporter.phase}: {_describe(exc)}')
        try:
            if result.success and cancel.is_set():  # the store was switched before the cancel was looked at
                result = replace(result, cancel_too_late=True, message=f'{result.message}; {CANCEL_TOO_LATE}')
            if run.skipped:
                shown = '; '.join(run.skipped[:3]) + (f'; and {len(run.skipped) - 3} more' if len(run.skipped) > 3
                                                      else '')
                result = replace(result, skipped=list(run.skipped),
                                 message=f'{result.message}; {len(run.skipped)} input(s) skipped: {shown}')
            return result
        finally:
            reporter.stop()
            self._lock.release()


@dataclass
class Models:
    """The loaded models a job needs when there is no Pipeline (any object with these works)."""

    encoder: WhisperEncoder
    llm: Any
    projector: Projector | None = None
    adapter_id: str | None = None
    fusion: FusionConfig | None = None  # how the aligned path reads (the repeat reading injects the same)


# -- the node's backend -------------------------------------------------------------------------
def ros_backend(context: BackendContext) -> Backend:
    """
    Build the backend the assistant node loads.

    The node names this factory as ``personalize.backend`` = ``'tinyalign_ros.personalization.job:ros_backend'``;
    the job shares the node's loaded pipeline.
    """
    pipeline = context.pipeline
    store = AdapterStore(context.store_dir)
    config = PersonalizeConfig(work_dir=Path(context.work_dir))
    # The projector loaded now is the base adapter: later the node swaps in operators' adapters, and
    # an operator without one of their own must start from the base, not from someone else's.
    models = Models(pipeline.encoder, pipeline.llm, getattr(pipeline, 'projector', None),
                    getattr(pipeline, 'adapter_id', None), getattr(pipeline, 'fusion', None))
    return Backend(job=PersonalizationJob(models, store, config, log_fn=context.log), store=store)


class _Run:
    """The state of one run, phase by phase (kept off the job so runs never share it)."""

    def __init__(self, job: PersonalizationJob, request: PersonalizeRequest, report: Reporter,
                 cancel: threading.Event) -> None:
        self.job, self.request, self.report, self.cancel = job, request, report, cancel
        self.store = job.store
        self.config = self._effective_config(job.config, request.options, request.limits)
        self.operator = request.operator_id
        self.started = time.monotonic()
        self.deadline = self.started + self.config.max_total_s if self.config.max_total_s else math.inf
        # How the aligned path reads: the repeat reading injects the same mix, and its remembered
        # scores are keyed by it (resolved here, so a changed default changes the key too).
        self.fusion = getattr(job.models, 'fusion', None) or FusionConfig()
        self.durations: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}
        self.session = f'{time.strftime("%Y%m%d-%H%M%S")}-{uuid.uuid4().hex[:4]}'
        self.n_train = self.n_holdout = 0
        self.items: list[Item] = []
        self.skipped: list[str] = []  # inputs left out, with the reason (reported in the result)
        self.start_id = ''
        self.cache_hits = 0  # scores and transcripts that were known already
        self.cascade_hyps: list[str] = []
        self.lr_probes: list[dict[str, float]] = []
        self.routing: dict[str, Any] = {}
        self.dev_ids: list[str] = []

    @staticmethod
    def _effective_config(config: PersonalizeConfig, options: TrainingOptions, limits: Limits) -> PersonalizeConfig:
        changes: dict[str, Any] = {}
        if options.holdout:
            changes['holdout'] = options.holdout
        if options.objective:
            changes['objective'] = options.objective
        if options.method:
            changes['method'] = options.method
        if options.pseudo_label:
            changes['pseudo_label'] = True
        if options.gate_margin is not None:
            changes['gate_margin'] = options.gate_margin
        if options.seed is not None:
            changes['seed'] = options.seed
        if limits.max_train_s:
            changes['max_train_s'] = float(limits.max_train_s)
        if limits.max_steps:
            changes['max_steps'] = int(limits.max_steps)
        return replace(config, **changes)

    # -- helpers ----------------------------------------------------------------------------------
    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled(f'cancelled during {self.report.phase}')

    def timed(self, name: str, since: float) -> None:
        """Account a phase's seconds and the process's peak memory so far; free what it left."""
        self.durations[name] = round(self.durations.get(name, 0.0) + time.monotonic() - since, 2)
        self.peak_rss_mb[name] = peak_rss_mb()
        release_memory()

    def failure(self, reason: str) -> PersonalizeResult:
        self.durations['total'] = round(time.monotonic() - self.started, 2)
        try:
            active = self.store.active(self.operator)
            kept = f'adapter {active.adapter_id}' if active else 'base adapter'
            mode = self.store.mode(self.operator)
        except Exception:  # noqa: BLE001 - the report must not fail on top of the failure
            kept, mode = 'previous adapter', 'aligned'
        where = self.store.recordings_dir(self.operator)
        saved = f'; {len(self.items)} recordings kept in {where}' if self.items else ''
        return PersonalizeResult(success=False, accepted=False, message=f'{reason}; the {kept} stays active{saved}',
                                 mode=mode, durations=dict(self.durations), n_train=self.n_train,
                                 n_holdout=self.n_holdout)

    # -- the phases -------------------------------------------------------------------------------
    def execute(self) -> PersonalizeResult:
        cfg = self.config
        models = self.job.models
        encoder = self._feature_encoder(models.encoder)
        llm = models.llm

        t = time.monotonic()
        self.report('recording', message='saving the recordings')
        items, pseudo_ids = self._collect(encoder)
        self.timed('recording', t)

        train_items, holdout = self._split(items, pseudo_ids)
        self.n_train, self.n_holdout = len(train_items), len(holdout)
        start, start_meta = self._starting_projector(encoder, llm)
        check_method(start, cfg.method)  # fails now, not after minutes of encoding and scoring

        t = time.monotonic()
        general, canary = self._general_sets()
        fit_items, dev_items = self._dev_split(train_items)
        views = self._augmented(fit_items)
        examples = self._encode(train_items + views + holdout + general + canary, encoder, llm)
        self.timed('encoding', t)
        keys = {ex.id: ex.key for ex in examples}
        fit_ids, general_ids = {item.id for item in fit_items}, {item.id for item in general}
        view_ids, dev_ids = {item.id for item in views}, {item.id for item in dev_items}
        train_examples = [ex for ex in examples if ex.id in fit_ids]
        dev_examples = [ex for ex in examples if ex.id in dev_ids]
        # The operator's recordings weigh most; each augmented view once; general speech is replayed
        # so the rest of the world is not forgotten.
        mix = (train_examples * cfg.operator_repeat + [ex for ex in examples if ex.id in view_ids]
               + [ex for ex in examples if ex.id in general_ids])
        if not train_examples:
            raise PersonalizeError('no training utterance has a usable transcript')

        t = time.monotonic()
        before = self._score(start, holdout, canary, encoder, llm, keys, 'before')
        cascade = self._cascade(holdout[: cfg.cascade_items], encoder, keys)
        self.timed('evaluating_before', t)

        # Scoring the new adapter costs about what the fast readings cost the first time, plus the
        # LLM reading of both adapters when the run is accepted (the start's may be known already).
        n_repeat = min(cfg.repeat_items, len(holdout))
        known = self._score_cache_file(start, 'repeat', holdout[:n_repeat], keys, llm, encoder)
        frames = {ex.id: ex.n_frames for ex in examples}
        per_adapter = repeat_seconds([frames.get(item.id, 0) / FRAMES_PER_SECOND for item in holdout[:n_repeat]])
        repeat_cost = per_adapter * (1 if known is not None and known.is_file() else 2)
        t = time.monotonic()
        trained, result, curve = self._train(start, mix, encoder, llm, before.seconds + repeat_cost, dev_examples)
        self.timed('train', t)

        t = time.monotonic()
        after = self._score(trained, holdout, canary, encoder, llm, keys, 'after')
        metrics_before, metrics_after = before.metrics(cascade), after.metrics(cascade)
        accepted, why = gate(metrics_before, metrics_after, cfg)
        if n_repeat and (accepted or cfg.gate_metric == 'wer_repeat'):
            # The slow reading only where it matters: what an accepted adapter changes for the LLM.
            self._score_repeat(start, before, holdout, encoder, llm, keys, 'after')
            self._score_repeat(trained, after, holdout, encoder, llm, keys, 'after')
            metrics_before, metrics_after = before.metrics(cascade), after.metrics(cascade)
            accepted, why = gate(metrics_before, metrics_after, cfg)
        self.routing = self._routing(trained if accepted else start, after if accepted else before, holdout,
                                     encoder, keys)
        self.timed('evaluating_after', t)

        t = time.monotonic()
        self.report('saving', message='quality gate')
        self.check()
        mode_metric = 'wer_nearest'
        # Whisper read only the first held-out utterances: the aligned path is judged on the same ones.
        aligned = self._aligned_wer(after if accepted else before, holdout, len(self.cascade_hyps))
        mode = decide_mode(aligned, cascade)
        mode_numbers = {'aligned_metric': mode_metric, 'aligned': aligned, 'cascade': cascade,
                        'n_holdout': len(holdout), 'n_compared': len(self.cascade_hyps),
                        'auto_threshold': self.routing.get('threshold')}
        meta = self._metadata(start_meta, result, metrics_before, metrics_after, accepted, why, mode, mode_numbers,
                              train_items, holdout, pseudo_ids, general, canary, before, after)
        version = None
        # The store looks at the cancel event under its lock right before the switch: set before,
        # nothing changes (SaveCancelled); set after, the switch stands and the cancel came too late.
        if accepted:
            version = self.store.add(self.operator, trained, meta, activate=True, mode=mode, mode_numbers=mode_numbers,
                                     cancel=self.cancel)
        else:
            self.store.set_mode(self.operator, mode, mode_numbers, adapter_id=self.start_id, cancel=self.cancel)
        # Every completed run leaves a record, accepted or not (a rejected adapter is not kept).
        run_dir = self.job.work_dir / 'runs' / f'{self.operator}-{self.session}'
        write_json_atomic(run_dir / 'run.json', {**meta, 'accepted': accepted,
                                                 'adapter_id': version.adapter_id if version else None})
        plot = self._plot(Path(version.path) if version else run_dir, curve, metrics_before, metrics_after,
                          accepted, why)
        self.timed('saving', t)
        self.durations['total'] = round(time.monotonic() - self.started, 2)
        verdict = 'accepted' if accepted else 'rejected (previous adapter kept)'
        mode_text = (f'mode {mode}: aligned {mode_metric} {_fmt(mode_numbers["aligned"])} vs cascade '
                     f'{_fmt(cascade)}')
        self.job._log(f'personalization of {self.operator}: {verdict}: {why}; {mode_text}')
        self.job.last_run = {'plot': str(plot) if plot else None, 'cascade_wer': cascade, 'mode_numbers': mode_numbers,
                             'steps': result.steps, 'stopped_by': result.stopped_by, 'gate': why,
                             'train_seconds': round(result.seconds, 1), 'session': self.session,
                             'holdout_ids': [item.id for item in holdout], 'run_dir': str(run_dir),
                             'peak_rss_mb': dict(self.peak_rss_mb), 'routing': dict(self.routing),
                             'cache_hits': self.cache_hits, 'lr': self._train_config.lr,
                             'best_dev_wer': result.best_val_wer, 'dev_ids': self.dev_ids}
        return PersonalizeResult(
            success=True, accepted=accepted, message=f'{verdict}: {why}; {mode_text}',
            adapter_id=version.adapter_id if version else '', adapter_path=version.path if version else '',
            mode=mode, metrics_before=metrics_before, metrics_after=metrics_after, durations=dict(self.durations),
            n_train=len(train_items), n_holdout=len(holdout))

    # -- 1: recordings ----------------------------------------------------------------------------
    def _collect(self, encoder: WhisperEncoder) -> tuple[list[Item], set[str]]:
        request, cfg = self.request, self.config
        if request.source == SOURCE_RECORD:
            recordings = []
            for n, (audio, text) in enumerate(request.utterances):
                try:
                    samples = validate(np.asarray(audio, np.float32), max_seconds=cfg.max_utterance_s)
                except AudioError as exc:  # one bad answer (empty, too long) must not cost the others
                    self.job._log(f'enrollment answer {n + 1} skipped: {exc}')
                    self.skipped.append(f'answer {n + 1}: {exc}')
                    continue
                recordings.append(Recording(samples, (text or '').strip() or None, '', {'source': SOURCE_RECORD}))
        elif request.source == SOURCE_FOLDER:
            recordings = recordings_from_folder(request.path, cfg.max_utterance_s, self.skipped)
        else:
            recordings = recordings_from_bag(request.path, request.topics, cfg.max_utterance_s)
        if request.limits.max_utterances:
            recordings = recordings[: request.limits.max_utterances]
        if not recordings:
            raise PersonalizeError(f'no operator speech found ({request.source} {request.path})'.replace(' )', ')'))
        for rec in recordings:
            rec.meta.setdefault('trust', TRUST_HUMAN if rec.text else TRUST_PSEUDO)
        self.check()
        # Saved before anything else can fail: speech is the one thing a re-run cannot recreate.
        items = self.store.save_recordings(self.operator, recordings, self.session)
        self.items = items
        self.report('recording', 0.5, message=f'{len(items)} recordings saved')
        unlabeled = [i for i, item in enumerate(items) if not item.text]
        if unlabeled and not cfg.pseudo_label:
            raise PersonalizeError(
                f'{len(unlabeled)} of {len(items)} utterances have no transcript; provide transcripts or '
                'enable pseudo-labels (they are saved and can be labeled later)')
        pseudo_ids: set[str] = {item.id for item in items if item.meta.get('trust') == TRUST_PSEUDO}
        if unlabeled:
            labeled = list(recordings)
            for n, i in enumerate(unlabeled):
                self.check()
                text = self._transcribe(load_audio(items[i].audio), encoder)
                labeled[i] = replace(recordings[i], text=text or None, id=items[i].meta.get('source_id', ''),
                                     meta={**recordings[i].meta, 'trust': TRUST_PSEUDO})
                self.report('recording', 0.5 + 0.5 * (n + 1) / len(unlabeled),
                            message=f'pseudo-labeling {n + 1}/{len(unlabeled)} with the cascade ASR')
            items = self.store.save_recordings(self.operator, labeled, self.session)
            self.items = items
        unique: dict[str, Item] = {}
        for item in items:  # the same recording given twice is one utterance
            if item.text:
                unique.setdefault(item.id, item)
        items = list(unique.values())
        if len(items) < 2:
            raise PersonalizeError(f'need at least 2 transcribed utterances (one to train, one to check), '
                                   f'got {len(items)}')
        return items, {item.id for item in items if item.id in pseudo_ids or item.meta.get('trust') == TRUST_PSEUDO}

    def _split(self, items: list[Item], pseudo_ids: set[str]) -> tuple[list[Item], list[Item]]:
        """
        Split the items into training and held-out sets, deterministically by utterance.

        Named ids, or a seeded count drawn preferably from human-labeled utterances (pseudo-labels
        would grade the cascade, not the operator).
        """
        options, cfg = self.request.options, self.config
        if options.holdout_ids:
            by_source = {item.meta.get('source_id', item.id): item.id for item in items}
            ids = [by_source.get(i, i) for i in options.holdout_ids]
            return split(items, ids, cfg.seed)
        count = cfg.holdout or max(1, min(8, round(len(items) / 4)))
        trusted = [item for item in items if item.id not in pseudo_ids]
        pool = trusted if len(trusted) > count else items
        _rest, held = split(pool, count, cfg.seed)
        held_ids = {item.id for item in held}
        if len(held_ids) >= len(items):
            raise PersonalizeError(f'holdout of {count} leaves nothing to train on ({len(items)} utterances)')
        return [i for i in items if i.id not in held_ids], [i for i in items if i.id in held_ids]

    # -- 2: features ------------------------------------------------------------------------------
    def _feature_encoder(self, encoder: WhisperEncoder) -> WhisperEncoder:
        """Return the shared encoder with a feature cache (a shallow copy shares the loaded model)."""
        if encoder.cache is not None:
            return encoder
        view = copy.copy(encoder)
        view.cache = FeatureCache(self.job.work_dir / 'features')
        return view

    def _general_sets(self) -> tuple[list[Item], list[Item]]:
        """Return the general mix and the canary, synthesized once into the work folder and reused."""
        cfg = self.config
        general: list[Item] = []
        canary: list[Item] = []
        if cfg.n_general:
            self.report('encoding', 0.0, message='general speech (synthesized once, then cached)')
            manifest = synthesize_corpus(list(GENERAL_SENTENCES), self.job.work_dir / 'general', list(DEFAULT_VOICES),
                                         rates=[140, 165, 190], n=cfg.n_general, seed=cfg.seed, progress=False)
            general = load_dataset(manifest)
        self.check()
        if cfg.n_canary:
            manifest = synthesize_corpus(list(CANARY_SENTENCES), self.job.work_dir / 'canary', list(HELDOUT_VOICES),
                                         rates=[150, 175], n=cfg.n_canary, seed=cfg.seed + 1, progress=False)
            canary = load_dataset(manifest)
        self.check()
        return general, canary

    def _encode(self, items: list[Item], encoder: WhisperEncoder, llm: Any) -> list[Example]:
        """Features of every utterance into the cache (cached ones are skipped); their examples."""
        examples = index_examples(items, encoder, llm)
        self.check()

        def progress(done: int, total: int) -> None:
            self.report('encoding', done / max(total, 1), message=f'{done}/{total} utterances encoded')

        encode_examples(items, examples, encoder, progress, batch_size=4, stop=self.cancel)
        self.check()
        return examples

    # -- 3: scores --------------------------------------------------------------------------------
    def _starting_projector(self, encoder: WhisperEncoder, llm: Any) -> tuple[Projector, dict[str, Any]]:
        """Copy the operator's active adapter, else the pipeline's current (base) one."""
        active = self.store.active(self.operator)
        if active is not None:
            try:
                projector, meta = load_adapter(active.path, encoder.identity, llm.identity, llm.embedding_matrix)
                self.start_id = active.adapter_id
                return projector, meta
            except Exception as exc:  # noqa: BLE001 - a damaged personal adapter: start from the base one
                self.job._log(f'active adapter {active.adapter_id} of {self.operator} cannot be loaded ({exc}); '
                              'starting from the base adapter')
        base = getattr(self.job.models, 'projector', None)
        if base is None:
            base = new_projector(encoder, llm)
        self.start_id = ''
        return copy.deepcopy(base).eval(), {'adapter_id': getattr(self.job.models, 'adapter_id', None) or 'base'}

    def _score_cache_file(self, projector: Projector, reading: str, items: list[Item], keys: dict[str, str],
                          llm: Any, encoder: WhisperEncoder) -> Path | None:
        """
        Where one adapter's scores on exactly these utterances are remembered (None: no cache).

        The LLM's precision is part of the key: its identity names the weights, which are the same
        for a float32 and a bfloat16 run, but the readings differ (the LJ case's LLM repeat read
        0.676 in float32 and 0.747 in bfloat16).
        """
        if not self.config.score_cache or not items:
            return None
        h = hashlib.sha256()
        precision = str(getattr(llm, 'dtype', ''))
        h.update(json.dumps([reading, READINGS_VERSION, repr(self.fusion), str(llm.identity), precision,
                             str(encoder.identity)], sort_keys=True, default=str).encode())
        for item in items:
            h.update(f'{keys.get(item.id, item.id)}|{item.text}\n'.encode())
        return self.job.work_dir / 'scores' / f'{projector_digest(projector)}-{h.hexdigest()[:24]}.json'

    def _cached_evaluate(self, projector: Projector, items: list[Item], readings: tuple[str, ...],
                         encoder: WhisperEncoder, llm: Any, keys: dict[str, str],
                         progress: Callable[[int, int], None]) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
        """(metrics, details, seconds it took when measured) of ``evaluate``, from the cache when known."""
        path = self._score_cache_file(projector, '+'.join(readings), items, keys, llm, encoder)
        if path is not None and path.is_file():
            try:
                record = json.loads(path.read_text(encoding='utf-8'))
                self.cache_hits += 1
                for i in range(len(items)):
                    progress(i + 1, len(items))
                return dict(record['metrics']), list(record['details']), float(record['seconds'])
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a damaged record is measured again

        def features(item: Item) -> np.ndarray:
            feats = encoder.cache.get(keys[item.id]) if item.id in keys else None
            return feats if feats is not None else encoder.features(load_audio(item.audio))

        projector.eval()
        scored = evaluate(items, encoder, llm, projector, readings, progress=progress, features=features,
                          fusion=self.fusion)
        if path is not None:
            write_json_atomic(path, {'metrics': scored.metrics, 'details': scored.details,
                                     'seconds': round(scored.seconds, 3)})
        return dict(scored.metrics), list(scored.details), float(scored.seconds)

    def _score(self, projector: Projector, holdout: list[Item], canary: list[Item], encoder: WhisperEncoder,
               llm: Any, keys: dict[str, str], when: str) -> Scores:
        """Take the fast readings: projector-alone WER and audio NLL on the held-out speech, and the canary."""
        total = len(holdout) + len(canary)
        done = [0]

        def progress(_i: int, _n: int) -> None:
            done[0] += 1
            self.report(when, done[0] / max(total, 1), message=f'scoring {when}: {done[0]}/{total}')
            self.check()

        self.report(when, 0.0, message=f'scoring {when}')
        metrics, details, seconds = self._cached_evaluate(projector, holdout, ('nearest', 'nll_audio'), encoder, llm,
                                                          keys, progress)
        canary_wer = None
        if canary:
            scored, _rows, more = self._cached_evaluate(projector, canary, ('nearest',), encoder, llm, keys, progress)
            canary_wer = scored['wer_nearest']
            seconds += more
        return Scores(metrics, canary_wer, details, seconds)

    def _score_repeat(self, projector: Projector, scores: Scores, holdout: list[Item], encoder: WhisperEncoder,
                      llm: Any, keys: dict[str, str], when: str) -> None:
        """Add the slow reading (the LLM repeats the projected audio) to ``scores``."""
        repeat = holdout[: self.config.repeat_items]
        if not repeat:
            return
        done = [0]

        def progress(_i: int, _n: int) -> None:
            done[0] += 1
            self.report(when, done[0] / len(repeat), message=f'LLM reading {when}: {done[0]}/{len(repeat)}')
            self.check()

        metrics, details, seconds = self._cached_evaluate(projector, repeat, ('repeat',), encoder, llm, keys,
                                                          progress)
        scores.heldout['wer_repeat'] = metrics['wer_repeat']
        scores.heldout['n_repeat'] = len(repeat)
        scores.repeat_seconds = seconds
        for row, extra in zip(scores.details, details):
            row['repeat'] = extra.get('repeat')

    def _cascade_cache(self) -> Path:
        return self.job.work_dir / 'cascade_transcripts.json'

    def _transcribe(self, audio: np.ndarray, encoder: WhisperEncoder) -> str:
        """Whisper's transcription, cached by audio+model key (it is the slow part of the cascade)."""
        path = self._cascade_cache()
        try:
            cache = json.loads(path.read_text(encoding='utf-8')) if path.is_file() else {}
        except (OSError, ValueError):
            cache = {}
        key = encoder.cache_key(audio)
        if key not in cache:
            cache[key] = encoder.transcribe(audio)
            write_json_atomic(path, cache)
        else:
            self.cache_hits += 1
        return str(cache[key])

    def _cascade(self, holdout: list[Item], encoder: WhisperEncoder, keys: dict[str, str]) -> float | None:
        hyps = []
        for i, item in enumerate(holdout):
            self.check()
            hyps.append(self._transcribe(load_audio(item.audio), encoder))
            self.report('before', 1.0, message=f'cascade transcription {i + 1}/{len(holdout)}')
        self.cascade_hyps = hyps
        return round(wer([item.text or '' for item in holdout], hyps), 4) if holdout else None

    @staticmethod
    def _aligned_wer(scores: Scores, holdout: list[Item], n: int) -> float | None:
        """Return the projector-alone WER of the first ``n`` held-out utterances (those Whisper read too)."""
        if n <= 0:
            return None
        return round(wer([item.text or '' for item in holdout[:n]],
                         [row.get('nearest', '') for row in scores.details[:n]]), 4)

    def _routing(self, projector: Projector, scores: Scores, holdout: list[Item], encoder: WhisperEncoder,
                 keys: dict[str, str]) -> dict[str, Any]:
        """
        Learn the operator's ``auto`` threshold.

        Per held-out utterance: the aligned path's confidence and which path read it with fewer
        word errors. Whisper's errors are the cascade's (30 s window), already read for the gate, as
        a stand-in for the fitted-window reading ``auto`` falls back to: reading that one too cost a
        first LJ run 3.7 s of its training budget, and it reads short utterances at least as well
        (docs/results.md, "auto mode reads Whisper from the fitted window").
        """
        margins, aligned, cascade = [], [], []
        # Only the utterances Whisper read (``cascade_items``) can say which path was better.
        for item, row, hyp in zip(holdout, scores.details, self.cascade_hyps):
            feats = encoder.cache.get(keys[item.id]) if item.id in keys else None
            if feats is None:
                feats = encoder.features(load_audio(item.audio))
            margins.append(confidence(projector, feats).margin)
            n_words = max(1, len((item.text or '').split()))
            aligned.append(wer([item.text or ''], [row.get('nearest', '')]) * n_words)
            cascade.append(wer([item.text or ''], [hyp]) * n_words)
        threshold, numbers = learn_threshold(margins, aligned, cascade, DEFAULT_THRESHOLD)
        return {'threshold': threshold, 'margins': [round(m, 4) for m in margins], **numbers}

    # -- 4: training ------------------------------------------------------------------------------
    def _augmented(self, items: list[Item]) -> list[Item]:
        """``augment_views`` seeded views of each training recording, written once into the work folder."""
        cfg = self.config
        if not cfg.augment_views:
            return []
        folder = self.job.work_dir / 'augmented'
        # The recipe is part of each view's name: a changed recipe makes new views, never reuses old ones.
        recipe = hashlib.sha256(repr(OPERATOR_AUGMENT).encode()).hexdigest()[:8]
        out: list[Item] = []
        for n, item in enumerate(items):
            self.check()
            samples = load_audio(item.audio)
            digest = hashlib.sha256(samples.tobytes()).hexdigest()[:20]
            for view in range(cfg.augment_views):
                path = folder / f'{digest}-{recipe}-s{cfg.seed}-v{view}.wav'
                if not path.is_file():
                    rng = random.Random(f'{digest}:{cfg.seed}:{view}')
                    audio, _what = augment(samples, rng, OPERATOR_AUGMENT)
                    write_wav_atomic(path, audio)
                out.append(Item(f'{item.id}~v{view}', path, item.text))
            self.report('encoding', 0.0, message=f'augmenting {n + 1}/{len(items)} recordings')
        return out

    def _dev_split(self, train_items: list[Item]) -> tuple[list[Item], list[Item]]:
        """(training, dev): a few operator utterances that choose the stopping step, seeded."""
        count = self.config.dev_items
        if not count or len(train_items) < count + 4:
            return train_items, []
        ids = sorted(item.id for item in train_items)
        random.Random(self.config.seed + 7).shuffle(ids)
        dev_ids = set(ids[:count])
        self.dev_ids = sorted(dev_ids)
        return [i for i in train_items if i.id not in dev_ids], [i for i in train_items if i.id in dev_ids]

    def _prepare_head(self, projector: Projector, mix: list[Example], llm: Any) -> list[int]:
        """
        Bind the adapter's whole head plus the operator's new words; returns that vocabulary.

        Training then draws fresh negatives each step (``train_negatives`` uniform rows plus the nearest
        rows of every target token), as the base alignment does. A fixed small head would let the
        projector drift toward the thousands of rows it never contrasted with, which all compete at
        inference: on an open-vocabulary adapter that undid every gain on held-out sentences.
        """
        own = {i for ex in mix for i in ex.target_ids}
        vocab = sorted(set(projector.vocab_ids.tolist()) | own)
        projector.bind_llm(llm.embedding_matrix, torch.tensor(vocab, dtype=torch.long))
        return vocab

    def _make_train_config(self, lr: float, budget: float, validate: bool) -> TrainConfig:
        cfg = self.config
        return TrainConfig(objective=cfg.objective, lr=lr, warmup_steps=cfg.warmup_steps,
                           max_steps=cfg.max_steps, max_time_s=budget, batch_size=cfg.batch_size,
                           val_items=0, eval_every=cfg.eval_every if validate else 10 ** 9,
                           patience=cfg.patience, time_mask=cfg.time_mask, feature_dropout=cfg.feature_dropout,
                           seed=cfg.seed, anchor=cfg.anchor, schedule_by_time=cfg.schedule_by_time,
                           negatives=cfg.train_negatives, hard_negatives=cfg.hard_negatives,
                           device=self._train_device(), dtype=cfg.dtype)

    def _train_device(self) -> str:
        """Train where the LLM runs: a robot whose assistant is on its GPU personalizes there too."""
        device = getattr(getattr(self.job.models, 'llm', None), 'device', None)
        return 'cuda' if getattr(device, 'type', 'cpu') == 'cuda' else 'cpu'

    def _choose_lr(self, start: Projector, mix: list[Example], dev: list[Example], encoder: WhisperEncoder,
                   llm: Any) -> tuple[float, list[dict[str, float]]]:
        """Short probes of each candidate learning rate; the best dev WER wins (ties: the first)."""
        cfg = self.config
        if len(cfg.lr_candidates) < 2 or not dev:
            return cfg.lr, []
        tried = []
        for lr in cfg.lr_candidates:
            self.check()
            probe = copy.deepcopy(start)
            vocab = self._prepare_head(probe, mix, llm)
            prepare_method(probe, cfg.method, cfg.lora_rank)
            self.report('training', 0.0, message=f'probing learning rate {lr:g} for {cfg.probe_s:.0f} s')
            train(probe, mix, encoder, llm, self._make_train_config(lr, cfg.probe_s, False), val_examples=[],
                  cancel=self.cancel)
            finish_method(probe, cfg.method)
            probe.bind_llm(llm.embedding_matrix, torch.tensor(vocab, dtype=torch.long))
            tried.append({'lr': lr, 'dev_wer': round(greedy_wer(probe.eval(), dev, encoder, llm), 4)})
        best = min(tried, key=lambda row: row['dev_wer'])
        return best['lr'], tried

    def _train(self, start: Projector, mix: list[Example], encoder: WhisperEncoder, llm: Any,
               reserve_s: float, dev: list[Example] | None = None
               ) -> tuple[Projector, TrainResult, list[tuple[int, float, float]]]:
        cfg = self.config
        dev = list(dev or [])
        # The whole run has a wall-clock budget: keep back what scoring the new adapter will take.
        t_probe = time.monotonic()
        lr, self.lr_probes = self._choose_lr(start, mix, dev, encoder, llm)
        probe_s = time.monotonic() - t_probe
        left = self.deadline - time.monotonic() - reserve_s - 3.0
        budget = min(max(1.0, cfg.max_train_s - probe_s), max(5.0, left))  # a few seconds even when the rest overran
        projector = copy.deepcopy(start)
        vocab = self._prepare_head(projector, mix, llm)
        prepare_method(projector, cfg.method, cfg.lora_rank)
        train_config = self._make_train_config(lr, budget, bool(dev))
        curve: list[tuple[int, float, float]] = []
        t0 = time.monotonic()

        def progress(p: TrainProgress) -> None:
            elapsed = time.monotonic() - t0
            if p.loss is not None and p.phase == 'training':
                curve.append((p.step, elapsed, float(p.loss)))
            eta = (p.eta_s or 0.0) + reserve_s
            self.report('training', max(elapsed / budget, p.step / p.max_steps), p.step, p.loss, eta,
                        f'step {p.step}, {len(mix)} utterances in the mix' + (f', {p.message}' if p.message else ''))

        self.report('training', 0.0, message=f'training ({cfg.objective}, {cfg.method}, lr {lr:g}) '
                                             f'for up to {budget:.0f} s')
        result = train(projector, mix, encoder, llm, train_config, val_examples=dev, progress=progress,
                       cancel=self.cancel)
        finish_method(projector, cfg.method)
        projector.bind_llm(llm.embedding_matrix, torch.tensor(vocab, dtype=torch.long))
        as_saved(projector.eval())
        result.projector = projector
        self._train_config = train_config
        return projector, result, curve

    # -- 6: records -------------------------------------------------------------------------------
    def _metadata(self, start_meta: dict[str, Any], result: TrainResult, before: dict[str, float],
                  after: dict[str, float], accepted: bool, why: str, mode: str, mode_numbers: dict[str, Any],
                  train_items: list[Item], holdout: list[Item], pseudo_ids: set[str], general: list[Item],
                  canary: list[Item], scores_before: Scores, scores_after: Scores) -> dict[str, Any]:
        encoder, llm = self.job.models.encoder, self.job.models.llm
        n_pseudo = sum(1 for item in train_items + holdout if item.id in pseudo_ids)
        return {
            'encoder': encoder.identity, 'llm': llm.identity,
            'parent': start_meta.get('adapter_id') or self.start_id or 'base',
            'training': {**summarize(result, self._train_config), 'method': self.config.method,
                         'lora_rank': self.config.lora_rank if self.config.method == 'lora' else 0,
                         'lr_probes': self.lr_probes, 'augment_views': self.config.augment_views,
                         'dev_ids': self.dev_ids, 'anchor': self.config.anchor},
            'routing': dict(self.routing),
            'data': {
                'source': self.request.source, 'path': self.request.path, 'session': self.session,
                'train_ids': [item.id for item in train_items], 'holdout_ids': [item.id for item in holdout],
                'n_general': len(general), 'n_canary': len(canary), 'operator_repeat': self.config.operator_repeat,
                'trust': TRUST_PSEUDO if n_pseudo == len(train_items) + len(holdout) else
                ('mixed' if n_pseudo else TRUST_HUMAN),
                'pseudo_labeled_ids': sorted(pseudo_ids),
            },
            'personalization': {
                'operator_id': self.operator, 'before': before, 'after': after,
                'gate': {'accepted': accepted, 'reason': why, 'metric': self.config.gate_metric,
                         'margin': self.config.gate_margin, 'canary_tolerance': self.config.canary_tolerance},
                'mode': mode, 'mode_numbers': mode_numbers, 'durations': dict(self.durations),
                'heldout_details': scores_after.details, 'heldout_details_before': scores_before.details,
            },
            'metrics': {'operator_heldout': after},
        }

    def _plot(self, folder: Path, curve: list[tuple[int, float, float]], before: dict[str, float],
              after: dict[str, float], accepted: bool, why: str) -> Path | None:
        """Training curve and before/after bars, written next to the adapter (best effort)."""
        try:
            return plot_run(folder / PLOT_NAME, curve, before, after,
                            f'{self.operator}: {"accepted" if accepted else "rejected"} - {why}')
        except Exception as exc:  # noqa: BLE001 - a missing plot never fails a run
            self.job._log(f'could not write the personalization plot: {exc}')
            return None


def write_wav_atomic(path: Path, samples: np.ndarray) -> None:
    """16 kHz 16-bit WAV written under a temporary name, then renamed (a killed run leaves no half file)."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{uuid.uuid4().hex[:6]}.tmp')
    sf.write(str(tmp), np.asarray(samples, dtype=np.float32), SAMPLE_RATE, subtype='PCM_16', format='WAV')
    tmp.replace(path)


def _fmt(value: float | None) -> str:
    return 'n/a' if value is None else f'{value:.3f}'
