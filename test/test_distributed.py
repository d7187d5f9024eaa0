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
Distributed training (torch.distributed, gloo on the CPU) against one process, and the device settings.

A synthetic task keeps it fast and model-free: random feature arrays in a real feature cache, random
token ids, a small random embedding table. The same global batches trained by two processes and by
one must give the same projector, up to float reduction order: DDP sums the two ranks' gradients
(each a mean over its half of the batch) where one process sums over the whole batch at once, so
the weights differ in the last bits, and AdamW's division by sqrt(v) keeps that at float32
rounding scale. The tolerance (1e-5 absolute on weights of order 0.1) is a hundred times the
differences observed and ten thousand times below what one wrong step would change.
"""

from __future__ import annotations

from dataclasses import asdict
import json
import os
from pathlib import Path
import socket
from typing import Any

import numpy as np
import pytest
from tinyalign_ros.adapter import read_metadata, save_adapter
from tinyalign_ros.encoder import FeatureCache
from tinyalign_ros.projector import build_projector, Projector, ProjectorConfig
from tinyalign_ros.training.config import resolve_train_device, resolve_train_dtype, TrainConfig, TrainError
from tinyalign_ros.training.distributed import Dist, from_env, shutdown
from tinyalign_ros.training.examples import Example
from tinyalign_ros.training.trainer import summarize, train
import torch
import torch.multiprocessing as mp

N_VOCAB = 120
ENCODER_DIM = 12
LLM_DIM = 8
N_EXAMPLES = 14  # 3 batches of 4 and one of 2 per epoch: the short batch is split too
TOLERANCE = 1e-5


class _Tokenizer:
    pad_token_id = 0

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return ' '.join(f't{i}' for i in ids)


class _LLM:
    """What the LLM-free objectives read from an LLM: its tokenizer (and each token's text), its embedding table."""

    def __init__(self) -> None:
        self.tokenizer = _Tokenizer()
        self.embedding_matrix = torch.randn(N_VOCAB, LLM_DIM, generator=torch.Generator().manual_seed(1))
        self.model = None
        self.piece_texts = [f' t{i}' for i in range(N_VOCAB)]  # every token a word of its own, as decode spells it


class _Encoder:
    def __init__(self, folder: Path) -> None:
        self.cache = FeatureCache(folder)


def _examples(folder: Path) -> list[Example]:
    """Write random features for each example into the cache (once) and describe them."""
    rng = np.random.default_rng(0)
    cache = FeatureCache(folder)
    examples = []
    for i in range(N_EXAMPLES):
        n_frames = int(rng.integers(16, 48))
        key = f'utterance{i:04d}'
        if cache.get(key) is None:
            cache.put(key, rng.standard_normal((n_frames, ENCODER_DIM)).astype(np.float32))
        else:
            rng.standard_normal((n_frames, ENCODER_DIM))
        ids = [int(t) for t in rng.integers(1, N_VOCAB, size=int(rng.integers(1, 4)))]
        examples.append(Example(f'u{i}', key, n_frames, ids, ' '.join(f't{t}' for t in ids)))
    return examples


def _projector(llm: _LLM) -> Projector:
    torch.manual_seed(0)
    projector = build_projector(ProjectorConfig(type='bridgeformer', encoder_dim=ENCODER_DIM, llm_dim=LLM_DIM,
                                                d_model=16, n_layers=1, n_heads=2, ff_dim=32, dropout=0.0))
    projector.bind_llm(llm.embedding_matrix, torch.arange(N_VOCAB))
    return projector


def _config(**changes: Any) -> TrainConfig:
    # schedule_by_time=False: the learning rate must not depend on how fast each run happens to go.
    base = {'objective': 'ctc', 'lr': 3e-3, 'warmup_steps': 2, 'max_steps': 8, 'batch_size': 4, 'val_items': 0,
            'eval_every': 4, 'time_mask': 0, 'feature_dropout': 0.0, 'negatives': 24, 'hard_negatives': 2, 'seed': 0,
            'schedule_by_time': False}
    base.update(changes)
    return TrainConfig(**base)


def _run(folder: Path, out: Path, config: TrainConfig, dist: Dist, validate: bool) -> None:
    """Train on the synthetic task; every file a rank writes goes under ``out`` / its rank."""
    torch.set_num_threads(1)
    llm = _LLM()
    encoder = _Encoder(folder / 'features')
    examples = _examples(folder / 'features')
    projector = _projector(llm)
    mine = out / f'rank{dist.rank}'
    result = train(projector, examples, encoder, llm, config, val_examples=examples[:3] if validate else [],
                   checkpoint_dir=mine / 'checkpoint', dist=dist)
    # What the recipe does after training: rank 0 alone writes the adapter.
    if dist.is_main:
        save_adapter(mine / 'adapter', result.projector, {'training': summarize(result, config)})
    # Test bookkeeping, outside the rank's folder: the final weights of every rank.
    torch.save({k: v.clone() for k, v in result.projector.state_dict().items()}, out / f'weights{dist.rank}.pt')
    (out / f'result{dist.rank}.json').write_text(json.dumps({'steps': result.steps, 'history': result.history}))


def _worker(rank: int, world: int, port: int, folder: str, out: str, jobs: dict[str, tuple[dict[str, Any], bool]]
            ) -> None:
    """One rank: join the group as under torchrun, then run each job (name: (config, validate)) in turn."""
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=str(port))
    dist = from_env('cpu', timeout_s=120.0)
    finished = False
    try:
        for name, (config, validate) in jobs.items():
            (Path(out) / name).mkdir(parents=True, exist_ok=True)
            _run(Path(folder), Path(out) / name, TrainConfig(**config), dist, validate)
        finished = True
    finally:
        shutdown(dist, finished)
    # Every result is on disk: leave without interpreter finalization, where torch's gloo threads
    # have aborted a finished rank (rarely, under load) after the group was already destroyed.
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


EQUIVALENCE = _config()
EARLY_STOP = _config(max_steps=6, eval_every=2, patience=1)
# An objective that leaves parameters without gradients (the token head's blank and temperature):
# DDP must be told, or its all-reduce waits for them and the second step fails.
SLOTS = _config(objective='slots', max_steps=3)


@pytest.fixture(scope='module')
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    Run the distributed jobs once, in one 2-process gloo group (process start-up is most of the cost).

    ``equivalence`` trains without validation; ``early_stop`` validates every 2 steps with a patience
    of 1; ``slots`` trains an objective that does not score the token head.
    """
    folder = tmp_path_factory.mktemp('ddp')
    _examples(folder / 'features')  # written once, before the ranks start: they only read
    jobs = {'equivalence': (asdict(EQUIVALENCE), False), 'early_stop': (asdict(EARLY_STOP), True),
            'slots': (asdict(SLOTS), False)}
    mp.spawn(_worker, args=(2, _free_port(), str(folder), str(folder / 'out'), jobs), nprocs=2, join=True)
    return folder


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], skip_key_bias: bool = False) -> float:
    """
    Return the largest absolute difference between two state dicts' float tensors.

    ``skip_key_bias`` leaves out the attention's key bias: softmax ignores a constant added to every
    key score, so its gradient is zero up to rounding noise, and AdamW (which divides by the
    gradient's own scale) turns that noise into full learning-rate steps of either sign. Two
    correct runs differ there by up to the learning rate; nothing else in the projector behaves so.
    """
    diffs = []
    for k in a:
        if not a[k].is_floating_point():
            continue
        x, y = a[k].float(), b[k].float()
        if skip_key_bias and k.endswith('self_attn.in_proj_bias'):
            width = x.shape[0] // 3  # [query | key | value]
            x, y = torch.cat([x[:width], x[2 * width:]]), torch.cat([y[:width], y[2 * width:]])
        diffs.append(float((x - y).abs().max()))
    return max(diffs)


def test_two_processes_train_the_same_projector_as_one(two_processes: Path, tmp_path: Path) -> None:
    config = EQUIVALENCE
    one = tmp_path / 'one'
    one.mkdir()
    _run(two_processes, one, config, Dist(), validate=False)
    two = two_processes / 'out' / 'equivalence'
    single = torch.load(one / 'weights0.pt')
    rank0, rank1 = torch.load(two / 'weights0.pt'), torch.load(two / 'weights1.pt')
    start = _projector(_LLM()).state_dict()
    moved = _max_diff(single, start)
    diff = _max_diff(single, rank0, skip_key_bias=True)
    print(f'max |w_1proc - w_2proc| = {diff:.3g} after {config.max_steps} steps (weights moved by up to {moved:.3g}; '
          f'attention key bias, noise-driven: {_max_diff(single, rank0):.3g})')
    assert moved > 1e-2  # the run trained: the comparison is not between two untouched projectors
    assert diff < TOLERANCE
    assert _max_diff(rank0, rank1) == 0.0  # DDP keeps the replicas identical
    assert json.loads((two / 'result0.json').read_text())['steps'] == config.max_steps
    assert json.loads((two / 'result1.json').read_text())['steps'] == config.max_steps


def test_only_rank_zero_writes_and_the_adapter_records_the_world_size(two_processes: Path) -> None:
    two = two_processes / 'out' / 'early_stop'
    assert not (two / 'rank1').exists()  # no checkpoint, no adapter, nothing
    meta = read_metadata(two / 'rank0' / 'adapter')
    assert meta['training']['world_size'] == 2 and meta['training']['per_rank_batch'] == 2
    assert (two / 'rank0' / 'checkpoint' / 'adapter.json').is_file()
    # rank 0's early-stopping verdict reached rank 1: both stopped at the same step, before max_steps
    steps = [json.loads((two / f'result{r}.json').read_text())['steps'] for r in (0, 1)]
    history = json.loads((two / 'result0.json').read_text())['history']
    assert steps[0] == steps[1] == history[-1]['step']
    assert json.loads((two / 'result1.json').read_text())['history'] == []  # rank 1 never validated


def test_one_process_records_world_size_one(tmp_path: Path) -> None:
    one = tmp_path / 'one'
    one.mkdir()
    _run(tmp_path, one, _config(max_steps=2), Dist(), validate=False)
    meta = read_metadata(one / 'rank0' / 'adapter')
    assert meta['training']['world_size'] == 1 and meta['training']['per_rank_batch'] == 4


def test_without_torchrun_there_is_no_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv('WORLD_SIZE', raising=False)
    context = from_env('cpu')
    assert context == Dist() and not context.enabled and context.is_main
    assert not torch.distributed.is_initialized()
    assert [Dist(rank=r, world_size=3).shard(7) for r in range(3)] == [slice(0, 3), slice(3, 5), slice(5, 7)]


def test_a_finished_rank_waits_for_its_peers_before_leaving_and_a_failed_one_leaves_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed as torch_dist

    calls: list[str] = []
    monkeypatch.setattr(torch_dist, 'is_initialized', lambda: True)
    monkeypatch.setattr(torch_dist, 'barrier', lambda: calls.append('barrier'))
    monkeypatch.setattr(torch_dist, 'destroy_process_group', lambda: calls.append('destroy'))
    two = Dist(rank=1, world_size=2, backend='gloo')
    shutdown(two)
    assert calls == ['barrier', 'destroy']
    calls.clear()
    shutdown(two, finished=False)  # its peers may be in another collective: no barrier to wait out
    assert calls == ['destroy']

    def lost_peer() -> None:
        raise RuntimeError('connection closed by peer')

    calls.clear()
    monkeypatch.setattr(torch_dist, 'barrier', lost_peer)
    with pytest.raises(RuntimeError, match='closed by peer'):
        shutdown(two)
    assert calls == ['destroy']  # the group is left even when the barrier fails
    calls.clear()
    shutdown(Dist())  # one process: nothing to leave
    assert calls == []


def test_device_and_dtype_settings() -> None:
    assert TrainConfig().device == 'cpu' and TrainConfig().dtype == 'float32'
    assert resolve_train_device('cpu') == torch.device('cpu')
    assert resolve_train_dtype('float32', torch.device('cpu')) == torch.float32
    assert resolve_train_dtype('bfloat16', torch.device('cpu')) == torch.bfloat16
    with pytest.raises(TrainError, match='float16 needs a CUDA'):
        resolve_train_dtype('float16', torch.device('cpu'))
    with pytest.raises(TrainError, match='device must be one of'):
        TrainConfig(device='tpu')
    with pytest.raises(TrainError, match='dtype must be one of'):
        TrainConfig.from_dict({'dtype': 'fp8'})
    if torch.cuda.is_available():
        assert resolve_train_device('auto').type == 'cuda'
    else:
        assert resolve_train_device('auto') == torch.device('cpu')
        with pytest.raises(TrainError, match='no CUDA GPU'):
            resolve_train_device('cuda')


def test_bfloat16_autocast_trains_on_the_cpu(tmp_path: Path) -> None:
    one = tmp_path / 'one'
    one.mkdir()
    _run(tmp_path, one, _config(max_steps=3, dtype='bfloat16'), Dist(), validate=False)
    weights = torch.load(one / 'weights0.pt')
    assert all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16', 'float16'])
def test_cuda_training_matches_the_cpu(tmp_path: Path, dtype: str) -> None:
    """On a GPU: the projector comes back on the CPU, and float32 lands near the CPU run's weights."""
    cpu, gpu = tmp_path / 'cpu', tmp_path / 'gpu'
    cpu.mkdir()
    gpu.mkdir()
    _run(tmp_path, cpu, _config(max_steps=4), Dist(), validate=True)
    _run(tmp_path, gpu, _config(max_steps=4, device='cuda', dtype=dtype), Dist(), validate=True)
    on_gpu = torch.load(gpu / 'weights0.pt')
    assert all(v.device.type == 'cpu' for v in on_gpu.values())
    if dtype == 'float32':  # TF32 matmuls and other kernels: close, not bit-for-bit
        assert _max_diff(torch.load(cpu / 'weights0.pt'), on_gpu) < 1e-3


def test_an_objective_that_leaves_parameters_unused_trains_distributed(two_processes: Path) -> None:
    one = two_processes / 'out' / 'slots'
    start = _projector(_LLM()).state_dict()
    rank0, rank1 = torch.load(one / 'weights0.pt'), torch.load(one / 'weights1.pt')
    assert json.loads((one / 'result0.json').read_text())['steps'] == SLOTS.max_steps
    assert _max_diff(rank0, rank1) == 0.0 and _max_diff(rank0, start) > 0.0
    assert torch.equal(rank0['blank.weight'], start['blank.weight'])  # untouched, and no hang waiting for it
