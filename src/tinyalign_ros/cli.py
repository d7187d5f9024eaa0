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
The `tinyalign` command: the engine without ROS.

Every sub-command prints a human summary by default and one JSON object with ``--json`` (for
scripts and benchmarks). Errors print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
import sys
from typing import Any, Callable, Sequence

from tqdm import tqdm

DEFAULT_DATA = Path('../shared/data')


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _progress(desc: str, total: int, enabled: bool = True) -> tuple[Callable[[int, int], None], tqdm]:
    bar = tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, leave=False)

    def update(done: int, _total: int) -> None:
        bar.n = done
        bar.refresh()

    return update, bar


# GenerationConfig fields that every answering command accepts as --flags (the YAML's generation: section
# is the other way to set them; both land in the same dataclass).
GENERATION_FLAGS = ('max_new_tokens', 'repetition_penalty', 'no_repeat_ngram_size', 'loop_repeats',
                    'budget_min_tokens', 'budget_per_question_token')


def _generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--max-new-tokens', type=int, help='hard cap on answer tokens')
    p.add_argument('--repetition-penalty', type=float, help='>1 discourages repeating answer tokens (1 = off)')
    p.add_argument('--no-repeat-ngram-size', type=int, help='never repeat an n-gram of this size (0 = off)')
    p.add_argument('--loop-repeats', type=int, help='stop when a span repeats this many times in a row (0 = off)')
    p.add_argument('--budget-min-tokens', type=int, help='answer budget for the shortest question')
    p.add_argument('--budget-per-question-token', type=float,
                   help='answer tokens allowed per question token (0 = always --max-new-tokens)')


def _config(args: argparse.Namespace) -> Any:
    from .config import load_config

    overrides: dict[str, Any] = {}
    if getattr(args, 'adapter', None):
        overrides['adapter'] = str(args.adapter)
    if getattr(args, 'whisper', None):
        overrides['encoder.model'] = args.whisper
    if getattr(args, 'llm', None):
        overrides['llm.model'] = args.llm
    for name in GENERATION_FLAGS:  # decoding settings given on the command line beat the YAML
        if getattr(args, name, None) is not None:
            overrides[f'generation.{name}'] = getattr(args, name)
    if getattr(args, 'instruction', None):
        overrides['prompt.instruction'] = args.instruction
    return load_config(getattr(args, 'config', None), overrides)


# -- respond -------------------------------------------------------------------------------------
def cmd_respond(args: argparse.Namespace) -> int:
    from .audio import load_audio
    from .pipeline import Pipeline

    config = _config(args)
    audio = load_audio(args.audio, max_seconds=config.max_utterance_s)
    pipeline = Pipeline.from_config(config)
    mode = 'cascade' if args.cascade else config.mode
    stream = None if args.json else (lambda piece: print(piece, end='', flush=True))
    response = pipeline.respond(audio, mode=mode, on_token=stream)
    if args.json:
        out = {'text': response.text, 'mode': response.mode, 'audio_s': round(response.audio_s, 3),
               'latency_ms': {k: round(v, 1) for k, v in response.latency_ms.items()},
               'truncated': response.truncated, 'adapter': response.adapter_id}
        if response.transcript is not None:
            out['transcript'] = response.transcript
        _print_json(out)
    else:
        print()
        lat = ', '.join(f'{k} {v:.0f} ms' for k, v in response.latency_ms.items())
        print(f'[{response.mode}] {response.audio_s:.1f} s of audio; {lat}', file=sys.stderr)
    return 0


# -- evaluate ------------------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import load_dataset, select
    from .evaluate import READINGS, evaluate
    from .pipeline import Pipeline

    items = load_dataset(args.data)
    if args.ids:
        items = select(items, args.ids)
    if args.split:
        items = [it for it in items if it.meta.get('split') == args.split]
        if not items:
            raise ValueError(f'no items of split {args.split!r} in {args.data}')
    if args.limit:
        items = items[: args.limit]
    if args.task == 'qa':
        from .qa import PATHS, evaluate_qa, qa_items

        qa_items(items)  # refuse a manifest without answers before loading any model
        pipeline = Pipeline.from_config(_config(args))
        update, bar = _progress('asking', len(items), not args.json)
        qa = evaluate_qa(items, pipeline, args.paths or list(PATHS), progress=update)
        bar.close()
        out = qa.to_dict(with_details=args.details)
        out['adapter'] = pipeline.adapter_id
        out['generation'] = dataclasses.asdict(pipeline.generation)
        if args.json:
            _print_json(out)
        else:
            print(f'{"path":>8}  accuracy  first token  total  (n={qa.n}, adapter {pipeline.adapter_id})')
            for path, acc in qa.accuracy.items():
                if acc is not None:
                    lat = qa.latency_ms[path] or {}
                    print(f'{path:>8}  {acc:8.3f}  {lat.get("first_token", 0):8.0f} ms  {lat.get("total", 0):5.0f} ms')
            print(f'aligned / cascade: {out["aligned_over_cascade"]}')
            for voice, accs in qa.per_voice.items():
                print(f'  {voice}: ' + ', '.join(f'{k} {v}' for k, v in accs.items() if v is not None))
        return 0
    pipeline = Pipeline.from_config(_config(args))
    readings = args.readings or list(READINGS)
    update, bar = _progress('evaluating', len(items), not args.json)
    result = evaluate(items, pipeline.encoder, pipeline.llm, pipeline.projector, readings, progress=update)
    bar.close()
    out = result.to_dict(with_details=args.details)
    out['adapter'] = pipeline.adapter_id
    if args.json:
        _print_json(out)
    else:
        for key, value in out.items():
            if key != 'details':
                print(f'{key:>16}: {value}')
    return 0


# -- synth ---------------------------------------------------------------------------------------
def _augment_config(spec: str | None) -> Any:
    """``--augment``: 'default' (the base corpus recipe), a JSON object of settings, or a JSON file."""
    if spec is None:
        return None
    from .augment import AugmentConfig

    if spec == 'default':
        return AugmentConfig()
    text = Path(spec).read_text(encoding='utf-8') if Path(spec).is_file() else spec
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f'--augment must be "default", a JSON object or a JSON file: {exc}') from exc
    if not isinstance(data, dict):
        raise ValueError('--augment must be a JSON object of AugmentConfig settings')
    return AugmentConfig.from_dict(data)


def cmd_synth(args: argparse.Namespace) -> int:
    from .synth import DEFAULT_VOICES, read_sentences, synthesize_corpus

    augment_config = _augment_config(args.augment)
    if args.set:
        from .qa import synthesize_set

        if args.text is not None:
            raise ValueError('give either --text or --set, not both')
        voices = args.voices or ['en-us+f3', 'flite:slt']
        manifest = synthesize_set(args.set, args.out, voices, split=args.split, rates=args.rates or [160],
                                  augment_config=augment_config, seed=args.seed, workers=args.workers,
                                  progress=not args.json)
        summary = {'manifest': str(manifest), 'set': args.set, 'split': args.split or 'all', 'voices': voices,
                   'rates': args.rates or [160], 'augment': args.augment, 'seed': args.seed}
        _print_json(summary) if args.json else print(f'{args.set} set written: {manifest}')
        return 0
    if args.text is None:
        raise ValueError('give --text SENTENCES or --set qa|commands')
    if args.split:
        raise ValueError('--split applies to --set only')
    rates = args.rates or [140, 165, 190]
    sentences = read_sentences(args.text, max_words=args.max_words)
    voices = args.voices or list(DEFAULT_VOICES)
    out = synthesize_corpus(sentences, args.out, voices=voices, rates=rates, n=args.n, seed=args.seed,
                            max_words=args.max_words, workers=args.workers, progress=not args.json,
                            augment_config=augment_config)
    summary = {'manifest': str(Path(out) / 'manifest.jsonl') if Path(out).is_dir() else str(out),
               'voices': voices, 'rates': rates, 'augment': args.augment, 'seed': args.seed}
    _print_json(summary) if args.json else print(f'corpus written: {summary["manifest"]}')
    return 0


# -- align ---------------------------------------------------------------------------------------
def cmd_align(args: argparse.Namespace) -> int:
    """
    Train the base adapter for an encoder/LLM pair from synthesized speech.

    Every default comes from the recipe file (the shipped one unless ``--recipe``); a flag given on
    the command line overrides that one value.
    """
    import dataclasses

    from .align import align, load_recipe
    from .encoder import WhisperEncoder
    from .llm import LLM
    from .projector import ProjectorConfig
    from .train import TrainConfig, bound_heap

    recipe, train_dict, projector_dict = load_recipe(args.recipe)
    recipe.score_cascade = not args.no_cascade
    for flag, name in (('max_utterances', 'max_train_utterances'), ('seed', 'seed')):
        if getattr(args, flag) is not None:
            setattr(recipe, name, getattr(args, flag))
    for flag, name in (('objective', 'objective'), ('max_steps', 'max_steps'), ('batch_size', 'batch_size'),
                       ('lr', 'lr'), ('seed', 'seed'), ('eval_every', 'eval_every'), ('negatives', 'negatives')):
        if getattr(args, flag) is not None:
            train_dict[name] = getattr(args, flag)
    if args.minutes is not None:
        train_dict['max_time_s'] = args.minutes * 60.0
    for flag, name in (('projector', 'type'), ('reduction', 'reduction'), ('d_model', 'd_model'),
                       ('layers', 'n_layers'), ('heads', 'n_heads'), ('ff_dim', 'ff_dim')):
        if getattr(args, flag) is not None:
            projector_dict[name] = getattr(args, flag)

    bound_heap()  # a long run of differently sized batches: keep the heap from creeping up
    work = Path(args.work_dir)
    encoder = WhisperEncoder(args.whisper, cache_dir=work / 'features')
    # The LLM-free objectives need only the tokenizer and the embedding table (most of the memory
    # saved); the conventional one runs the whole LLM.
    train_config = TrainConfig.from_dict(train_dict)
    llm = LLM(args.llm, threads=args.threads, embeddings_only=train_config.objective != 'ce')
    projector_config = ProjectorConfig.from_dict({**projector_dict, 'encoder_dim': encoder.d_model,
                                                  'llm_dim': llm.hidden_size})
    log = (lambda _msg: None) if args.json else (lambda msg: print(msg, flush=True))
    meta = align(Path(args.text), work, Path(args.out), encoder, llm, recipe, train_config, projector_config,
                 real_data=Path(args.real) if args.real else None, log=log, progress=not args.json,
                 init=args.init)
    summary = {'adapter': str(args.out), 'metrics': meta['metrics'], 'seconds': meta['seconds'],
               'recipe': dataclasses.asdict(recipe), 'train': meta['training']['config']}
    if args.json:
        _print_json(summary)
    return 0


# -- corpus --------------------------------------------------------------------------------------
def cmd_corpus(args: argparse.Namespace) -> int:
    """Build the assistant text corpus (deterministic for a seed) and print its summary."""
    from .corpus import CorpusConfig, build_corpus

    log = (lambda _msg: None) if args.json else (lambda msg: print(msg, flush=True))
    summary = build_corpus(args.out, args.text, CorpusConfig(seed=args.seed), log=log)
    if args.json:
        _print_json(summary)
    else:
        print(f'{summary["distinct_train_sentences"]} distinct training sentences; coverage {summary["coverage"]}')
    return 0


# -- bench-train ---------------------------------------------------------------------------------
def cmd_bench_train(args: argparse.Namespace) -> int:
    from .bench import SHAPES, bench_train
    from .encoder import WhisperEncoder
    from .llm import LLM

    encoder = WhisperEncoder(args.whisper)
    shape = args.llm if args.llm in SHAPES else None
    # A random-weight shape only needs the embedded tokenizer; a real LLM is timed with its weights.
    llm = LLM(None if shape else args.llm, threads=args.threads, embeddings_only=shape is not None)
    result = bench_train(encoder, llm, shape=shape, batch_size=args.batch_size, repeats=args.repeats,
                         negatives=args.negatives)
    if args.json:
        _print_json(result)
    else:
        print(f'{result["llm"]}: ctc {result["objective_per_sample_s"]:.4f} s/sample, '
              f'ce {result["ce_per_sample_s"]:.4f} s/sample, ratio {result["ratio"]}x')
    return 0


# -- demo ----------------------------------------------------------------------------------------
# Five spoken questions of the QA set's dev split, chosen by topic (a capital, a count, a colour, an
# animal, a day) before any answer was seen, spoken by flite's slt voice (built from a real speaker's
# recordings, unlike espeak-ng's formant voices) unless --voice names another.
DEMO_QUESTION_IDS = ('qa001', 'qa013', 'qa043', 'qa076', 'qa061')
DEMO_VOICE = 'flite:slt'
DEMO_RECORDINGS = ('LJ001-0009', 'LJ001-0027', 'LJ001-0030')


def cmd_demo(args: argparse.Namespace) -> int:
    """Show the assistant answering spoken questions and real recordings, in both modes."""
    from .audio import load_audio
    from .data import load_dataset, select
    from .evaluate import evaluate
    from .pipeline import Pipeline
    from .qa import contains_answer, load_set
    from .synth import synthesize

    pipeline = Pipeline.from_config(_config(args))
    print(f'adapter: {pipeline.adapter_id}', flush=True)
    records = {r['id']: r for r in load_set('qa', 'dev')}
    questions = [records[qid] for qid in DEMO_QUESTION_IDS]
    right = {'aligned': 0, 'cascade': 0}
    print(f'\n== {len(questions)} spoken questions from the QA dev set, voice {args.voice}; '
          'an answer is right when it contains an accepted keyword', flush=True)
    for record in questions:
        audio = synthesize(record['question'], voice=args.voice)
        print(f'\n"{record["question"]}"  (accepted: {" / ".join(record["answers"])})')
        for mode in ('aligned', 'cascade'):
            response = pipeline.respond(audio, mode=mode)
            ok = contains_answer(response.text, record['answers'])
            right[mode] += ok
            heard = f'  (heard: "{response.transcript}")' if response.transcript is not None else ''
            print(f'  [{mode:8}] {"right" if ok else "WRONG"}  {response.text!r}{heard}  '
                  f'[first token {response.latency_ms["first_token"]:.0f} ms, total '
                  f'{response.latency_ms["total"]:.0f} ms]', flush=True)
    print(f'\nright answers: aligned {right["aligned"]}/{len(questions)}, cascade {right["cascade"]}/{len(questions)}')
    lj = Path(args.data) / 'ljspeech'
    items = []
    if (lj / 'metadata.csv').is_file():
        items = select(load_dataset(lj), list(DEMO_RECORDINGS))
    else:
        print(f'(no real recordings at {lj}; pass --data)')
    for item in items:
        print(f'\n== real recording {item.id}: "{item.text}"')
        audio = load_audio(item.audio)
        for mode in ('aligned', 'cascade'):
            response = pipeline.respond(audio, mode=mode)
            heard = f' (heard: "{response.transcript}")' if response.transcript else ''
            print(f'  [{mode:8}] {response.text!r}{heard}  [first token {response.latency_ms["first_token"]:.0f} ms, '
                  f'total {response.latency_ms["total"]:.0f} ms]', flush=True)
    if items:
        print('\n== projector alone vs cascade on these recordings')
        result = evaluate(items, pipeline.encoder, pipeline.llm, pipeline.projector, ('nearest', 'cascade'))
        for row in result.details:
            print(f'  {row["id"]}  nearest: {row["nearest"]!r}')
        print(f'  wer_nearest {result.metrics["wer_nearest"]}   wer_cascade {result.metrics["wer_cascade"]}')
        _demo_personalize(pipeline, lj)
    return 0


DEMO_HOLDOUT = tuple(f'LJ001-{i:04d}' for i in range(25, 33))


def _demo_personalize(pipeline: Any, lj: Path) -> None:
    """
    Personalize to the real reader (24 recordings, 8 held out) in a throw-away store.

    Say in a few lines what changed: the held-out error before and after, kept or not and why, time,
    memory.
    """
    import tempfile
    import threading

    from .memory import peak_rss_mb
    from .personalization.api import SOURCE_FOLDER, PersonalizeRequest, TrainingOptions
    from .personalization.config import PersonalizeConfig
    from .personalization.job import PersonalizationJob
    from .personalization.store import AdapterStore

    print('\n== personalizing to the real reader: 24 recordings, LJ001-0025..0032 held out', flush=True)
    with tempfile.TemporaryDirectory(prefix='tinyalign-demo-') as tmp:
        store = AdapterStore(Path(tmp) / 'store')
        job = PersonalizationJob(pipeline, store, PersonalizeConfig(work_dir=Path(tmp) / 'work'),
                                 log_fn=lambda _msg: None)
        request = PersonalizeRequest(operator_id='demo_reader', source=SOURCE_FOLDER, path=str(lj),
                                     options=TrainingOptions(holdout_ids=list(DEMO_HOLDOUT)))
        phases: list[str] = []

        def show(progress: Any) -> None:
            if not phases or phases[-1] != progress.phase:
                phases.append(progress.phase)
                print(f'  {progress.phase}...', flush=True)

        result = job.run(request, show, threading.Event())
        if not result.success:
            print(f'  personalization failed: {result.message}')
            return
        before, after = result.metrics_before, result.metrics_after
        run = job.last_run

        def change(key: str) -> str:
            b, a = before.get(key), after.get(key)
            if b is None or a is None:  # the slow LLM reading is made for accepted runs only
                return 'not measured (read by the LLM only when the fast readings accept the run)'
            return f'{b:.3f} -> {a:.3f} ({(a - b) / b:+.0%})' if b else f'{b:.3f} -> {a:.3f}'

        verdict = 'ACCEPTED, now active' if result.accepted else 'REJECTED, the previous adapter stays active'
        print(f'  held-out word error, projector alone : {change("wer_nearest")}   (Whisper cascade: '
              f'{before.get("wer_cascade", float("nan")):.3f})')
        print(f'  held-out word error, LLM repeats it  : {change("wer_repeat")}')
        print(f'  general speech (forgetting canary)   : {change("wer_canary")}')
        print(f'  verdict: {verdict}')
        print(f'    why: {run.get("gate", result.message)}')
        spent = result.durations
        print(f'  time: {spent.get("total", 0):.0f} s in the job ({spent.get("train", 0):.0f} s training, '
              f'{run.get("steps")} steps, stopped by {run.get("stopped_by")}); peak memory {peak_rss_mb():.0f} MB')
        auto = run.get('routing') or {}
        threshold = auto.get('threshold')
        threshold_text = 'n/a' if threshold is None else f'{threshold:.3f}'
        print(f'  answers this operator in {result.mode} mode; auto mode threshold {threshold_text} '
              f'(aligned path for {auto.get("aligned_share", 0):.0%} of the held-out utterances)')


# -- personalize ---------------------------------------------------------------------------------
def _metric_block(metrics: dict[str, float]) -> dict[str, float | None]:
    keys = ('wer_nearest', 'wer_repeat', 'nll_audio', 'wer_canary')
    return {k: metrics.get(k) for k in keys}


def cmd_personalize(args: argparse.Namespace) -> int:
    """Learn one operator's voice from a folder or a rosbag; keep the adapter only if it is better."""
    import math
    import threading
    import time

    import psutil

    from .memory import peak_rss_mb
    from .personalization.api import (SOURCE_FOLDER, SOURCE_ROSBAG, Limits, PersonalizeRequest, Progress,
                                      TrainingOptions)
    from .personalization.config import PersonalizeConfig
    from .personalization.job import PersonalizationJob
    from .personalization.store import AdapterStore
    from .pipeline import Pipeline
    from .rosbag import is_rosbag
    from .train import bound_heap

    bound_heap()
    born = psutil.Process().create_time()  # the wall clock a user sees starts with the process

    def age() -> float:
        return time.time() - born

    store = AdapterStore(args.store, keep=args.keep)
    data = Path(args.data)
    if not data.exists():
        raise ValueError(f'--data {data} does not exist (a dataset folder, manifest or rosbag2)')
    source = SOURCE_ROSBAG if is_rosbag(data) else SOURCE_FOLDER
    pipeline = Pipeline.from_config(_config(args))
    total = None
    if args.max_total_seconds:
        total = max(1.0, args.max_total_seconds - age())  # start-up and model loading count too
    # PersonalizeConfig is the one home of the defaults: a flag overrides only when given.
    given = {name: getattr(args, name) for name in ('n_general', 'n_canary', 'lr', 'repeat_items')
             if getattr(args, name) is not None}
    config = PersonalizeConfig(max_total_s=total, work_dir=Path(args.work_dir) if args.work_dir else None, **given)
    job = PersonalizationJob(pipeline, store, config, log_fn=lambda _msg: None)
    holdout_ids = list(args.holdout_ids or [])
    request = PersonalizeRequest(
        operator_id=args.operator, source=source, path=str(data), topics=list(args.topics or []),
        limits=Limits(max_train_s=args.max_seconds, max_steps=args.max_steps),
        options=TrainingOptions(holdout=args.holdout, holdout_ids=holdout_ids, objective=args.objective,
                                method=args.method, pseudo_label=args.pseudo_label, gate_margin=args.gate_margin,
                                seed=args.seed))
    shown: list[tuple[str, int, str]] = []

    def show(progress: Progress) -> None:
        """Phase changes and every 50th training step on stderr (the job also repeats reports)."""
        key = (progress.phase, progress.step, progress.message)
        if args.json or (shown and key == shown[-1]):
            return
        if not shown or progress.phase != shown[-1][0] or (progress.step and progress.step % 50 == 0):
            loss = '' if math.isnan(progress.loss) else f' loss {progress.loss:.3f}'
            print(f'[{progress.progress:4.0%}] {progress.phase}{loss} {progress.message}', file=sys.stderr,
                  flush=True)
        shown.append(key)

    cancel = threading.Event()
    box: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: box.setdefault('result', job.run(request, show, cancel)),
                              name='personalize', daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(timeout=0.2)
    except KeyboardInterrupt:  # Ctrl-C cancels cleanly: the previous adapter stays active
        print('cancelling...', file=sys.stderr, flush=True)
        cancel.set()
        worker.join()
    result = box['result']
    active = store.active(args.operator)
    details = job.last_run
    out = {
        'operator': args.operator, 'success': result.success, 'accepted': result.accepted,
        'message': result.message, 'n_train': result.n_train, 'n_holdout': result.n_holdout,
        'holdout_ids': details.get('holdout_ids', []),
        'before': _metric_block(result.metrics_before), 'after': _metric_block(result.metrics_after),
        'cascade': {'wer': result.metrics_before.get('wer_cascade')}, 'mode': result.mode,
        'adapter': result.adapter_path or None, 'adapter_id': result.adapter_id or None,
        'active_adapter': active.adapter_id if active else None, 'plot': details.get('plot'),
        'objective': args.objective or job.config.objective,
        'method': args.method or job.config.method, 'steps': details.get('steps'),
        'stopped_by': details.get('stopped_by'), 'durations': result.durations,
        'lr': details.get('lr'), 'best_dev_wer': details.get('best_dev_wer'), 'dev_ids': details.get('dev_ids'),
        'cache_hits': details.get('cache_hits'), 'routing': details.get('routing'), 'gate': details.get('gate'),
        'seconds': round(age(), 1),
        'peak_rss_mb': peak_rss_mb(),
    }
    if args.json:
        _print_json(out)
    else:
        print(result.message)
        for key in ('before', 'after'):
            print(f'{key:>7}: ' + ', '.join(f'{k} {v}' for k, v in out[key].items()))
        print(f'cascade wer {out["cascade"]["wer"]}; mode {out["mode"]}; {out["seconds"]} s; '
              f'peak RSS {out["peak_rss_mb"]} MB')
    return 0 if result.success else 1


# -- adapters ------------------------------------------------------------------------------------
def cmd_adapters(args: argparse.Namespace) -> int:
    """List, activate or roll back an operator's stored adapter versions."""
    from .personalization.store import AdapterStore

    store = AdapterStore(args.store)
    try:
        if args.action == 'activate':
            if not args.adapter_id:
                raise ValueError('activate needs --adapter-id (see `tinyalign adapters list`)')
            store.activate(args.operator, args.adapter_id)
        elif args.action == 'rollback':
            store.rollback(args.operator)
    except KeyError as exc:
        raise ValueError(exc.args[0] if exc.args else str(exc)) from exc
    active = store.active(args.operator)
    versions = store.versions(args.operator)
    out = {'operator': args.operator, 'action': args.action, 'active': active.adapter_id if active else None,
           'mode': store.mode(args.operator), 'mode_numbers': store.mode_numbers(args.operator),
           'versions': [{'adapter_id': v.adapter_id, 'created': v.created, 'active': v.active, 'path': v.path,
                         'metrics': v.metrics} for v in versions]}
    if args.json:
        _print_json(out)
    else:
        for v in versions:
            mark = '*' if v.active else ' '
            wer = v.metrics.get('wer_nearest')
            print(f'{mark} {v.adapter_id}  {v.created}  wer_nearest {wer if wer is not None else "-"}')
        print(f'active: {out["active"] or "base adapter"}; mode {out["mode"]}')
    return 0


# -- parser --------------------------------------------------------------------------------------
def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--config', type=Path, help='engine YAML config (default: built-in defaults)')
    p.add_argument('--adapter', type=Path, help='adapter folder (default: the shipped base adapter)')
    p.add_argument('--whisper', help='faster-whisper model folder (default: embedded tiny.en)')
    p.add_argument('--llm', help='transformers model folder or .gguf file (default: embedded SmolLM2-135M)')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='tinyalign', description=__doc__.strip().splitlines()[0])
    parser.add_argument('-v', '--verbose', action='store_true')
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('respond', help='answer one audio file')
    p.add_argument('audio', type=Path)
    p.add_argument('--cascade', action='store_true', help='transcribe with Whisper, then ask the LLM')
    _generation_args(p)
    p.add_argument('--instruction')
    p.add_argument('--json', action='store_true')
    _model_args(p)
    p.set_defaults(func=cmd_respond)

    p = sub.add_parser('evaluate', help='WER/NLL of the aligned path and the cascade, or spoken QA accuracy')
    p.add_argument('--data', type=Path, required=True, help='manifest.jsonl or LJ-Speech-style folder')
    p.add_argument('--task', choices=['wer', 'qa'], default='wer',
                   help='wer: transcription readings (default); qa: answer accuracy of text, cascade and '
                        'aligned on a QA manifest (`tinyalign synth --set qa`)')
    p.add_argument('--ids', nargs='+')
    p.add_argument('--split', choices=['dev', 'test'], help='only the items of this split (set manifests)')
    p.add_argument('--limit', type=int)
    p.add_argument('--readings', nargs='+', help='wer task: subset of nearest repeat repeat_text cascade nll')
    p.add_argument('--paths', nargs='+', choices=['text', 'cascade', 'aligned'], help='qa task: paths to ask')
    p.add_argument('--details', action='store_true', help='include per-utterance outputs in the JSON')
    p.add_argument('--json', action='store_true')
    _generation_args(p)
    _model_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser('synth', help='synthesize a speech corpus (espeak-ng, flite, festival voices)')
    source = p.add_mutually_exclusive_group()
    source.add_argument('--text', type=Path, help='one sentence per line')
    source.add_argument('--set', choices=['qa', 'commands'],
                        help='the packaged spoken-question or robot-command set, every sentence in every voice')
    p.add_argument('--split', choices=['dev', 'test'], help='--set: only this split (default: both)')
    p.add_argument('--out', type=Path, required=True)
    p.add_argument('--n', type=int, help='--text: number of utterances (default: every sentence once)')
    p.add_argument('--voices', nargs='+', help='ENGINE:NAME or espeak-ng voices, e.g. en-us+f3 flite:slt '
                                               'festival:ked_diphone')
    p.add_argument('--rates', nargs='+', type=int,
                   help='words per minute (default: 140 165 190 for --text, 160 for --set)')
    p.add_argument('--augment', help='add noise/reverb/tempo...: "default" or AugmentConfig settings as a JSON '
                                     'object or file')
    p.add_argument('--max-words', type=int)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser('align', help='train the base adapter from synthesized speech (LLM-free objective)')
    p.add_argument('--recipe', type=Path, help='recipe YAML (default: the shipped assets/recipes/align.yaml)')
    p.add_argument('--text', type=Path, default=DEFAULT_DATA / 'text' / 'ljspeech_sentences.txt',
                   help='the LJ Speech sentences, one of the corpus sources')
    p.add_argument('--work-dir', type=Path, default=Path('runs/align'), help='corpus and feature cache')
    p.add_argument('--out', type=Path, default=Path('runs/align/base_adapter'))
    p.add_argument('--real', type=Path, help='also score real recordings (LJ-Speech folder) at the end')
    p.add_argument('--init', type=Path, help='continue training from this adapter')
    p.add_argument('--no-cascade', action='store_true', help='skip the Whisper-transcription reference scores')
    p.add_argument('--minutes', type=float, help='training time budget (recipe: 75)')
    p.add_argument('--max-steps', type=int)
    p.add_argument('--max-utterances', type=int, help='train on the first N synthesized utterances')
    p.add_argument('--batch-size', type=int)
    p.add_argument('--lr', type=float)
    p.add_argument('--eval-every', type=int)
    p.add_argument('--objective', choices=['ctc', 'slots', 'ce'])
    p.add_argument('--negatives', type=int, help='ctc: vocabulary rows sampled per step (0 = all)')
    p.add_argument('--projector', choices=['bridgeformer', 'concat_mlp', 'linear'])
    p.add_argument('--reduction', choices=['stack', 'mean', 'adaptive'])
    p.add_argument('--d-model', type=int)
    p.add_argument('--layers', type=int)
    p.add_argument('--heads', type=int)
    p.add_argument('--ff-dim', type=int)
    p.add_argument('--threads', type=int)
    p.add_argument('--seed', type=int)
    p.add_argument('--whisper')
    p.add_argument('--llm')
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=cmd_align)

    p = sub.add_parser('corpus', help='build the assistant text corpus (questions, commands, chat, prose)')
    p.add_argument('--out', type=Path, default=Path('runs/align/corpus/text'))
    p.add_argument('--text', type=Path, default=DEFAULT_DATA / 'text' / 'ljspeech_sentences.txt',
                   help='the LJ Speech sentences (one source among several)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser('bench-train', help='training cost per sample: LLM-free objective vs CE through the LLM')
    p.add_argument('--llm', help='model folder / .gguf, or a random-weight shape: 0.5b, 1b (default: embedded)')
    p.add_argument('--whisper')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--negatives', type=int, help="head rows sampled per CTC step (default: the trainer's; 0 = all)")
    p.add_argument('--threads', type=int)
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=cmd_bench_train)

    p = sub.add_parser('personalize', help="learn one operator's voice; keep the adapter only if it is better")
    p.add_argument('--operator', required=True, help='operator id (letters, digits, _ and -)')
    p.add_argument('--data', type=Path, required=True,
                   help='manifest.jsonl, LJ-Speech-style folder, or rosbag2 (sqlite3/mcap)')
    group = p.add_mutually_exclusive_group()
    group.add_argument('--holdout', type=int, help='held-out utterances (default: a quarter, 1 to 8)')
    group.add_argument('--holdout-ids', nargs='+', help='ids of the held-out utterances')
    p.add_argument('--topics', nargs='+', help='rosbag: audio topic [transcript topic]')
    p.add_argument('--store', type=Path, help='adapter store (default: $XDG_DATA_HOME/tinyalign_ros/operators)')
    p.add_argument('--work-dir', type=Path, help='caches and run records (default: <store>/.work)')
    p.add_argument('--keep', type=int, default=5, help='versions kept per operator')
    p.add_argument('--max-seconds', type=float, help='training budget in seconds (default 60)')
    p.add_argument('--max-total-seconds', type=float, default=110.0,
                   help='wall-clock budget of the whole command, model loading included; training gets what '
                        'is left after preparing and scoring (default 110; 0 = none)')
    p.add_argument('--max-steps', type=int, help='training step budget')
    p.add_argument('--objective', choices=['ctc', 'ce'], default='', help='ctc (default) or the conventional ce')
    p.add_argument('--method', choices=['projector', 'lora', 'input'], default='',
                   help='train all projector weights (default), LoRA on them, or the input layers only')
    p.add_argument('--pseudo-label', action='store_true', help='label untranscribed speech with the cascade ASR')
    p.add_argument('--gate-margin', type=float, help='relative improvement required (default 0.05)')
    p.add_argument('--lr', type=float, help='learning rate (default: PersonalizeConfig.lr, 1e-3)')
    p.add_argument('--n-general', type=int, help='general utterances mixed in (default 32)')
    p.add_argument('--n-canary', type=int, help='general canary utterances scored (default 12)')
    p.add_argument('--repeat-items', type=int, help='held-out utterances scored with LLM repeat (default 8)')
    p.add_argument('--seed', type=int)
    p.add_argument('--json', action='store_true')
    _model_args(p)
    p.set_defaults(func=cmd_personalize)

    p = sub.add_parser('adapters', help="list, activate or roll back an operator's adapters")
    p.add_argument('action', choices=['list', 'activate', 'rollback'])
    p.add_argument('--operator', required=True)
    p.add_argument('--adapter-id', help='the version to activate')
    p.add_argument('--store', type=Path, help='adapter store (default: $XDG_DATA_HOME/tinyalign_ros/operators)')
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=cmd_adapters)

    p = sub.add_parser('demo', help='the main job: answers real speech in both modes')
    p.add_argument('--data', type=Path, default=DEFAULT_DATA, help='folder holding ljspeech/')
    p.add_argument('--voice', default=DEMO_VOICE, help=f'voice asking the questions (default {DEMO_VOICE})')
    _generation_args(p)
    _model_args(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format='%(levelname)s %(name)s: %(message)s')
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as exc:
        if args.verbose:
            raise
        print(f'tinyalign {args.command}: error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
