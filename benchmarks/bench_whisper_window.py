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
Whisper's transcription from the fitted window (auto mode's fallback) vs from the 30 s window (the cascade).

The question this answers: when ``auto`` mode falls back to Whisper, can it decode the fitted
window the projector's features came from (one encoder pass for both paths) instead of encoding
the utterance again in a 30 s window, and what does that cost in word errors? Both readings run
on the same audio in one process, alternating which goes first; the times are whole
transcriptions (encoder and decoder).

Sets: the packaged QA dev split in three voices, the packaged command set's test split in three
voices with noise at 5-20 dB SNR, and the 32 real recordings when ``--data`` has them.

Usage: PYTHONPATH=src python benchmarks/bench_whisper_window.py [--data DIR] [--json-out PATH]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import platform
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'src'))

from tinyalign_ros.audio import load_audio  # noqa: E402
from tinyalign_ros.data import load_dataset  # noqa: E402
from tinyalign_ros.durable import write_json  # noqa: E402
from tinyalign_ros.encoder import WhisperEncoder  # noqa: E402
from tinyalign_ros.metrics import wer  # noqa: E402

DEFAULT_DATA = Path(os.environ.get('TINYALIGN_SHARED_DATA', ROOT.parent / 'shared' / 'data'))
QA_VOICES = ('flite:slt', 'en-gb-x-rp+m6', 'festival:kal_diphone')
COMMAND_VOICES = ('en-us+f1', 'festival:ked_diphone', 'flite:rms')


def measure(encoder: WhisperEncoder, items: list, name: str) -> dict:
    """Both readings of every item, alternating which runs first; WER and mean ms of each."""
    refs, full, fitted = [], [], []
    t_full = t_fitted = 0.0
    for i, item in enumerate(items):
        audio = load_audio(item.audio)
        for first in ((True, False) if i % 2 == 0 else (False, True)):
            start = time.perf_counter()
            if first:
                full.append(encoder.transcribe(audio))
                t_full += time.perf_counter() - start
            else:
                fitted.append(encoder.transcribe_encoded(encoder.encode_window(audio)))
                t_fitted += time.perf_counter() - start
        refs.append(item.text)
    n = len(items)
    row = {'set': name, 'n': n,
           'wer_30s_window': round(wer(refs, full), 4), 'wer_fitted_window': round(wer(refs, fitted), 4),
           'mean_ms_30s_window': round(t_full * 1000 / n, 1), 'mean_ms_fitted_window': round(t_fitted * 1000 / n, 1)}
    row['time_ratio'] = round(row['mean_ms_30s_window'] / row['mean_ms_fitted_window'], 2)
    row['examples'] = [{'text': r, '30s': a, 'fitted': b} for r, a, b in zip(refs, full, fitted) if a != b][:12]
    print({k: v for k, v in row.items() if k != 'examples'}, flush=True)
    return row


def main() -> int:
    from tinyalign_ros.augment import AugmentConfig
    from tinyalign_ros.qa import synthesize_set

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--data', type=Path, default=DEFAULT_DATA, help='holds ljspeech/ (the real recordings)')
    parser.add_argument('--json-out', type=Path, default=ROOT / 'docs' / 'benchmarks' / 'whisper_window.json')
    args = parser.parse_args()
    encoder = WhisperEncoder()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        qa = synthesize_set('qa', Path(tmp) / 'qa', QA_VOICES, split='dev', progress=False)
        rows.append(measure(encoder, load_dataset(qa), 'QA dev questions, 3 voices'))
        noisy = AugmentConfig(snr_db=(5.0, 20.0))
        commands = synthesize_set('commands', Path(tmp) / 'cmd', COMMAND_VOICES, split='test', augment_config=noisy,
                                  progress=False)
        rows.append(measure(encoder, load_dataset(commands), 'robot commands (test split), 3 voices, 5-20 dB SNR'))
    lj = args.data / 'ljspeech'
    if (lj / 'metadata.csv').is_file():
        rows.append(measure(encoder, load_dataset(lj), '32 real recordings (LJ Speech)'))
    write_json(args.json_out, {'machine': platform.machine(), 'model': encoder.name,
                               'compute_type': encoder.compute_type, 'rows': rows})
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
