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
Tests for the `tinyalign` command on the tiny models.

JSON output of respond and evaluate, cascade mode, one-line errors with exit status 2, and corpus synthesis.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tinyalign_ros.adapter import save_adapter
from tinyalign_ros.cli import build_parser, main
from tinyalign_ros.data import Item, load_dataset, write_manifest
from tinyalign_ros.encoder import WhisperEncoder
from tinyalign_ros.llm import LLM
from tinyalign_ros.projector import build_projector, ProjectorConfig
from tinyalign_ros.synth import synthesize
import torch

TEXTS = ('Turn left at the door.', 'Bring me the red cup.', 'The robot stops.')
LATENCY_KEYS = {'encode', 'project', 'first_token', 'total'}


@pytest.fixture(scope='module')
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp('corpus')
    (folder / 'wavs').mkdir()
    items = []
    for i, text in enumerate(TEXTS):
        wav = folder / 'wavs' / f'utt{i}.wav'
        sf.write(str(wav), synthesize(text, rate=180), 16000, subtype='PCM_16')
        items.append(Item(f'utt{i}', wav, text))
    return write_manifest(items, folder / 'manifest.jsonl')


@pytest.fixture(scope='module')
def wav(corpus: Path) -> Path:
    return corpus.parent / 'wavs' / 'utt0.wav'


@pytest.fixture(scope='module')
def adapter(tiny_whisper_path: Path, tiny_llm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save a random adapter made for the tiny model pair (never blank, so it always injects audio)."""
    encoder, llm = WhisperEncoder(tiny_whisper_path, cpu_threads=1), LLM(tiny_llm_path)
    torch.manual_seed(0)
    projector = build_projector(ProjectorConfig(encoder_dim=encoder.d_model, llm_dim=llm.hidden_size, d_model=32,
                                                n_layers=1, n_heads=4, ff_dim=64, dropout=0.0))
    projector.bind_llm(llm.embedding_matrix)
    projector.blank.bias.data.fill_(-50.0)
    path = tmp_path_factory.mktemp('adapters') / 'tiny-pair'
    return save_adapter(path, projector, {'encoder': encoder.identity, 'llm': llm.identity})


@pytest.fixture
def models(tiny_whisper_path: Path, tiny_llm_path: Path, adapter: Path) -> list[str]:
    return ['--whisper', str(tiny_whisper_path), '--llm', str(tiny_llm_path), '--adapter', str(adapter)]


def run(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ respond


def test_respond_json(capsys: pytest.CaptureFixture, wav: Path, models: list[str]) -> None:
    code, out, _ = run(capsys, ['respond', str(wav), '--json', '--max-new-tokens', '4', *models])
    assert code == 0
    data = json.loads(out)
    assert {'text', 'mode', 'audio_s', 'latency_ms'} <= set(data)
    assert data['mode'] == 'aligned'
    assert isinstance(data['text'], str)
    assert data['audio_s'] == pytest.approx(sf.info(str(wav)).frames / 16000, abs=1e-3)
    assert set(data['latency_ms']) == LATENCY_KEYS
    assert all(v >= 0 for v in data['latency_ms'].values())
    assert data['latency_ms']['total'] >= data['latency_ms']['encode']
    assert data['adapter'] == 'tiny-pair'
    assert 'transcript' not in data


def test_respond_cascade_json(capsys: pytest.CaptureFixture, wav: Path, models: list[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The tiny random Whisper transcribes nothing; stand in a transcript so the LLM gets a question
    # (what an empty transcript should do is covered in test_pipeline).
    monkeypatch.setattr(WhisperEncoder, 'transcribe', lambda self, audio, **_: 'turn left')
    code, out, _ = run(capsys, ['respond', str(wav), '--json', '--cascade', '--max-new-tokens', '4', *models])
    assert code == 0
    data = json.loads(out)
    assert data['mode'] == 'cascade'
    assert data['transcript'] == 'turn left'
    assert set(data['latency_ms']) == LATENCY_KEYS


def test_respond_streams_text_without_json(capsys: pytest.CaptureFixture, wav: Path, models: list[str]) -> None:
    code, out, err = run(capsys, ['respond', str(wav), '--max-new-tokens', '4', *models])
    assert code == 0
    assert '[aligned]' in err and 'total' in err
    code, json_out, _ = run(capsys, ['respond', str(wav), '--json', '--max-new-tokens', '4', *models])
    assert out == json.loads(json_out)['text'] + '\n'  # the streamed pieces are the answer, then a newline


def test_missing_audio_exits_2_with_one_line(capsys: pytest.CaptureFixture, tmp_path: Path,
                                             models: list[str]) -> None:
    code, out, err = run(capsys, ['respond', str(tmp_path / 'nothing.wav'), '--json', *models])
    assert code == 2
    assert out == ''
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith('tinyalign respond: error:') and 'nothing.wav' in lines[0]


def test_absurd_float_audio_exits_2_with_one_line(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                  models: list[str]) -> None:
    """A float wav peaking at 1e30 used to be answered with "" (NaN inside Whisper)."""
    samples = np.zeros(8000, np.float32)
    samples[100] = 1e30
    sf.write(str(tmp_path / 'loud.wav'), samples, 16000, subtype='FLOAT')
    code, out, err = run(capsys, ['respond', str(tmp_path / 'loud.wav'), '--json', *models])
    assert code == 2 and out == ''
    lines = err.strip().splitlines()
    assert len(lines) == 1 and 'within [-1, 1]' in lines[0], lines


def test_adapters_refuses_bad_operator_ids_and_foreign_versions_in_one_line(capsys: pytest.CaptureFixture,
                                                                            tmp_path: Path) -> None:
    store = tmp_path / 'store'
    code, out, err = run(capsys, ['adapters', 'list', '--operator', 'alice\n', '--store', str(store), '--json'])
    assert code == 2 and out == '' and len(err.strip().splitlines()) == 1 and 'not allowed' in err
    assert not store.exists() or list(store.iterdir()) == []
    torch.manual_seed(0)
    tiny = build_projector(ProjectorConfig(encoder_dim=8, llm_dim=8, d_model=8, n_layers=1, n_heads=2, ff_dim=16))
    save_adapter(store / 'bob' / 'versions' / 'own', tiny, {'created': '2024-01-01T00:00:00'})
    foreign = save_adapter(tmp_path / 'elsewhere' / 'foreign', tiny, {})
    (store / 'bob' / 'versions' / 'foreign').symlink_to(foreign, target_is_directory=True)
    code, out, err = run(capsys, ['adapters', 'activate', '--operator', 'bob', '--adapter-id', 'foreign',
                                  '--store', str(store), '--json'])
    assert code == 2 and out == '' and len(err.strip().splitlines()) == 1 and 'kept: own' in err, err
    code, out, err = run(capsys, ['adapters', 'activate', '--operator', 'bob', '--adapter-id', 'own',
                                  '--store', str(store), '--json'])
    assert code == 0 and json.loads(out)['active'] == 'own'
    assert [v['adapter_id'] for v in json.loads(out)['versions']] == ['own']


def test_bad_config_exits_2_naming_the_key(capsys: pytest.CaptureFixture, tmp_path: Path, wav: Path,
                                           models: list[str]) -> None:
    config = tmp_path / 'engine.yaml'
    config.write_text('generation:\n  max_tokens: 5\n')
    code, _, err = run(capsys, ['respond', str(wav), '--config', str(config), *models])
    assert code == 2
    assert 'generation.max_tokens' in err and len(err.strip().splitlines()) == 1


def test_adapter_for_other_models_exits_2(capsys: pytest.CaptureFixture, tmp_path: Path, wav: Path,
                                          tiny_whisper_path: Path, tiny_llm_path: Path, adapter: Path) -> None:
    meta = json.loads((adapter / 'adapter.json').read_text())
    meta['llm'] = {**meta['llm'], 'name': 'SmolLM2-135M-Instruct', 'sha256': '0' * 64}
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'adapter.safetensors').write_bytes((adapter / 'adapter.safetensors').read_bytes())
    (other / 'adapter.json').write_text(json.dumps(meta))
    code, _, err = run(capsys, ['respond', str(wav), '--whisper', str(tiny_whisper_path), '--llm', str(tiny_llm_path),
                                '--adapter', str(other)])
    assert code == 2 and 'SmolLM2-135M-Instruct' in err


# ------------------------------------------------------------------ evaluate


def test_evaluate_json(capsys: pytest.CaptureFixture, corpus: Path, models: list[str]) -> None:
    code, out, _ = run(capsys, ['evaluate', '--data', str(corpus), '--json', *models])
    assert code == 0
    data = json.loads(out)
    assert {'n', 'wer_nearest', 'wer_repeat', 'wer_repeat_text', 'wer_cascade', 'nll_audio', 'nll_text'} <= set(data)
    assert data['n'] == 3
    assert all(data[k] >= 0 for k in ('wer_nearest', 'wer_repeat', 'wer_repeat_text', 'wer_cascade'))
    assert data['nll_audio'] > 0 and data['nll_text'] > 0
    assert data['adapter'] == 'tiny-pair'
    assert 'details' not in data


def test_evaluate_subset_ids_and_details(capsys: pytest.CaptureFixture, corpus: Path, models: list[str]) -> None:
    code, out, _ = run(capsys, ['evaluate', '--data', str(corpus), '--json', '--ids', 'utt2', 'utt0',
                                '--readings', 'nearest', '--details', *models])
    assert code == 0
    data = json.loads(out)
    assert data['n'] == 2
    assert data['wer_nearest'] is not None and data['wer_cascade'] is None and data['nll_text'] is None
    assert [row['id'] for row in data['details']] == ['utt2', 'utt0']


def test_evaluate_bad_data_exits_2(capsys: pytest.CaptureFixture, tmp_path: Path, models: list[str],
                                   corpus: Path) -> None:
    code, _, err = run(capsys, ['evaluate', '--data', str(tmp_path / 'none.jsonl'), '--json', *models])
    assert code == 2 and err.startswith('tinyalign evaluate: error:')
    code, _, err = run(capsys, ['evaluate', '--data', str(corpus), '--json', '--ids', 'nope', *models])
    assert code == 2 and 'nope' in err


# ------------------------------------------------------------------ synth and parser


def test_synth_writes_a_manifest(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    text = tmp_path / 'sentences.txt'
    text.write_text('Turn left.\n\nBring me the cup.\nStop here now.\n', encoding='utf-8')
    out_dir = tmp_path / 'corpus'
    code, out, _ = run(capsys, ['synth', '--text', str(text), '--out', str(out_dir), '--voices', 'en-us',
                                '--rates', '170', '--workers', '1', '--json'])
    assert code == 0
    summary = json.loads(out)
    manifest = Path(summary['manifest'])
    assert manifest == out_dir / 'manifest.jsonl' and manifest.is_file()
    assert summary['voices'] == ['en-us'] and summary['rates'] == [170]
    items = load_dataset(manifest)
    assert sorted(item.text for item in items) == ['Bring me the cup.', 'Stop here now.', 'Turn left.']
    for item in items:
        info = sf.info(str(item.audio))
        assert info.samplerate == 16000 and info.frames > 1600


def test_parser_requires_a_command_and_knows_its_subcommands(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    parser = build_parser()
    args = parser.parse_args(['respond', 'a.wav', '--cascade'])
    assert args.cascade and args.command == 'respond'
    assert parser.parse_args(['demo']).command == 'demo'


# ------------------------------------------------------------------ bench-train

def test_bench_train_json_reports_both_objectives(capsys: pytest.CaptureFixture, tiny_whisper_path: Path,
                                                  tiny_llm_path: Path) -> None:
    code, out, _ = run(capsys, ['bench-train', '--whisper', str(tiny_whisper_path), '--llm', str(tiny_llm_path),
                                '--batch-size', '2', '--repeats', '1', '--negatives', '16', '--json'])
    assert code == 0
    data = json.loads(out)
    assert {'objective', 'objective_per_sample_s', 'ce_per_sample_s', 'ratio', 'llm_params', 'peak_rss_mb'} <= set(data)
    assert data['objective'] == 'ctc' and data['negatives'] == 16 and data['batch_size'] == 2
    assert data['objective_per_sample_s'] > 0 and data['ce_per_sample_s'] > 0
    assert data['ratio'] == pytest.approx(data['ce_per_sample_s'] / data['objective_per_sample_s'], rel=0.05)
    assert data['llm_params'] > 0 and data['peak_rss_mb'] > 0
