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
The GPU check: one prepared run of what only a CUDA machine can show, results in docs/benchmarks/gpu.json.

Run it from the repository root with the environment ``make setup`` builds::

    .venv/bin/python benchmarks/gpu_check.py

It runs the tests marked ``cuda`` (training on the GPU under float32, bfloat16 and float16 autocast),
then a short alignment (``tinyalign align``) on a small synthesized corpus with the embedded models:
on one GPU as a plain process, on several under ``torchrun --standalone`` with one process per GPU.
Without a GPU it prints why and exits 0 having written nothing, so it is safe to call anywhere.
GPU time is scarce, so every step has a time limit and the whole check fits in about ten minutes.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from tinyalign_ros.durable import write_json

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / 'docs' / 'benchmarks' / 'gpu.json'

# A small corpus in the layout `tinyalign corpus` writes, so the check needs no corpus sources
# (WordNet, fortunes, LJ Speech): a few sentences per source, each synthesized in several voices.
SENTENCES = {
    'questions': ['Where is the charging station?', 'How many cups are on the table?', 'What time is it now?',
                  'Can you see the red door?', 'Who left the box in the hall?', 'Is the kitchen light on?'],
    'commands': ['Turn left at the red door.', 'Bring me the small blue cup.', 'Stop before the stairs.',
                 'Open the gripper slowly.', 'Move forward two steps.', 'Go back to the charging station.'],
    'wordnet': ['The robot waits near the stairs.', 'A cat slept on the warm mat.', 'The river runs to the sea.'],
    'fortunes': ['Every cloud has a silver lining.', 'Slow and steady wins the race.', 'Time waits for no one.'],
    'lj': ['The prisoner was taken away.', 'The report was read aloud.', 'He walked along the old road.'],
    'chat': ['Hello there.', 'Good night.', 'Thank you very much.'],
}
HELDOUT = {
    'questions': ['What colour is the sky at noon?', 'Where did you put my keys?'],
    'commands': ['Lift the green box.', 'Follow me to the door.'],
    'wordnet': ['The bird sang in the tall tree.'], 'fortunes': ['A friend in need is a friend indeed.'],
    'lj': ['The letter arrived on Monday.'], 'chat': ['Good morning.'],
}
RECIPE = """recipe:
  mix: {questions: 24, commands: 24, wordnet: 8, fortunes: 8, lj: 8, chat: 8}
  train_voices: [en-us, en-us+f3, en+m3, flite:slt, flite:awb]
  train_rates: [150, 180]
  train_pitches: [50]
  test_rates: [160]
  test_pitches: [50]
  n_test: 8
  n_eval: 8
train:
  objective: ctc
  lr: 0.0015
  batch_size: 16
  max_steps: 300
  max_time_s: 240
  eval_every: 100
  warmup_steps: 30
projector:
  type: concat_mlp
  reduction: stack
  reduce_factor: 4
  top_k: 2
"""


def cuda_reason() -> str | None:
    """Return why there is no usable CUDA GPU here, or None when there is one."""
    try:
        import torch
    except ImportError as exc:
        return f'torch is not importable ({exc}); run `make setup` first'
    if not torch.cuda.is_available():
        build = torch.version.cuda or 'none (a CPU-only build)'
        return f'no CUDA GPU visible to torch {torch.__version__} (CUDA build: {build})'
    return None


def run(cmd: list[str], timeout_s: float, env: dict[str, str]) -> dict[str, Any]:
    """Run one step; keep its exit status, duration and the tail of what it printed."""
    print('$ ' + ' '.join(cmd), flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
        rc, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = 124
        output = (exc.stdout or b'').decode() if isinstance(exc.stdout, bytes) else (exc.stdout or '')
        output += f'\n(timed out after {timeout_s:.0f} s)'
    seconds = round(time.perf_counter() - start, 1)
    print(output[-3000:], flush=True)
    return {'command': ' '.join(cmd), 'rc': rc, 'seconds': seconds, 'tail': output[-2000:]}


def write_corpus(work: Path) -> None:
    """Write the small text corpus where `tinyalign align` looks for a built one."""
    folder = work / 'corpus' / 'text'
    folder.mkdir(parents=True, exist_ok=True)
    for source, sentences in SENTENCES.items():
        (folder / f'{source}.train.txt').write_text('\n'.join(sentences) + '\n', encoding='utf-8')
        (folder / f'{source}.heldout.txt').write_text('\n'.join(HELDOUT[source]) + '\n', encoding='utf-8')
    (folder / 'summary.json').write_text(json.dumps({'sources': {}, 'note': 'gpu_check corpus'}), encoding='utf-8')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--out', type=Path, default=OUT, help=f'JSON results (default {OUT.relative_to(ROOT)})')
    parser.add_argument('--dtype', default='bfloat16', choices=['float32', 'float16', 'bfloat16'],
                        help='autocast precision of the alignment run (default bfloat16)')
    parser.add_argument('--keep', type=Path, help='keep the alignment work folder here (default: a temporary one)')
    args = parser.parse_args(argv)

    reason = cuda_reason()
    if reason is not None:
        print(f'gpu_check: skipped, nothing written: {reason}')
        return 0

    import torch

    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT / 'src'), *filter(None, [env.get('PYTHONPATH')])])
    n_gpu = torch.cuda.device_count()
    results: dict[str, Any] = {
        'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'device': torch.cuda.get_device_name(0), 'n_gpu': n_gpu, 'torch': torch.__version__,
        'cuda': torch.version.cuda, 'python': sys.version.split()[0],
    }
    results['cuda_tests'] = run([sys.executable, '-m', 'pytest', '-q', '-rs', '-m', 'cuda', '-p', 'no:cacheprovider',
                                 'test/test_distributed.py'], 240, env)

    work = args.keep or Path(tempfile.mkdtemp(prefix='gpu_check-'))
    write_corpus(work)
    recipe = work / 'recipe.yaml'
    recipe.write_text(RECIPE, encoding='utf-8')
    align_args = ['-m', 'tinyalign_ros.cli', 'align', '--recipe', str(recipe), '--work-dir', str(work),
                  '--out', str(work / 'adapter'), '--device', 'cuda', '--dtype', args.dtype, '--no-cascade', '--json']
    if n_gpu > 1:
        launcher = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(n_gpu)]
    else:
        launcher = [sys.executable]
    step = run(launcher + align_args, 420, env)
    meta_file = work / 'adapter' / 'adapter.json'
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text(encoding='utf-8'))
        training = meta.get('training', {})
        keys = ('steps', 'stopped_by', 'best_val_wer', 'world_size', 'per_rank_batch', 'seconds', 'n_train', 'n_val')
        step['adapter'] = {key: training.get(key) for key in keys}
        step['adapter']['device'] = training.get('config', {}).get('device')
        step['adapter']['dtype'] = training.get('config', {}).get('dtype')
        step['metrics'] = meta.get('metrics')
        step['seconds_by_phase'] = meta.get('seconds')
    results['align'] = step
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)

    write_json(args.out, results)
    print(f'gpu_check: wrote {args.out}')
    failed = [name for name in ('cuda_tests', 'align') if results[name]['rc'] != 0]
    if failed:
        print(f'gpu_check: failed steps: {", ".join(failed)}')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
