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
Side-by-side training-cost benchmark: the LLM-free objective vs next-token CE through the LLM.

Both objectives train the *same* projector on the *same* cached encoder features with the *same*
batch, timed alternately in one process, so machine noise hits both alike; only the ratio is
meant to be read. LLM shapes of about 0.5B and 1B parameters use random weights (timing only).

The inputs (encoder features, target ids, prompt ids) can be saved to a file and timed elsewhere,
e.g. on a GPU machine that has neither Whisper nor espeak-ng::

    python -m tinyalign_ros.training.bench --save-inputs bench_inputs.npz          # here
    python -m tinyalign_ros.training.bench --inputs bench_inputs.npz --shape 1b --device cuda   # there
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import gc
import json
from pathlib import Path
import statistics
import time
from typing import Any, Sequence

import numpy as np
import torch

from .config import TrainConfig
from .examples import Example, target_text
from .objectives import ce_loss, ctc_loss
from .trainer import make_optimizer
from ..adapter import read_metadata
from ..evaluate import REPEAT_PROMPT
from ..memory import peak_rss_mb
from ..pipeline import BASE_ADAPTER
from ..projector import build_projector, ProjectorConfig

# Random-weight stand-ins: the embedded LLM's own shape (for machines without its weights) and the
# sizes users run on robots (dimensions of public 0.5B/1B models).
SHAPES: dict[str, dict[str, Any]] = {
    '135m': {'hidden_size': 576, 'intermediate_size': 1536, 'num_hidden_layers': 30, 'num_attention_heads': 9,
             'num_key_value_heads': 3, 'vocab_size': 49152, 'tie_word_embeddings': True},
    '0.5b': {'hidden_size': 896, 'intermediate_size': 4864, 'num_hidden_layers': 24, 'num_attention_heads': 14,
             'num_key_value_heads': 2, 'vocab_size': 151936, 'tie_word_embeddings': True},
    '1b': {'hidden_size': 2048, 'intermediate_size': 8192, 'num_hidden_layers': 16, 'num_attention_heads': 32,
           'num_key_value_heads': 8, 'vocab_size': 128256, 'tie_word_embeddings': True},
}

BENCH_SENTENCES = (
    'Turn left at the next corner and stop by the door.',
    'What is the weather like in the garden this afternoon?',
    'Please bring me the red cup from the kitchen table.',
    'How far is it from here to the charging station?',
    'The printer in the office has run out of paper again.',
    'Remind me to call the workshop at four o clock.',
    'Can you tell me what time the next train leaves?',
    'Move slowly, there are people standing in the hallway.',
)


@dataclass
class BenchInputs:
    """What both objectives consume: features with their targets, and the prompt around the audio."""

    features: list[np.ndarray]
    target_ids: list[list[int]]
    before: list[int]
    after: list[int]

    def save(self, path: str | Path) -> None:
        arrays = {f'feat{i}': f for i, f in enumerate(self.features)}
        arrays.update({f'ids{i}': np.asarray(t, dtype=np.int64) for i, t in enumerate(self.target_ids)})
        np.savez_compressed(path, before=np.asarray(self.before, dtype=np.int64),
                            after=np.asarray(self.after, dtype=np.int64), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> BenchInputs:
        with np.load(path) as data:
            n = sum(1 for key in data.files if key.startswith('feat'))
            return cls([data[f'feat{i}'] for i in range(n)], [data[f'ids{i}'].tolist() for i in range(n)],
                       data['before'].tolist(), data['after'].tolist())


@dataclass
class FrozenLM:
    """The part of :class:`tinyalign_ros.llm.LLM` that the CE objective uses, around any model."""

    model: Any
    before: list[int]
    after: list[int]

    @property
    def embedding_matrix(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight

    def prompt_parts(self, _prompt: Any) -> tuple[list[int], list[int]]:
        return self.before, self.after

    def require_model(self) -> Any:
        return self.model


def make_inputs(encoder: Any, llm: Any) -> BenchInputs:
    """Synthesize the bench sentences, encode them and tokenize their transcripts (needs espeak-ng)."""
    from ..synth import synthesize

    features, ids = [], []
    for text in BENCH_SENTENCES:
        features.append(encoder.features(synthesize(text, voice='en-us', rate=170)))
        ids.append(llm.tokenize(target_text(text)))
    before, after = llm.prompt_parts(REPEAT_PROMPT)
    return BenchInputs(features, ids, list(before), list(after))


def random_model(shape: str) -> Any:
    """Build a Llama-architecture causal LM with random weights of a named shape (timing only)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if shape not in SHAPES:
        raise ValueError(f'unknown LLM shape {shape!r}; known: {sorted(SHAPES)}')
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**SHAPES[shape]))


def shipped_projector_config() -> ProjectorConfig:
    """Return the projector design of the shipped base adapter: the one whose training cost matters."""
    return ProjectorConfig.from_dict(read_metadata(BASE_ADAPTER)['projector']['config'])


def time_objectives(model: Any, inputs: BenchInputs, name: str, batch_size: int = 8, repeats: int = 3,
                    projector_config: ProjectorConfig | None = None, negatives: int | None = None,
                    device: str = 'cpu', autocast: bool = False) -> dict[str, Any]:
    """
    Seconds per training sample of both objectives, measured alternately; returns the ratio.

    The LLM-free side is the trainer's CTC step as configured by default (sampled head rows,
    ``negatives``); the projector is the shipped adapter's design unless one is given.
    ``autocast`` runs both sides under bfloat16 autocast (GPUs).
    """
    model = model.to(device).eval()
    model.requires_grad_(False)
    vocab_size = int(model.get_input_embeddings().weight.shape[0])
    lm = FrozenLM(model, [t % vocab_size for t in inputs.before], [t % vocab_size for t in inputs.after])
    torch.manual_seed(0)
    negatives = TrainConfig().negatives if negatives is None else negatives
    config = projector_config or shipped_projector_config()
    config.encoder_dim = int(inputs.features[0].shape[1])
    config.llm_dim = int(lm.embedding_matrix.shape[1])
    projector = build_projector(config)
    data = [(f, Example(f'bench{i}', f'bench{i}', f.shape[0], [t % vocab_size for t in ids], ''))
            for i, (f, ids) in enumerate(zip(inputs.features, inputs.target_ids))]
    batch = [data[i % len(data)] for i in range(batch_size)]
    n_rows = min(12000, vocab_size)  # about the shipped head's size
    vocab = sorted({t for _, ex in data for t in ex.target_ids} | set(range(n_rows)))
    projector.bind_llm(lm.embedding_matrix, torch.tensor(vocab))
    projector.to(device)
    vocab_index = {t: i for i, t in enumerate(vocab)}
    lengths = torch.tensor([f.shape[0] for f, _ in batch])
    x = torch.zeros(batch_size, int(lengths.max()), config.encoder_dim)
    for i, (f, _) in enumerate(batch):
        x[i, : f.shape[0]] = torch.from_numpy(f)
    x = x.to(device)
    examples = [ex for _, ex in batch]
    optim = make_optimizer(projector.parameters(), 1e-4, TrainConfig().weight_decay)
    generator = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)

    def step(objective: str) -> float:
        sync()
        start = time.perf_counter()
        with torch.autocast(device_type=device.split(':')[0], dtype=torch.bfloat16, enabled=autocast):
            if objective == 'ctc':
                loss = ctc_loss(projector, x, lengths, examples, vocab_index, negatives, generator)
            else:
                loss = ce_loss(projector, x, lengths, examples, lm)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sync()
        return time.perf_counter() - start

    for _ in range(2 if device != 'cpu' else 1):  # warm-up: first calls allocate (and compile kernels)
        step('ctc')
        step('ce')
    ctc_times, ce_times = [], []
    for _ in range(repeats):
        ctc_times.append(step('ctc'))
        ce_times.append(step('ce'))
    ctc_s = statistics.median(ctc_times) / batch_size
    ce_s = statistics.median(ce_times) / batch_size
    result = {
        'objective': 'ctc',
        'objective_per_sample_s': round(ctc_s, 6),
        'ce_per_sample_s': round(ce_s, 6),
        'ratio': round(ce_s / ctc_s, 1),
        'llm': name,
        'llm_params': sum(p.numel() for p in model.parameters()),
        'projector_params': projector.n_parameters(),
        'projector': {'type': config.type, 'd_model': config.d_model, 'n_layers': config.n_layers},
        'negatives': negatives,
        'head_rows': len(vocab),
        'batch_size': batch_size,
        'repeats': repeats,
        'mean_frames': float(lengths.float().mean()),
        'device': device if device == 'cpu' else torch.cuda.get_device_name(device),
        'autocast_bf16': autocast,
        'threads': torch.get_num_threads(),
        'peak_rss_mb': round(peak_rss_mb(), 1),
    }
    if device.startswith('cuda'):
        result['peak_gpu_mb'] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
    gc.collect()
    return result


def bench_train(encoder: Any, llm: Any, shape: str | None = None, batch_size: int = 8, repeats: int = 3,
                projector_config: ProjectorConfig | None = None, negatives: int | None = None) -> dict[str, Any]:
    """``tinyalign bench-train``: the embedded (or given) LLM, or a random-weight shape, on this CPU."""
    inputs = make_inputs(encoder, llm)
    model = random_model(shape) if shape is not None else llm.require_model()
    return time_objectives(model, inputs, shape or llm.name, batch_size, repeats, projector_config, negatives)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='training-cost ratio from saved inputs (any device)')
    parser.add_argument('--save-inputs', type=Path, help='write the bench inputs here (needs Whisper, espeak-ng)')
    parser.add_argument('--inputs', type=Path, help='time from these saved inputs')
    parser.add_argument('--shape', nargs='+', default=['135m'], choices=sorted(SHAPES))
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--autocast', action='store_true', help='bfloat16 autocast on both sides')
    args = parser.parse_args(argv)
    if args.save_inputs:
        from ..encoder import WhisperEncoder
        from ..llm import LLM

        make_inputs(WhisperEncoder(), LLM(embeddings_only=True)).save(args.save_inputs)
        return 0
    if not args.inputs:
        parser.error('give --inputs (or --save-inputs)')
    inputs = BenchInputs.load(args.inputs)
    for shape in args.shape:
        print(json.dumps(time_objectives(random_model(shape), inputs, shape, args.batch_size, args.repeats,
                                         device=args.device, autocast=args.autocast)), flush=True)
    return 0


if __name__ == '__main__':  # pragma: no cover
    raise SystemExit(main())
