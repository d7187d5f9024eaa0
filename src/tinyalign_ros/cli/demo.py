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
`tinyalign demo`, what `make demo` runs: the assistant at work, shown in a few lines.

It answers spoken questions and real recordings in both modes, then personalizes to the real reader.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import config_from_args


# Five spoken questions of the QA set's dev split, chosen by topic (a capital, a count, a colour, an
# animal, a day) before any answer was seen, spoken by flite's slt voice (built from a real speaker's
# recordings, unlike espeak-ng's formant voices) unless --voice names another.
DEMO_QUESTION_IDS = ('qa001', 'qa013', 'qa043', 'qa076', 'qa061')
DEMO_VOICE = 'flite:slt'
DEMO_RECORDINGS = ('LJ001-0009', 'LJ001-0027', 'LJ001-0030')


def cmd_demo(args: argparse.Namespace) -> int:
    """Show the assistant answering spoken questions and real recordings, in both modes."""
    from ..audio import load_audio
    from ..data import load_dataset, select
    from ..evaluate import evaluate
    from ..pipeline import Pipeline
    from ..qa import contains_answer, load_set
    from ..synth import synthesize

    pipeline = Pipeline.from_config(config_from_args(args))
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
            heard = response.transcript if mode == 'cascade' else response.heard
            heard = f'  (heard: "{heard}")' if heard is not None else ''
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
            heard = response.transcript if mode == 'cascade' else response.heard
            heard = f' (heard: "{heard}")' if heard else ''
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

    from ..memory import peak_rss_mb
    from ..personalization.api import SOURCE_FOLDER, PersonalizeRequest, TrainingOptions
    from ..personalization.config import PersonalizeConfig
    from ..personalization.job import PersonalizationJob
    from ..personalization.store import AdapterStore

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
