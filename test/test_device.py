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
Device and precision settings, end to end: names, ``auto``, the error without a GPU, and their effect.

A robot's config asks for ``cuda`` and a developer's laptop has none: that must be one clear sentence
naming the setting, from the YAML loader, the CLI and the LLM alike. The precision must reach the
weights (a bfloat16 LLM holds bfloat16 weights) and change answers no more than rounding does, and
the projector's token head must share a half-precision table rather than copy it to float32. Tests
that need a GPU skip with the reason when there is none.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tinyalign_ros import device as dev
from tinyalign_ros.config import AssistantConfig, ConfigError, EncoderSettings, LLMSettings, load_config
from tinyalign_ros.llm import GenerationConfig, LLM, PromptConfig
from tinyalign_ros.projector import build_projector, HEAD_CHUNK_ROWS, ProjectorConfig
import torch

NO_CUDA = 'needs a CUDA GPU visible to torch (torch.cuda.is_available() is False here)'


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make both engines report no GPU, whatever this machine has."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(dev, 'ctranslate2_cuda_available', lambda: False)


# ------------------------------------------------------------------ names and resolution

def test_names_are_checked_with_the_key_in_the_message() -> None:
    assert dev.check_device('auto') == 'auto'
    assert dev.check_dtype('bfloat16') == 'bfloat16'
    with pytest.raises(dev.DeviceError, match=r"llm\.device must be one of \['cpu', 'cuda', 'auto'\], got 'gpu'"):
        dev.check_device('gpu', 'llm.device')
    with pytest.raises(dev.DeviceError, match='llm.dtype'):
        dev.check_dtype('half', 'llm.dtype')
    assert dev.resolve_dtype('bfloat16') is torch.bfloat16
    assert dev.resolve_dtype('float32') is torch.float32
    assert dev.dtype_name(torch.float16) == 'float16'


def test_auto_follows_the_backend_and_cpu_never_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert dev.resolve_device('auto', available=lambda: True) == 'cuda'
    assert dev.resolve_device('auto', available=lambda: False) == 'cpu'
    assert dev.resolve_device('cuda', available=lambda: True) == 'cuda'

    def never() -> bool:
        raise AssertionError('cpu must not probe for a GPU')

    assert dev.resolve_device('cpu', available=never) == 'cpu'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert dev.resolve_device('auto', backend='torch') == 'cuda'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert dev.resolve_device('auto', backend='torch') == 'cpu'


def test_cuda_without_a_gpu_is_one_clear_sentence(no_cuda: None) -> None:
    with pytest.raises(dev.DeviceError) as info:
        dev.resolve_device('cuda', 'llm.device', backend='torch')
    message = str(info.value)
    assert 'llm.device is "cuda" but torch sees no CUDA GPU' in message
    assert '"cpu"' in message and '"auto"' in message
    with pytest.raises(dev.DeviceError, match='encoder.device is "cuda" but ctranslate2 sees no CUDA GPU'):
        dev.resolve_device('cuda', 'encoder.device', backend='ctranslate2')


# ------------------------------------------------------------------ YAML config

def test_config_defaults_run_on_the_cpu_in_the_settings_dtype() -> None:
    config = AssistantConfig()
    assert (config.encoder.device, config.llm.device) == ('cpu', 'cpu')
    assert config.llm.dtype == LLMSettings.dtype


def test_yaml_settings_are_validated_at_load_time(tmp_path: Path, no_cuda: None) -> None:
    good = tmp_path / 'good.yaml'
    good.write_text('llm:\n  device: auto\n  dtype: bfloat16\nencoder:\n  device: auto\n  compute_type: int8\n')
    config = load_config(good)
    assert (config.llm.device, config.llm.dtype, config.encoder.compute_type) == ('auto', 'bfloat16', 'int8')
    for text, key in (('llm:\n  dtype: half\n', 'llm.dtype'), ('llm:\n  device: gpu\n', 'llm.device'),
                      ('encoder:\n  device: tpu\n', 'encoder.device')):
        bad = tmp_path / 'bad.yaml'
        bad.write_text(text)
        with pytest.raises(ConfigError, match=key.replace('.', r'\.')):
            load_config(bad)
    with pytest.raises(ConfigError, match=r'llm\.device is "cuda" but torch sees no CUDA GPU'):
        load_config(None, {'llm.device': 'cuda'})
    with pytest.raises(ConfigError, match=r'encoder\.device is "cuda"'):
        load_config(None, {'encoder.device': 'cuda'})
    with pytest.raises(ConfigError):
        EncoderSettings(device='gpu')


# ------------------------------------------------------------------ CLI

def test_cli_flags_reach_the_config(no_cuda: None) -> None:
    from tinyalign_ros.cli import build_parser
    from tinyalign_ros.cli.common import config_from_args

    args = build_parser().parse_args(['respond', 'x.wav', '--device', 'auto', '--dtype', 'bfloat16',
                                      '--compute-type', 'int8'])
    config = config_from_args(args)
    assert (config.encoder.device, config.llm.device) == ('auto', 'auto')
    assert (config.llm.dtype, config.encoder.compute_type) == ('bfloat16', 'int8')
    plain = config_from_args(build_parser().parse_args(['respond', 'x.wav']))
    assert (plain.llm.device, plain.llm.dtype) == (LLMSettings.device, LLMSettings.dtype)
    for command in (['evaluate', '--data', 'd'], ['demo'], ['personalize', '--operator', 'op', '--data', 'd']):
        parsed = build_parser().parse_args([*command, '--dtype', 'float32', '--device', 'cpu'])
        assert (parsed.dtype, parsed.device) == ('float32', 'cpu'), command
    with pytest.raises(SystemExit):
        build_parser().parse_args(['respond', 'x.wav', '--dtype', 'half'])


def test_cli_cuda_without_a_gpu_exits_2_in_one_line(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                    no_cuda: None) -> None:
    from tinyalign_ros.cli import main

    code = main(['respond', str(tmp_path / 'x.wav'), '--device', 'cuda'])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert 'sees no CUDA GPU' in err and 'Traceback' not in err and len(err.splitlines()) == 1


# ------------------------------------------------------------------ the LLM in another precision

@pytest.fixture(scope='module')
def tiny_pair(tiny_llm_path: Path) -> tuple[LLM, LLM]:
    return LLM(tiny_llm_path), LLM(tiny_llm_path, dtype='bfloat16')


def test_bfloat16_llm_holds_bfloat16_weights_and_reads_like_float32(tiny_pair: tuple[LLM, LLM]) -> None:
    full, half = tiny_pair
    assert half.dtype is torch.bfloat16 and half.embedding_matrix.dtype is torch.bfloat16
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    assert half.device == torch.device('cpu')
    prompt = PromptConfig(instruction='Repeat the words.')
    ids = full.tokenize('the red cup is on the table')
    context, _ = full.prompt_parts(prompt)
    a, b = full.next_token_logprobs(context, ids), half.next_token_logprobs(context, ids)
    assert a.dtype is torch.float32 and b.dtype is torch.float32  # scores are float32 whatever the weights
    assert torch.allclose(a.exp(), b.exp(), atol=0.02)
    greedy = GenerationConfig(max_new_tokens=4, repetition_penalty=1.0, no_repeat_ngram_size=0, loop_repeats=0)
    out = half.generate(half.build_text_inputs('the red cup', prompt), greedy)
    assert out.n_tokens >= 1 or out.stopped_by == 'eos'


def test_llm_refuses_cuda_without_a_gpu_before_loading(tiny_llm_path: Path, no_cuda: None) -> None:
    with pytest.raises(dev.DeviceError, match='llm.device'):
        LLM(tiny_llm_path, device='cuda')


# ------------------------------------------------------------------ the token head shares the table

def _projector(llm_dim: int) -> object:
    torch.manual_seed(0)
    return build_projector(ProjectorConfig(encoder_dim=8, llm_dim=llm_dim, d_model=16, n_layers=1, n_heads=2,
                                           ff_dim=32, dropout=0.0)).eval()


def test_bfloat16_table_is_shared_and_scored_like_its_float32_values() -> None:
    torch.manual_seed(1)
    rows = 2 * HEAD_CHUNK_ROWS + 37  # several chunks and a ragged last one
    half_table = (torch.randn(rows, 24) * 0.05).to(torch.bfloat16)
    full_table = half_table.float()  # the same values, upcast: what the head must score like
    half, full = _projector(24), _projector(24)
    half.bind_llm(half_table)
    full.bind_llm(full_table)
    assert half.token_rows.data_ptr() == half_table.data_ptr()  # shared, not copied
    assert half.token_rows.dtype is torch.bfloat16
    for name in ('embed_norm', 'embed_mean', 'token_inv_norm'):
        assert getattr(half, name).dtype is torch.float32
        assert torch.allclose(getattr(half, name), getattr(full, name), rtol=1e-5, atol=1e-6), name
    features = torch.randn(1, 20, 8)
    a, b = half(features).logits, full(features).logits
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)
    assert torch.equal(a.argmax(-1), b.argmax(-1))
    ids_half, embeds_half = half.read(features[0])
    ids_full, embeds_full = full.read(features[0])
    assert ids_half == ids_full
    assert embeds_half.dtype is torch.float32 and torch.allclose(embeds_half, embeds_full, atol=1e-6)


def test_float32_table_is_still_shared_and_unchanged() -> None:
    table = torch.randn(300, 24)
    projector = _projector(24)
    projector.bind_llm(table)
    assert projector.token_rows.data_ptr() == table.data_ptr()
    assert torch.equal(projector.embed_mean, table.mean(dim=0))
    assert torch.equal(projector.embed_norm, table.norm(dim=1).mean())


# ------------------------------------------------------------------ on a GPU

@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_llm_and_head_on_cuda_read_like_the_cpu(tiny_llm_path: Path) -> None:
    cpu, gpu = LLM(tiny_llm_path), LLM(tiny_llm_path, device='cuda')
    assert gpu.embedding_matrix.device.type == 'cuda'
    prompt = PromptConfig()
    context, _ = cpu.prompt_parts(prompt)
    ids = cpu.tokenize('the red cup')
    assert torch.allclose(cpu.next_token_logprobs(context, ids), gpu.next_token_logprobs(context, ids), atol=1e-3)
    projector = _projector(gpu.hidden_size)
    projector.bind_llm(gpu.embedding_matrix)
    assert projector.logit_scale.device.type == 'cuda'
    ids_read, embeds = projector.read(torch.randn(12, 8))
    out = gpu.generate(gpu.build_inputs(embeds if len(ids_read) else torch.randn(2, gpu.hidden_size), prompt),
                       GenerationConfig(max_new_tokens=3))
    assert out.n_tokens <= 3


# ------------------------------------------------------------------ the embedded model

@pytest.mark.real
def test_embedded_llm_in_bfloat16_answers_with_the_same_first_tokens() -> None:
    greedy = GenerationConfig(max_new_tokens=8)
    prompt = PromptConfig()
    firsts = []
    for dtype in ('float32', 'bfloat16'):
        llm = LLM(None, dtype=dtype)
        out = llm.generate(llm.build_text_inputs('What is the capital of France?', prompt), greedy)
        firsts.append(out.token_ids[:4])
        del llm
    assert firsts[0] == firsts[1]


# ------------------------------------------------------------------ a GGUF stored in the precision it runs in

def test_gguf_is_stored_in_the_precision_it_runs_in(tiny_llm_path: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from fixtures.tiny_llm import build_tiny_gguf
    from safetensors import safe_open
    from tinyalign_ros.model_files import cache_folder_name, COMPLETE_MARKER, file_sha256, LLMError

    monkeypatch.setenv('TINYALIGN_CACHE', str(tmp_path / 'cache'))
    gguf = build_tiny_gguf(tmp_path / 'gguf', tiny_llm_path)
    full, half = LLM(gguf), LLM(gguf, dtype='bfloat16')
    sha = file_sha256(gguf)
    assert full.path.name == sha[:16] and half.path.name == f'{sha[:16]}-bfloat16'  # float32 keeps its old name
    assert half.identity == full.identity  # an adapter trained on one loads on the other
    with safe_open(str(next(half.path.glob('*.safetensors'))), framework='pt') as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {'BF16'}
    assert torch.equal(half.embedding_matrix, full.embedding_matrix.to(torch.bfloat16))  # rounded once
    assert '"dtype": "bfloat16"' in (half.path / COMPLETE_MARKER).read_text()
    with pytest.raises(LLMError, match='int8'):
        cache_folder_name(sha, 'int8')
