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
Fitted-window vs 30 s-window Whisper encoding time, per utterance length.

The question this answers: how much does encoding only the smallest window that holds the utterance
(WindowPolicy 5/10/20/30 s) save over Whisper's usual 30 s padding, on this machine? Both encoders
run in the same process on the same audio, interleaved (alternating which goes first) so that load
from other processes hits both alike; each number is the median of ``--repeats``. A second section
times batched vs one-by-one encoding of several utterances sharing a window.

Usage: PYTHONPATH=src python benchmarks/bench_encoder.py [--data DIR] [--repeats N] [--json-out PATH]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import platform
import statistics
import sys
import time

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'src'))

from tinyalign_ros.durable import write_json  # noqa: E402
from tinyalign_ros.encoder import SAMPLE_RATE, WhisperEncoder, WindowPolicy  # noqa: E402

DEFAULT_DATA = Path(os.environ.get('TINYALIGN_SHARED_DATA', ROOT.parent / 'shared' / 'data')) / 'ljspeech'
DEFAULT_LENGTHS = (1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0)
FALLBACK_SENTENCES = (
    'Robot, please bring me the red cup from the kitchen table.',
    'What time is it, and how far is the charging station from here?',
    'Turn left at the door, then stop and wait for me by the stairs.',
    'The quick brown fox jumps over the lazy dog.',
)


def load_speech(data: Path | None) -> tuple[np.ndarray, str]:
    """One long stretch of speech to cut utterances from: real recordings if present, else espeak."""
    if data is not None and (data / 'wavs').is_dir():
        import soundfile as sf
        import soxr

        pieces = []
        for wav in sorted((data / 'wavs').glob('*.wav')):
            samples, sr = sf.read(wav, dtype='float32', always_2d=True)
            pieces.append(soxr.resample(samples.mean(axis=1), sr, SAMPLE_RATE).astype(np.float32))
        if pieces:
            return np.concatenate(pieces), f'real recordings: {len(pieces)} files from {data}'
    from tinyalign_ros.synth import synthesize

    speech = np.concatenate([synthesize(s) for s in FALLBACK_SENTENCES * 4])
    return speech, 'synthesized with espeak-ng (no --data recordings found)'


def time_once(fn, audio: np.ndarray) -> float:
    start = time.perf_counter()
    fn(audio)
    return time.perf_counter() - start


def bench_lengths(fitted: WhisperEncoder, full: WhisperEncoder, speech: np.ndarray,
                  lengths: list[float], repeats: int) -> list[dict]:
    rows = []
    for i, seconds in enumerate(lengths):
        n = int(round(seconds * SAMPLE_RATE))
        offset = (i * 7 * SAMPLE_RATE) % max(1, len(speech) - n)
        audio = speech[offset: offset + n]
        fitted.features(audio), full.features(audio)  # warm-up for this shape
        t_fit, t_full = [], []
        for r in range(repeats):
            order = [(fitted, t_fit), (full, t_full)]
            for enc, times in order if r % 2 == 0 else order[::-1]:
                times.append(time_once(enc.features, audio))
        row = {
            'audio_s': round(n / SAMPLE_RATE, 3),
            'window_s': fitted.policy.window_for(n),
            'frames': len(fitted.features(audio)),
            'fitted_s': statistics.median(t_fit),
            'full30_s': statistics.median(t_full),
        }
        row['speedup'] = row['full30_s'] / row['fitted_s']
        rows.append(row)
        print(f"{row['audio_s']:6.2f} s  window {row['window_s']:4g} s  fitted {row['fitted_s'] * 1000:7.1f} ms"
              f"  30 s {row['full30_s'] * 1000:7.1f} ms  speedup x{row['speedup']:.2f}", flush=True)
    return rows


def bench_batch(fitted: WhisperEncoder, speech: np.ndarray, n_utts: int, seconds: float, repeats: int) -> dict:
    """One-by-one vs one batch for ``n_utts`` utterances that all fall in the same window."""
    n = int(round(seconds * SAMPLE_RATE))
    audios = [speech[k * n: (k + 1) * n] for k in range(n_utts)]
    fitted.features_batch(audios)  # warm-up
    t_seq, t_batch = [], []
    for r in range(repeats):
        runs = [(lambda: [fitted.features(a) for a in audios], t_seq),
                (lambda: fitted.features_batch(audios, batch_size=n_utts), t_batch)]
        for fn, times in runs if r % 2 == 0 else runs[::-1]:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    row = {'utterances': n_utts, 'audio_s': seconds, 'window_s': fitted.policy.window_for(n),
           'sequential_s': statistics.median(t_seq), 'batched_s': statistics.median(t_batch)}
    row['speedup'] = row['sequential_s'] / row['batched_s']
    print(f"batch of {n_utts} x {seconds:g} s: one by one {row['sequential_s'] * 1000:.0f} ms, "
          f"batched {row['batched_s'] * 1000:.0f} ms, x{row['speedup']:.2f}", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', type=Path, default=DEFAULT_DATA,
                        help='LJ-Speech-style folder with wavs/ (default: ../shared/data/ljspeech); '
                             'synthesized speech is used when it has no recordings')
    parser.add_argument('--model', default=None, help='faster-whisper model folder (default: embedded tiny.en)')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs per length and encoder (median)')
    parser.add_argument('--lengths', type=float, nargs='+', default=list(DEFAULT_LENGTHS),
                        help='utterance lengths in seconds (each <= 30)')
    parser.add_argument('--threads', type=int, default=0, help='CTranslate2 CPU threads (0 = its default)')
    parser.add_argument('--batch', type=int, default=8, help='utterances in the batching comparison (0 = skip)')
    parser.add_argument('--json-out', type=Path, default=ROOT / 'docs' / 'benchmarks' / 'encoder.json')
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error('--repeats must be >= 1')
    if any(not 0 < s <= 30 for s in args.lengths):
        parser.error('--lengths must be in (0, 30] seconds')

    speech, source = load_speech(args.data)
    print(f'speech: {source} ({len(speech) / SAMPLE_RATE:.0f} s)', flush=True)
    fitted = WhisperEncoder(args.model, cpu_threads=args.threads)
    full = WhisperEncoder(args.model, cpu_threads=args.threads, policy=WindowPolicy((30.0,)))
    print(f"model: {fitted.identity['name']} d_model={fitted.d_model} compute={fitted.compute_type}", flush=True)

    rows = bench_lengths(fitted, full, speech, args.lengths, args.repeats)
    batch = bench_batch(fitted, speech, args.batch, 3.0, args.repeats) if args.batch > 0 else None

    result = {
        'benchmark': 'encoder fitted window vs 30 s window',
        'model': fitted.identity,
        'compute_type': fitted.compute_type,
        'policy': list(fitted.policy.windows_s),
        'speech': source,
        'repeats': args.repeats,
        'threads': args.threads,
        'machine': {'cpus': os.cpu_count(), 'platform': platform.platform(),
                    'load_avg_at_end': list(os.getloadavg())},
        'lengths': rows,
        'batch': batch,
    }
    write_json(args.json_out, result)
    print(f'wrote {args.json_out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
