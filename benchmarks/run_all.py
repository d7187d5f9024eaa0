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
Regenerate every benchmark result in docs/benchmarks (JSON) and its plot (PNG) in one command.

    make bench            # or: .venv/bin/python benchmarks/run_all.py [--skip-large] [--only train_cost]
    .venv/bin/python benchmarks/run_all.py --only memory     # peak RSS and the Jetson memory table
    .venv/bin/python benchmarks/run_all.py --only latency    # first token / total, aligned vs cascade
    .venv/bin/python benchmarks/run_all.py --only whisper_window   # auto's Whisper: fitted vs 30 s window

The GPU table (docs/benchmarks/train_cost_gpu.json) comes from a GPU machine, where neither Whisper
nor espeak-ng is needed: save the inputs here with `python -m tinyalign_ros.training.bench --save-inputs F`,
then run `python -m tinyalign_ros.training.bench --inputs F --shape 135m 0.5b 1b --device cuda [--autocast]`
there and collect its JSON lines into that file; this script only plots it.

Each benchmark measures its two contenders side by side in one process and reports ratios, so
the numbers stay meaningful on a noisy shared machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

from tinyalign_ros.durable import write_json

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / 'docs' / 'benchmarks'
PY = sys.executable


def run_encoder(data: Path) -> None:
    subprocess.run([PY, str(ROOT / 'benchmarks' / 'bench_encoder.py'), '--data', str(data / 'ljspeech'),
                    '--json-out', str(OUT / 'encoder.json')], check=True)


def run_train_cost(shapes: list[str]) -> None:
    """One process per LLM so each peak RSS is its own."""
    results = []
    for shape in shapes:
        cmd = [PY, '-m', 'tinyalign_ros.cli', 'bench-train', '--json']
        small = shape == 'embedded'
        batch = ['--batch-size', '8' if small else '4', '--repeats', '3' if small else '2']
        if shape != 'embedded':
            cmd += ['--llm', shape]
        out = subprocess.run(cmd + batch, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out))
        print(json.dumps(results[-1]), flush=True)
    write_json(OUT / 'train_cost.json', results)


def run_memory(data: Path) -> None:
    subprocess.run([PY, str(ROOT / 'benchmarks' / 'bench_memory.py'), '--data', str(data / 'ljspeech'),
                    '--json-out', str(OUT / 'memory.json')], check=True)


def run_latency(repeats: int) -> None:
    subprocess.run([PY, str(ROOT / 'benchmarks' / 'bench_latency.py'), '--repeats', str(repeats),
                    '--json-out', str(OUT / 'latency.json')], check=True)
    # The same with the LLM in float32 (the default before bfloat16), right after: the precision's cost.
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / 'float32.yaml'
        config.write_text('llm:\n  dtype: float32\n')
        subprocess.run([PY, str(ROOT / 'benchmarks' / 'bench_latency.py'), '--repeats', str(repeats),
                        '--config', str(config), '--json-out', str(OUT / 'latency_float32.json')], check=True)


def run_routing() -> None:
    subprocess.run([PY, str(ROOT / 'benchmarks' / 'bench_routing.py'), '--out', str(OUT / 'routing.json')], check=True)


def run_whisper_window(data: Path) -> None:
    subprocess.run([PY, str(ROOT / 'benchmarks' / 'bench_whisper_window.py'), '--data', str(data),
                    '--json-out', str(OUT / 'whisper_window.json')], check=True)


def plot_whisper_window(plt: Any) -> None:
    """Word error rate and mean time of Whisper's reading from the 30 s window and from the fitted one, per set."""
    path = OUT / 'whisper_window.json'
    if not path.is_file():
        return
    rows = json.loads(path.read_text())['rows']
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    xs = range(len(rows))
    labels = ['\n'.join(textwrap.wrap(r['set'].split(',')[0], 16)) for r in rows]
    for ax, key, title in zip(axes, ('wer', 'mean_ms'), ('word error rate', 'mean time per utterance (ms)')):
        ax.bar([x - 0.2 for x in xs], [r[f'{key}_30s_window'] for r in rows], width=0.4, label='30 s window (cascade)')
        ax.bar([x + 0.2 for x in xs], [r[f'{key}_fitted_window'] for r in rows], width=0.4,
               label='fitted window (auto)')
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / 'whisper_window.png', dpi=120)
    plt.close(fig)


def plot_routing(plt: Any) -> None:
    """Accuracy against mean latency of aligned, cascade and auto, on questions and on commands."""
    path = OUT / 'routing.json'
    if not path.is_file():
        return
    summary = json.loads(path.read_text())['summary']
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, task in zip(axes, ('qa', 'command')):
        for mode, marker in (('aligned', 'o'), ('cascade', 's'), ('auto', '^')):
            row = summary[task][mode]
            ax.plot(row['mean_latency_ms'], row['accuracy'], marker, markersize=9, label=mode)
        ax.set_xlabel('mean latency per utterance (ms)')
        ax.set_ylabel('accuracy')
        ax.set_title(f'{task} (n={summary[task]["n"]})')
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / 'routing.png', dpi=120)
    plt.close(fig)


def plot_memory(plt: Any) -> None:
    """Peak RSS per `respond` variant against the 1 GB budget."""
    path = OUT / 'memory.json'
    if not path.is_file():
        return
    data = json.loads(path.read_text())
    rows = data['respond']
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    labels = [r['name'] for r in rows]
    configs = list(dict.fromkeys(r.get('config', r['name']) for r in rows))
    colors = [f'C{configs.index(r.get("config", r["name"])) % 10}' for r in rows]
    bars = ax.bar(labels, [r['peak_rss_mb'] for r in rows], color=colors)
    for bar, row in zip(bars, rows):
        ratio = row.get('ratio_to_baseline')
        note = f'{row["peak_rss_mb"]:.0f}' + (f'\n{ratio:.2f}x' if ratio is not None else '')
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), note, ha='center', va='bottom', fontsize=7)
    ax.tick_params(axis='x', labelsize=7)
    ax.axhline(data.get('budget_mb', 1024), color='red', linestyle='--', label='1 GB budget')
    ax.set_ylabel('peak RSS (MiB, median of fresh processes)')
    ax.set_title('tinyalign respond, embedded models, CPU (ratio: vs --dtype float32)', fontsize=9)
    ax.legend(loc='lower right')
    fig.tight_layout()
    fig.savefig(OUT / 'memory.png', dpi=120)
    plt.close(fig)


def plot_latency(plt: Any) -> None:
    """p50 (points) and p95 (bar tops) of first token and total, aligned vs cascade, per utterance length."""
    path = OUT / 'latency.json'
    if not path.is_file():
        return
    rows = json.loads(path.read_text())['rows']
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=False)
    for ax, metric, title in zip(axes, ('first_token', 'total'), ('end of utterance -> first token',
                                                                  'end of utterance -> whole answer')):
        for mode, marker in (('aligned', 'o-'), ('cascade', 's-')):
            sel = sorted((r for r in rows if r['mode'] == mode), key=lambda r: r['audio_s'])
            xs = [r['audio_s'] for r in sel]
            p50 = [r[metric + '_p50_ms'] for r in sel]
            p95 = [r[metric + '_p95_ms'] for r in sel]
            ax.errorbar(xs, p50, yerr=[[0] * len(sel), [b - a for a, b in zip(p50, p95)]], fmt=marker,
                        capsize=3, label=f'{mode} p50 (bar: p95)')
        ax.set_xlabel('utterance length (s)')
        ax.set_ylabel('ms')
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / 'latency.png', dpi=120)
    plt.close(fig)


def plot() -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    enc = OUT / 'encoder.json'
    if enc.is_file():
        data = json.loads(enc.read_text())
        rows = data['lengths']
        fig, ax = plt.subplots(figsize=(6, 3.5))
        xs = [r['audio_s'] for r in rows]
        ax.plot(xs, [r['fitted_s'] * 1000 for r in rows], 'o-', label='fitted window')
        ax.plot(xs, [r['full30_s'] * 1000 for r in rows], 's-', label='30 s window')
        ax.set_xlabel('utterance length (s)')
        ax.set_ylabel('encode time (ms, median)')
        ax.set_title('Whisper tiny.en encoder: fitted vs 30 s window')
        ax.legend()
        fig.tight_layout()
        fig.savefig(OUT / 'encoder.png', dpi=120)
        plt.close(fig)
    cost = OUT / 'train_cost.json'
    if cost.is_file():
        rows = json.loads(cost.read_text())
        fig, ax = plt.subplots(figsize=(6, 3.5))
        labels = [f'{r["llm"]}\n{r["llm_params"] / 1e6:.0f}M' for r in rows]
        ax.bar(labels, [r['ratio'] for r in rows])
        ax.axhline(50, color='red', linestyle='--', label='50x target')
        ax.set_ylabel('CE-through-LLM / CTC time per sample')
        ax.set_title('Training cost ratio (same projector, features, batch)')
        ax.legend()
        fig.tight_layout()
        fig.savefig(OUT / 'train_cost.png', dpi=120)
        plt.close(fig)
    gpu = OUT / 'train_cost_gpu.json'
    if gpu.is_file():
        rows = json.loads(gpu.read_text())
        fig, ax = plt.subplots(figsize=(7, 3.5))
        labels = [f'{r["llm"]} b{r["batch_size"]}{" bf16" if r["autocast_bf16"] else ""}' for r in rows]
        ax.bar(labels, [r['ratio'] for r in rows])
        ax.axhline(50, color='red', linestyle='--', label='50x target')
        ax.set_ylabel('CE / CTC time per sample')
        ax.set_title(f'Training cost ratio on {rows[0]["device"]} (random-weight LLM shapes)')
        ax.tick_params(axis='x', labelsize=7)
        ax.legend()
        fig.tight_layout()
        fig.savefig(OUT / 'train_cost_gpu.png', dpi=120)
        plt.close(fig)
    plot_memory(plt)
    plot_latency(plt)
    plot_routing(plt)
    plot_whisper_window(plt)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--data', type=Path, default=ROOT.parent / 'shared' / 'data')
    parser.add_argument('--skip-large', action='store_true', help='only the embedded LLM in the cost benchmark')
    parser.add_argument('--plots-only', action='store_true')
    parser.add_argument('--only', choices=['encoder', 'train_cost', 'head', 'memory', 'latency', 'routing',
                                           'whisper_window'],
                        help='run one benchmark')
    parser.add_argument('--latency-repeats', type=int, default=5, help='answers per length and mode')
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.plots_only:
        if args.only in (None, 'encoder'):
            run_encoder(args.data)
        if args.only in (None, 'train_cost'):
            run_train_cost(['embedded'] if args.skip_large else ['embedded', '0.5b', '1b'])
        if args.only in (None, 'head'):
            subprocess.run([PY, str(ROOT / 'benchmarks' / 'bench_head.py'), '--json-out', str(OUT / 'head.json')],
                           check=True)
        if args.only in (None, 'memory'):
            run_memory(args.data)
        if args.only in (None, 'latency'):
            run_latency(args.latency_repeats)
        if args.only in (None, 'routing'):
            run_routing()
        if args.only in (None, 'whisper_window'):
            run_whisper_window(args.data)
    plot()
    return 0


if __name__ == '__main__':
    sys.exit(main())
