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
The pure helpers of the memory and latency benchmarks, on fake data (no models, no subprocesses).

The benchmarks themselves take minutes and are run by `benchmarks/run_all.py`; what they compute
from their measurements (percentiles, peak-RSS parsing, parameter counts, tables) must be right
for the published numbers to mean anything, so it is checked here in milliseconds.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
import sys
from types import ModuleType

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / 'benchmarks'


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f'_bench_{name}', BENCH / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


memory = _load('bench_memory')
latency = _load('bench_latency')


def test_percentile_matches_numpy() -> None:
    values = [120.0, 80.0, 95.5, 300.0, 101.0, 99.0, 87.0]
    for q in (0, 25, 50, 90, 95, 100):
        assert latency.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert latency.percentile([7.0], 95) == 7.0


def test_percentile_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        latency.percentile([], 50)
    with pytest.raises(ValueError):
        latency.percentile([1.0], 101)


def test_fit_length_trims_edge_silence_and_pads_evenly() -> None:
    sr = latency.SAMPLE_RATE
    audio = np.concatenate([np.zeros(sr // 2), 0.5 * np.ones(sr), np.zeros(sr // 4)]).astype(np.float32)
    out = latency.fit_length(audio, 2.0)
    assert out.dtype == np.float32 and out.size == 2 * sr
    loud = np.flatnonzero(np.abs(out) > 0.01)
    assert loud[0] == sr // 2 and loud[-1] == sr // 2 + sr - 1  # 1 s of speech centred in 2 s
    cut = latency.fit_length(audio, 0.5)
    assert cut.size == sr // 2 and np.all(cut == 0.5)
    assert latency.speech_seconds(audio) == pytest.approx(1.0)
    assert latency.speech_seconds(np.zeros(10)) == 0.0


def test_next_rate_follows_the_length_within_espeak_limits() -> None:
    assert latency.next_rate(160, 2.0, 1.0) == 320
    assert latency.next_rate(160, 4.0, 1.0) == 450
    assert latency.next_rate(160, 1.0, 10.0) == 80
    assert latency.next_rate(160, 0.0, 1.0) == 160


def _fake_samples() -> dict:
    samples = {}
    for length in (1.0, 3.0):
        for mode, base in (('aligned', 100.0), ('cascade', 200.0)):
            samples[(length, mode)] = [{'first_token': base + i, 'total': 10 * base + i, 'encode': 5.0,
                                        'answer_words': 4} for i in range(5)]
    return samples


def test_summarize_and_markdown_table() -> None:
    rows = latency.summarize(_fake_samples())
    assert len(rows) == 4
    first = next(r for r in rows if r['audio_s'] == 1.0 and r['mode'] == 'aligned')
    assert first['first_token_p50_ms'] == 102.0 and first['first_token_p95_ms'] == pytest.approx(103.8)
    assert first['total_p50_ms'] == 1002.0 and first['n'] == 5 and first['answer_words_mean'] == 4.0
    table = latency.markdown_table(rows).splitlines()
    assert len(table) == 4 and table[0].startswith('| utterance')
    assert table[2] == '| 1 s | 102 / 104 ms | 202 / 204 ms | 1002 / 1004 ms | 2002 / 2004 ms | 5 |'


def test_parse_time_v_and_last_json() -> None:
    stderr = '\tCommand being timed: "x"\n\tMaximum resident set size (kbytes): 1048576\n\tExit status: 0\n'
    assert memory.parse_time_v(stderr) == 1024.0
    with pytest.raises(ValueError):
        memory.parse_time_v('nothing here')
    out = 'loading...\n{"a": 1}\nwarning\n{\n  "text": "hi",\n  "n": 2\n}\n'
    assert memory.last_json(out) == {'text': 'hi', 'n': 2}
    assert memory.last_json('{"only": true}') == {'only': True}
    with pytest.raises(ValueError):
        memory.last_json('no json')


def test_parameter_counts_and_kv_cache() -> None:
    smol = {'hidden_size': 576, 'intermediate_size': 1536, 'num_hidden_layers': 30, 'num_attention_heads': 9,
            'num_key_value_heads': 3, 'vocab_size': 49152, 'tie_word_embeddings': True}
    assert memory.llm_params(smol) == 134_515_008  # SmolLM2-135M as transformers counts it
    assert memory.weights_mb(2 ** 20, 2) == 2.0
    # 2 (K and V) x 30 layers x 3 heads x 64 dims x 1000 positions x 2 bytes
    assert memory.kv_cache_mb(smol, 1000, 2) == round(2 * 30 * 3 * 64 * 1000 * 2 / 2 ** 20, 1)


def test_variant_command_and_tables(tmp_path: Path) -> None:
    wav = tmp_path / 'a.wav'
    config = memory.write_config(tmp_path, 'int8')
    assert config.read_text() == 'encoder:\n  compute_type: int8\n'
    cmd = memory.variant_command(wav, 'cascade', config)
    assert cmd[1:5] == ['-m', 'tinyalign_ros.cli', 'respond', str(wav)]
    assert '--cascade' in cmd and cmd[-2:] == ['--config', str(config)]
    assert '--cascade' not in memory.variant_command(wav, 'aligned', None)
    rows = [{'name': 'aligned/default', 'mode': 'aligned', 'compute_type': 'default', 'peak_rss_mb': 1350.2,
             'peak_rss_mb_runs': [1350.2, 1349.0, 1352.0], 'text': 'a | b ' + 'x' * 80}]
    table = memory.budget_table(rows).splitlines()
    assert table[2].startswith('| aligned/default | aligned | float32 | default | 1350 | - | 1350, 1349, 1352 | - | '
                               'a / b x')
    assert table[2].endswith('... |')
    assert memory.variant_command(wav, 'aligned', None, ['--dtype', 'float32'])[-2:] == ['--dtype', 'float32']
    pair = [{'mode': 'aligned', 'config': 'default', 'peak_rss_mb': 900.0, 'peak_rss_mb_runs': [900.0],
             'compute_type': 'default', 'llm_dtype': 'bfloat16', 'name': 'aligned/default', 'first_token_ms': 812.4},
            {'mode': 'aligned', 'config': 'float32', 'peak_rss_mb': 1200.0, 'peak_rss_mb_runs': [1200.0],
             'compute_type': 'default', 'llm_dtype': 'float32', 'name': 'aligned/float32'},
            {'mode': 'cascade', 'config': 'default', 'peak_rss_mb': 950.0, 'peak_rss_mb_runs': [950.0],
             'compute_type': 'default', 'name': 'cascade/default'}]
    memory.add_ratios(pair)
    assert [r['ratio_to_baseline'] for r in pair] == [0.75, 1.0, None]  # no float32 cascade row: no ratio
    assert '| 900 | 0.75 | 900 | 812 |' in memory.budget_table(pair).splitlines()[2]
    assert memory.config_settings('float32') == ('float32', 'default')
    assert memory.config_settings('int8')[1] == 'int8'
    jetson = [{'pair': 'p', 'whisper_params': 39e6, 'llm_params': 135e6, 'weights_jetson_mb': 300.0,
               'activations_mb': 50.0, 'inference_total_jetson_mb': 700.0, 'training_peak_mb': 900.0,
               'source': 'measured'}]
    assert memory.jetson_table(jetson).splitlines()[2] == '| p | 39M + 135M | 300 | 50 | 700 | 900 | measured |'
    assert memory.median_or_none([3.0, 1.0, 2.0]) == 2.0 and memory.median_or_none([]) is None
