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

"""`tinyalign personalize` and `tinyalign adapters`: learn one operator's voice, manage their stored adapters."""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

from .common import config_from_args, print_json


def _metric_block(metrics: dict[str, float]) -> dict[str, float | None]:
    keys = ('wer_nearest', 'wer_repeat', 'nll_audio', 'wer_canary')
    return {k: metrics.get(k) for k in keys}


def cmd_personalize(args: argparse.Namespace) -> int:
    """Learn one operator's voice from a folder or a rosbag; keep the adapter only if it is better."""
    import math
    import threading
    import time

    import psutil

    from ..memory import bound_heap, peak_rss_mb
    from ..personalization.api import (SOURCE_FOLDER, SOURCE_ROSBAG, Limits, PersonalizeRequest, Progress,
                                       run_in_thread, TrainingOptions)
    from ..personalization.config import PersonalizeConfig
    from ..personalization.job import PersonalizationJob
    from ..personalization.store import AdapterStore
    from ..pipeline import Pipeline
    from ..rosbag import is_rosbag

    bound_heap()
    born = psutil.Process().create_time()  # the wall clock a user sees starts with the process

    def age() -> float:
        return time.time() - born

    store = AdapterStore(args.store, keep=args.keep)
    data = Path(args.data)
    if not data.exists():
        raise ValueError(f'--data {data} does not exist (a dataset folder, manifest or rosbag2)')
    source = SOURCE_ROSBAG if is_rosbag(data) else SOURCE_FOLDER
    pipeline = Pipeline.from_config(config_from_args(args))
    total = None
    if args.max_total_seconds:
        total = max(1.0, args.max_total_seconds - age())  # start-up and model loading count too
    # PersonalizeConfig is the one home of the defaults: a flag overrides only when given.
    given = {name: getattr(args, name) for name in ('n_general', 'n_canary', 'lr', 'repeat_items', 'cascade_items')
             if getattr(args, name) is not None}
    if args.train_dtype:
        given['dtype'] = args.train_dtype
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

    result = run_in_thread(job, request, show, threading.Event())  # Ctrl-C cancels cleanly
    active = store.active(args.operator)
    details = job.last_run
    out = {
        'operator': args.operator, 'success': result.success, 'accepted': result.accepted,
        'message': result.message, 'n_train': result.n_train, 'n_holdout': result.n_holdout,
        'holdout_ids': details.get('holdout_ids', []),
        'before': _metric_block(result.metrics_before), 'after': _metric_block(result.metrics_after),
        'cascade': {'wer': result.metrics_before.get('wer_cascade'),
                    'n': details.get('mode_numbers', {}).get('n_compared'),
                    'aligned_wer': details.get('mode_numbers', {}).get('aligned')}, 'mode': result.mode,
        'adapter': result.adapter_path or None, 'adapter_id': result.adapter_id or None,
        'active_adapter': active.adapter_id if active else None, 'plot': details.get('plot'),
        'objective': args.objective or job.config.objective,
        'method': args.method or job.config.method, 'train_dtype': job.config.dtype, 'steps': details.get('steps'),
        'stopped_by': details.get('stopped_by'), 'durations': result.durations,
        'lr': details.get('lr'), 'best_dev_wer': details.get('best_dev_wer'), 'dev_ids': details.get('dev_ids'),
        'cache_hits': details.get('cache_hits'), 'routing': details.get('routing'), 'gate': details.get('gate'),
        'seconds': round(age(), 1),
        'peak_rss_mb': peak_rss_mb(),
    }
    if args.json:
        print_json(out)
    else:
        print(result.message)
        for key in ('before', 'after'):
            print(f'{key:>7}: ' + ', '.join(f'{k} {v}' for k, v in out[key].items()))
        print(f'cascade wer {out["cascade"]["wer"]}; mode {out["mode"]}; {out["seconds"]} s; '
              f'peak RSS {out["peak_rss_mb"]} MB')
    return 0 if result.success else 1


def cmd_adapters(args: argparse.Namespace) -> int:
    """List, activate or roll back an operator's stored adapter versions."""
    from ..personalization.store import AdapterStore

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
        print_json(out)
    else:
        for v in versions:
            mark = '*' if v.active else ' '
            wer = v.metrics.get('wer_nearest')
            print(f'{mark} {v.adapter_id}  {v.created}  wer_nearest {wer if wer is not None else "-"}')
        print(f'active: {out["active"] or "base adapter"}; mode {out["mode"]}')
    return 0
