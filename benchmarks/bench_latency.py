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
The latency table: end of utterance to first token and to the whole answer, aligned vs cascade.

What a robot's user feels is the wait after they stop speaking. This benchmark loads the assistant
once and answers spoken questions of 1, 3, 5 and 10 s in both modes, interleaved (each repetition
walks the lengths and alternates which mode goes first), so both modes see the same machine load.
The clock starts when the complete utterance is handed to `Pipeline.respond` (the segmenter's
end-of-speech silence, 0.6 s by default, comes before that and is the same for both modes).

The utterances are questions spoken by espeak-ng, with the speaking rate fitted so the speech
lasts the target length, then padded or trimmed at the edges to exactly that length.

    .venv/bin/python benchmarks/bench_latency.py --repeats 5 --json-out docs/benchmarks/latency.json
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
import sys
import time
from typing import Any, Sequence

import numpy as np
from tinyalign_ros.durable import write_json

SAMPLE_RATE = 16000
LENGTHS_S = (1.0, 3.0, 5.0, 10.0)
MODES = ('aligned', 'cascade')
QUESTIONS = {
    1.0: 'What time is it?',
    3.0: 'How far is it from here to the charging station?',
    5.0: 'Can you tell me what the weather will be like in the garden this afternoon?',
    10.0: ('Please go to the kitchen, find the red cup on the table next to the window, bring it back to me, '
           'and then tell me how many cups are left.'),
}
VOICE = 'en-us'
BASE_RATE = 160  # espeak words per minute


# -- pure helpers (unit-tested) -------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile, q in [0, 100], interpolating linearly between order statistics like numpy."""
    if not values:
        raise ValueError('percentile of no values')
    if not 0.0 <= q <= 100.0:
        raise ValueError(f'q must be in [0, 100], got {q}')
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def fit_length(audio: np.ndarray, target_s: float, threshold: float = 0.01) -> np.ndarray:
    """
    Return ``audio`` at exactly ``target_s``: edge silence trimmed, then padded evenly or cut at the end.

    Speech quieter than ``threshold`` (absolute amplitude) at either edge counts as silence.
    """
    n_target = int(round(target_s * SAMPLE_RATE))
    loud = np.flatnonzero(np.abs(audio) > threshold)
    speech = audio[loud[0]: loud[-1] + 1] if loud.size else audio[:0]
    if speech.size >= n_target:
        return speech[:n_target].astype(np.float32)
    pad = n_target - speech.size
    return np.pad(speech, (pad // 2, pad - pad // 2)).astype(np.float32)


def speech_seconds(audio: np.ndarray, threshold: float = 0.01) -> float:
    """Return the seconds from the first to the last sample louder than ``threshold``."""
    loud = np.flatnonzero(np.abs(audio) > threshold)
    return 0.0 if not loud.size else float(loud[-1] - loud[0] + 1) / SAMPLE_RATE


def next_rate(rate: int, speech_s: float, target_s: float, low: int = 80, high: int = 450) -> int:
    """Return the espeak rate (words per minute) that should make ``speech_s`` last ``target_s``."""
    if speech_s <= 0:
        return rate
    return int(min(high, max(low, round(rate * speech_s / target_s))))


def summarize(samples: dict[tuple[float, str], list[dict[str, float]]]) -> list[dict[str, Any]]:
    """Reduce the samples to p50/p95 of first token and total (and the encode p50) per (length, mode)."""
    rows = []
    for (length, mode), runs in sorted(samples.items()):
        first = [r['first_token'] for r in runs]
        total = [r['total'] for r in runs]
        rows.append({
            'audio_s': length, 'mode': mode, 'n': len(runs),
            'first_token_p50_ms': round(percentile(first, 50), 1),
            'first_token_p95_ms': round(percentile(first, 95), 1),
            'total_p50_ms': round(percentile(total, 50), 1), 'total_p95_ms': round(percentile(total, 95), 1),
            'encode_p50_ms': round(percentile([r['encode'] for r in runs], 50), 1),
            'answer_words_mean': round(sum(r.get('answer_words', 0) for r in runs) / len(runs), 1),
        })
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Format the latency table as markdown: one line per utterance length, both modes side by side."""
    by_key = {(r['audio_s'], r['mode']): r for r in rows}
    lengths = sorted({r['audio_s'] for r in rows})
    lines = ['| utterance | aligned first token p50 / p95 | cascade first token p50 / p95 | '
             'aligned total p50 / p95 | cascade total p50 / p95 | n |',
             '| ---: | ---: | ---: | ---: | ---: | ---: |']
    for length in lengths:
        cells = []
        for metric in ('first_token', 'total'):
            for mode in MODES:
                r = by_key.get((length, mode))
                cells.append('-' if r is None else f'{r[metric + "_p50_ms"]:.0f} / {r[metric + "_p95_ms"]:.0f} ms')
        n = min(by_key[(length, m)]['n'] for m in MODES if (length, m) in by_key)
        lines.append(f'| {length:g} s | ' + ' | '.join(cells) + f' | {n} |')
    return '\n'.join(lines)


# -- measuring ------------------------------------------------------------------------------------

def make_utterance(length_s: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Speak the question for ``length_s`` with the rate fitted to the length; return audio and how."""
    from tinyalign_ros.synth import synthesize

    text, rate = QUESTIONS[length_s], BASE_RATE
    audio = synthesize(text, voice=VOICE, rate=rate)
    for _ in range(3):
        spoken = speech_seconds(audio)
        if abs(spoken - length_s) <= 0.05 * length_s:
            break
        rate = next_rate(rate, spoken, length_s)
        audio = synthesize(text, voice=VOICE, rate=rate)
    info = {'text': text, 'voice': VOICE, 'rate_wpm': rate, 'speech_s': round(speech_seconds(audio), 3)}
    return fit_length(audio, length_s), info


def run(repeats: int, config_path: Path | None, threads: int | None) -> dict[str, Any]:
    from tinyalign_ros.config import load_config
    from tinyalign_ros.pipeline import Pipeline

    overrides: dict[str, Any] = {}
    if threads:
        overrides['llm.threads'] = threads
    config = load_config(config_path, overrides)
    start = time.perf_counter()
    pipeline = Pipeline.from_config(config)
    load_s = time.perf_counter() - start
    utterances = {length: make_utterance(length) for length in LENGTHS_S}
    for mode in MODES:  # warm-up: first calls allocate and fill caches; not counted
        pipeline.respond(utterances[LENGTHS_S[0]][0], mode=mode)
    samples: dict[tuple[float, str], list[dict[str, float]]] = {}
    answers: dict[str, str] = {}
    for rep in range(repeats):
        lengths = LENGTHS_S if rep % 2 == 0 else LENGTHS_S[::-1]
        for i, length in enumerate(lengths):
            modes = MODES if (rep + i) % 2 == 0 else MODES[::-1]
            for mode in modes:
                response = pipeline.respond(utterances[length][0], mode=mode)
                sample = dict(response.latency_ms)
                sample['answer_words'] = len(response.text.split())
                samples.setdefault((length, mode), []).append(sample)
                answers[f'{length:g}s/{mode}'] = response.text
                print(f'rep {rep} {length:g} s {mode:>7}: first token {sample["first_token"]:.0f} ms, '
                      f'total {sample["total"]:.0f} ms, {sample["answer_words"]} words', flush=True)
    import torch

    return {
        'machine': f'{os.cpu_count()} CPU cores, x86_64, no GPU', 'device': pipeline.encoder.device,
        'torch_threads': torch.get_num_threads(), 'repeats': repeats, 'load_s': round(load_s, 1),
        'adapter': pipeline.adapter_id, 'whisper_compute_type': pipeline.encoder.compute_type,
        'fusion': {'weight': pipeline.fusion.weight, 'candidates': pipeline.fusion.candidates},
        'measured_at': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        'utterances': {f'{k:g}': v[1] for k, v in utterances.items()},
        'rows': summarize(samples), 'last_answers': answers,
        'raw_ms': {f'{k[0]:g}s/{k[1]}': v for k, v in sorted(samples.items())},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--repeats', type=int, default=5, help='answers per length and mode (default 5)')
    parser.add_argument('--config', type=Path, help='engine YAML config (default: built-in defaults)')
    parser.add_argument('--threads', type=int, help='torch threads for the LLM (default: torch decides)')
    parser.add_argument('--json-out', type=Path)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error('--repeats must be >= 1')
    result = run(args.repeats, args.config, args.threads)
    table = markdown_table(result['rows'])
    result['table_markdown'] = table
    print(table, flush=True)
    if args.json_out:
        write_json(args.json_out, result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
