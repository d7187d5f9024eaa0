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
Tests for the adapter format.

Round trip, identity checks, damaged folders, atomic replacement and the absence of pickle anywhere in
loading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import pickle
import struct

import pytest
import tinyalign_ros.adapter as adapter_module
from tinyalign_ros.adapter import (
    AdapterError, average_adapters, FORMAT_VERSION, load_adapter, METADATA, new_adapter_id, read_metadata, save_adapter,
    WEIGHTS,
)
from tinyalign_ros.llm import LLM
from tinyalign_ros.projector import build_projector, Projector, ProjectorConfig
import torch

ENCODER = {'name': 'whisper-tiny.en', 'sha256': 'e' * 64, 'd_model': 64}
VOCAB = torch.tensor([3, 8, 40, 41, 42, 99, 250, 400])


def projector_for(llm: LLM, seed: int = 0, **changes) -> Projector:
    config = {'encoder_dim': 64, 'llm_dim': llm.hidden_size, 'd_model': 32, 'n_layers': 2, 'n_heads': 4, 'ff_dim': 64,
              'dropout': 0.0}
    config.update(changes)
    torch.manual_seed(seed)
    projector = build_projector(ProjectorConfig(**config))
    projector.bind_llm(llm.embedding_matrix, VOCAB)
    return projector.eval()


def features(seed: int = 0, frames: int = 48) -> torch.Tensor:
    return torch.randn(1, frames, 64, generator=torch.Generator().manual_seed(seed))


def meta_for(llm: LLM, **extra) -> dict:
    return {'encoder': ENCODER, 'llm': llm.identity, **extra}


# ------------------------------------------------------------------ round trip


def test_round_trip_keeps_outputs_metadata_and_vocabulary(llm: LLM, tmp_path: Path) -> None:
    projector = projector_for(llm)
    path = save_adapter(tmp_path / 'base', projector, meta_for(llm, note='hello', metrics={'wer': 0.5}))
    assert path == tmp_path / 'base'
    assert sorted(p.name for p in path.iterdir()) == sorted([WEIGHTS, METADATA])

    loaded, meta = load_adapter(path, ENCODER, llm.identity, llm.embedding_matrix)
    assert type(loaded) is type(projector)
    assert loaded.config == projector.config
    assert not loaded.training and loaded.is_bound
    assert loaded.vocab_ids.tolist() == VOCAB.tolist()
    assert meta['note'] == 'hello' and meta['metrics'] == {'wer': 0.5}
    assert meta['adapter_id'] == 'base'
    assert meta['format_version'] == FORMAT_VERSION
    assert meta['projector']['type'] == 'bridgeformer'
    assert meta['projector']['config'] == projector.config.to_dict()
    assert meta['projector']['parameters'] == projector.n_parameters()
    assert meta['encoder'] == ENCODER and meta['llm'] == llm.identity
    assert read_metadata(path) == meta

    x = features()
    with torch.no_grad():
        want, got = projector(x), loaded(x)
    # float16 storage: about three significant digits
    torch.testing.assert_close(got.embeds, want.embeds, atol=2e-3 * float(projector.embed_norm), rtol=1e-2)
    torch.testing.assert_close(got.logits, want.logits, atol=0.1, rtol=1e-2)
    assert float(loaded.logit_scale.detach()) == float(projector.logit_scale.detach())  # kept in float32
    # the decoded ids may only differ where two scores tie within fp16 noise; on this input they do not
    assert loaded.decode_ids(x[0]) == projector.decode_ids(x[0])


def test_full_precision_round_trip_is_exact(llm: LLM, tmp_path: Path) -> None:
    projector = projector_for(llm, type='concat_mlp', reduction='mean')
    save_adapter(tmp_path / 'a', projector, meta_for(llm), half=False)
    loaded, _ = load_adapter(tmp_path / 'a', embedding_matrix=llm.embedding_matrix)
    for name, value in projector.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_averaging_gives_the_weighted_mean_of_every_weight(llm: LLM, tmp_path: Path) -> None:
    parts = [projector_for(llm, seed=seed, type='concat_mlp', reduction='mean') for seed in (0, 1)]
    for name, projector in zip('ab', parts):
        save_adapter(tmp_path / name, projector, meta_for(llm, metrics={'real': {'wer_nearest': 0.3}}), half=False)
    averaged, meta = average_adapters([tmp_path / 'a', tmp_path / 'b'], [1.0, 3.0])
    a, b = (p.state_dict() for p in parts)
    for name, value in averaged.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.25 * a[name] + 0.75 * b[name], atol=1e-6), name
    assert torch.equal(averaged.vocab_ids, VOCAB)
    assert 'metrics' not in meta  # the average was not scored: its parts' scores are not its own
    assert meta['llm'] == llm.identity and meta['averaged_from'][0]['data'] is None
    assert [part['weight'] for part in meta['averaged_from']] == [0.25, 0.75]
    save_adapter(tmp_path / 'avg', averaged, meta)
    assert read_metadata(tmp_path / 'avg')['averaged_from'][1]['path'] == str(tmp_path / 'b')


def test_the_cli_averages_adapters_and_refuses_a_bad_set(llm: LLM, tmp_path: Path, capsys) -> None:
    from tinyalign_ros.cli.main import main

    for name, seed in (('a', 0), ('b', 1)):
        save_adapter(tmp_path / name, projector_for(llm, seed=seed, type='concat_mlp', reduction='mean'), meta_for(llm))
    assert main(['average', str(tmp_path / 'a'), str(tmp_path / 'b'), '--out', str(tmp_path / 'avg')]) == 0
    assert [p['weight'] for p in read_metadata(tmp_path / 'avg')['averaged_from']] == [0.5, 0.5]
    assert main(['average', str(tmp_path / 'a'), '--out', str(tmp_path / 'one')]) == 2
    assert 'at least two' in capsys.readouterr().out and not (tmp_path / 'one').exists()


def test_averaging_refuses_adapters_of_different_lineages(llm: LLM, tmp_path: Path) -> None:
    save_adapter(tmp_path / 'a', projector_for(llm, type='concat_mlp', reduction='mean'), meta_for(llm))
    save_adapter(tmp_path / 'wider', projector_for(llm, type='concat_mlp', reduction='mean', d_model=48),
                 meta_for(llm))
    other_vocab = projector_for(llm, type='concat_mlp', reduction='mean')
    other_vocab.bind_llm(llm.embedding_matrix, VOCAB + 1)
    save_adapter(tmp_path / 'vocab', other_vocab, meta_for(llm))
    with pytest.raises(AdapterError, match='projector config'):
        average_adapters([tmp_path / 'a', tmp_path / 'wider'])
    with pytest.raises(AdapterError, match='head vocabulary'):
        average_adapters([tmp_path / 'a', tmp_path / 'vocab'])
    with pytest.raises(AdapterError, match='at least two'):
        average_adapters([tmp_path / 'a'])
    with pytest.raises(AdapterError, match='weight'):
        average_adapters([tmp_path / 'a', tmp_path / 'a'], [1.0, -1.0])


def test_loading_without_the_llm_keeps_the_vocabulary_for_a_later_bind(llm: LLM, tmp_path: Path) -> None:
    save_adapter(tmp_path / 'a', projector_for(llm, type='linear'), meta_for(llm))
    loaded, meta = load_adapter(tmp_path / 'a')
    assert not loaded.is_bound
    assert loaded.vocab_ids.tolist() == VOCAB.tolist()
    loaded.bind_llm(llm.embedding_matrix)
    assert loaded.vocab_ids.tolist() == VOCAB.tolist()
    assert loaded(features()).logits.shape[-1] == 1 + len(VOCAB)


def test_metadata_cannot_override_the_format_fields(llm: LLM, tmp_path: Path) -> None:
    projector = projector_for(llm)
    save_adapter(tmp_path / 'a', projector, {'format_version': 99, 'projector': 'lies', 'adapter_id': 'mine'})
    meta = read_metadata(tmp_path / 'a')
    assert meta['format_version'] == FORMAT_VERSION
    assert meta['projector']['config'] == projector.config.to_dict()
    assert meta['adapter_id'] == 'mine'  # a given id is kept


def test_new_adapter_ids_are_unique_and_prefixed() -> None:
    ids = {new_adapter_id('me') for _ in range(20)}
    assert len(ids) == 20 and all(i.startswith('me-') for i in ids)


# ------------------------------------------------------------------ identity checks


def test_refuses_an_adapter_made_for_another_llm_naming_both(llm: LLM, tmp_path: Path) -> None:
    made_for = {'name': 'SmolLM2-135M-Instruct', 'sha256': 'a' * 64, 'hidden_size': 64}
    save_adapter(tmp_path / 'a', projector_for(llm), {'encoder': ENCODER, 'llm': made_for})
    current = {'name': 'Qwen2-0.5B', 'sha256': 'b' * 64, 'hidden_size': 64}
    with pytest.raises(AdapterError) as info:
        load_adapter(tmp_path / 'a', ENCODER, current)
    message = str(info.value)
    assert 'SmolLM2-135M-Instruct' in message and 'Qwen2-0.5B' in message
    assert 'llm' in message
    # the same LLM is accepted
    load_adapter(tmp_path / 'a', ENCODER, dict(made_for))


def test_refuses_an_adapter_made_for_another_encoder_naming_both(llm: LLM, tmp_path: Path) -> None:
    save_adapter(tmp_path / 'a', projector_for(llm), meta_for(llm))
    other = {'name': 'whisper-base.en', 'sha256': 'f' * 64, 'd_model': 512}
    with pytest.raises(AdapterError) as info:
        load_adapter(tmp_path / 'a', other, llm.identity)
    assert 'whisper-tiny.en' in str(info.value) and 'whisper-base.en' in str(info.value)
    with pytest.raises(AdapterError, match='whisper-base.en'):
        load_adapter(tmp_path / 'a', {**ENCODER, 'name': 'whisper-base.en', 'd_model': 512}, None)


# ------------------------------------------------------------------ damaged adapters


@pytest.fixture
def saved(llm: LLM, tmp_path: Path) -> Path:
    return save_adapter(tmp_path / 'adp', projector_for(llm), meta_for(llm))


@pytest.mark.parametrize('damage', ['garbage', 'truncated', 'empty', 'header_only'])
def test_damaged_weights_raise_adapter_error(saved: Path, damage: str) -> None:
    weights = saved / WEIGHTS
    data = weights.read_bytes()
    weights.write_bytes({
        'garbage': b'\x00not a safetensors file at all' * 10,
        'truncated': data[: len(data) // 2],
        'empty': b'',
        'header_only': data[:8],
    }[damage])
    with pytest.raises(AdapterError, match='adp'):
        load_adapter(saved)


def test_missing_files_raise_adapter_error(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match='not found'):
        load_adapter(tmp_path / 'nowhere')
    (saved / METADATA).unlink()
    with pytest.raises(AdapterError, match=METADATA):
        load_adapter(saved)


def test_missing_weights_raise_adapter_error(saved: Path) -> None:
    (saved / WEIGHTS).unlink()
    with pytest.raises(AdapterError, match=WEIGHTS):
        load_adapter(saved)


@pytest.mark.parametrize('text', ['{not json', '', '\xff\xfe', '[1, 2, 3]'])
def test_bad_metadata_json_raises_adapter_error(saved: Path, text: str) -> None:
    (saved / METADATA).write_text(text, encoding='latin-1')
    with pytest.raises(AdapterError):
        load_adapter(saved)


def test_unknown_format_version_raises_adapter_error(saved: Path) -> None:
    meta = json.loads((saved / METADATA).read_text())
    meta['format_version'] = FORMAT_VERSION + 1
    (saved / METADATA).write_text(json.dumps(meta))
    with pytest.raises(AdapterError, match='format'):
        load_adapter(saved)
    del meta['format_version']
    (saved / METADATA).write_text(json.dumps(meta))
    with pytest.raises(AdapterError, match='format'):
        load_adapter(saved)


def test_projector_config_that_does_not_match_the_weights_raises_adapter_error(saved: Path) -> None:
    meta = json.loads((saved / METADATA).read_text())
    meta['projector']['config']['d_model'] = 48  # valid on its own, wrong for these weights
    (saved / METADATA).write_text(json.dumps(meta))
    with pytest.raises(AdapterError, match='adp'):
        load_adapter(saved)


def test_invalid_projector_config_raises_adapter_error(saved: Path) -> None:
    meta = json.loads((saved / METADATA).read_text())
    meta['projector']['config']['colour'] = 'red'
    (saved / METADATA).write_text(json.dumps(meta))
    with pytest.raises(AdapterError, match='colour'):
        load_adapter(saved)
    meta['projector'] = {'type': 'bridgeformer'}
    (saved / METADATA).write_text(json.dumps(meta))
    with pytest.raises(AdapterError):
        load_adapter(saved)


# ------------------------------------------------------------------ atomic replacement


def test_saving_over_an_adapter_replaces_it_without_leftovers(llm: LLM, tmp_path: Path) -> None:
    path = tmp_path / 'adp'
    save_adapter(path, projector_for(llm, seed=1), meta_for(llm, version=1))
    newer = projector_for(llm, seed=2, type='linear')
    save_adapter(path, newer, meta_for(llm, version=2))
    loaded, meta = load_adapter(path, embedding_matrix=llm.embedding_matrix)
    assert meta['version'] == 2 and meta['projector']['type'] == 'linear'
    x = features()
    torch.testing.assert_close(loaded(x).embeds, newer(x).embeds, atol=2e-3, rtol=1e-2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['adp']


def test_a_failure_while_writing_keeps_the_previous_adapter(llm: LLM, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / 'adp'
    save_adapter(path, projector_for(llm, seed=1), meta_for(llm, version=1))

    def half_written(tensors: dict, filename: str, metadata: dict | None = None) -> None:
        with open(filename, 'wb') as f:
            f.write(b'\x10\x00\x00\x00\x00\x00\x00\x00{"partial')
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(adapter_module, 'save_file', half_written)
    with pytest.raises(OSError, match='No space') as raised:
        save_adapter(path, projector_for(llm, seed=2), meta_for(llm, version=2))
    assert raised.value.errno == 28 and 'the disk is full' in str(raised.value) and str(tmp_path) in str(raised.value)
    monkeypatch.undo()
    _, meta = load_adapter(path)
    assert meta['version'] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ['adp']  # no temporary folder left behind


def test_a_failure_while_renaming_into_place_keeps_the_previous_adapter(llm: LLM, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The old folder is moved aside before the new one is renamed in.

    If that second rename fails, the loader must still find the previous adapter at its path.
    """
    path = tmp_path / 'adp'
    save_adapter(path, projector_for(llm, seed=1), meta_for(llm, version=1))
    real_replace = os.replace

    def failing_replace(src, dst) -> None:
        if '.tmp-' in Path(src).name:
            raise OSError(5, 'Input/output error')
        real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', failing_replace)
    with pytest.raises(OSError):
        save_adapter(path, projector_for(llm, seed=2), meta_for(llm, version=2))
    monkeypatch.undo()
    _, meta = load_adapter(path)
    assert meta['version'] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ['adp']


# ------------------------------------------------------------------ no pickle


def test_weights_are_plain_safetensors(saved: Path) -> None:
    data = (saved / WEIGHTS).read_bytes()
    assert not data.startswith(b'\x80') and not data.startswith(b'PK')  # neither pickle nor torch zip
    (header_len,) = struct.unpack('<Q', data[:8])
    assert 8 + header_len <= len(data)
    header = json.loads(data[8: 8 + header_len])
    assert header.pop('__metadata__') == {'format': 'tinyalign_ros-adapter'}
    assert header['logit_scale']['dtype'] == 'F32'
    assert header['vocab_ids']['dtype'] == 'I64' and header['vocab_ids']['shape'] == [len(VOCAB)]
    floats = {name: info['dtype'] for name, info in header.items() if name not in ('logit_scale', 'vocab_ids')}
    assert floats and set(floats.values()) == {'F16'}
    end = max(info['data_offsets'][1] for info in header.values())
    assert 8 + header_len + end == len(data)  # every byte accounted for by a tensor


def test_loading_never_unpickles(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError('pickle used while loading an adapter')

    monkeypatch.setattr(pickle, 'load', refuse)
    monkeypatch.setattr(pickle, 'loads', refuse)
    monkeypatch.setattr(pickle, 'Unpickler', refuse)
    monkeypatch.setattr(torch, 'load', refuse)
    projector, meta = load_adapter(saved)
    assert meta['adapter_id'] == 'adp' and projector.vocab_ids.numel() == len(VOCAB)
