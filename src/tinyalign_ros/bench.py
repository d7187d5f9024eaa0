"""Side-by-side training-cost benchmark: the LLM-free objective vs next-token CE through the LLM.

Both objectives train the *same* projector on the *same* cached encoder features with the *same*
batch, timed alternately in one process, so machine noise hits both alike; only the ratio is
meant to be read. LLM shapes of about 0.5B and 1B parameters use random weights (timing only).
"""

from __future__ import annotations

import gc
import resource
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

from .adapter import read_metadata
from .encoder import WhisperEncoder
from .llm import LLM
from .pipeline import BASE_ADAPTER
from .projector import ProjectorConfig, build_projector
from .synth import synthesize
from .train import Example, TrainConfig, ce_loss, ctc_loss, target_text

# Random-weight stand-ins for the sizes users run on robots (dimensions of public 0.5B/1B models).
SHAPES: dict[str, dict[str, Any]] = {
    '0.5b': dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    '1b': dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
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


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def random_llm(shape: str, tokenizer_llm: LLM) -> LLM:
    """An LLM object with random weights of a named shape, reusing a real tokenizer and template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if shape not in SHAPES:
        raise ValueError(f'unknown LLM shape {shape!r}; known: {sorted(SHAPES)}')
    config = LlamaConfig(**SHAPES[shape])
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    clone = object.__new__(LLM)
    clone.__dict__.update(tokenizer_llm.__dict__)
    clone.model = model
    clone.hidden_size = config.hidden_size
    return clone


def _examples(encoder: WhisperEncoder, llm: LLM) -> list[tuple[np.ndarray, Example]]:
    out = []
    for i, text in enumerate(BENCH_SENTENCES):
        audio = synthesize(text, voice='en-us', rate=170)
        feats = encoder.features(audio)
        ids = [t % llm.model.config.vocab_size for t in llm.tokenize(target_text(text))]
        out.append((feats, Example(f'bench{i}', f'bench{i}', feats.shape[0], ids, text)))
    return out


def shipped_projector_config() -> ProjectorConfig:
    """The projector design of the shipped base adapter: the one whose training cost matters."""
    return ProjectorConfig.from_dict(read_metadata(BASE_ADAPTER)['projector']['config'])


def bench_train(encoder: WhisperEncoder, llm: LLM, shape: str | None = None, batch_size: int = 8,
                repeats: int = 3, projector_config: ProjectorConfig | None = None,
                negatives: int | None = None) -> dict[str, Any]:
    """Seconds per training sample of both objectives, measured alternately; returns the ratio.

    The LLM-free side is the trainer's CTC step as configured by default (sampled head rows,
    ``negatives``); the projector is the shipped adapter's design unless one is given.
    """
    if shape is not None:
        llm = random_llm(shape, llm)
    torch.manual_seed(0)
    negatives = TrainConfig().negatives if negatives is None else negatives
    config = projector_config or shipped_projector_config()
    config.encoder_dim = encoder.d_model
    config.llm_dim = llm.hidden_size
    projector = build_projector(config)
    data = _examples(encoder, llm)
    batch = [data[i % len(data)] for i in range(batch_size)]
    n_rows = min(12000, int(llm.embedding_matrix.shape[0]))  # about the shipped head's size
    vocab = sorted({t for _, ex in data for t in ex.target_ids} | set(range(n_rows)))
    projector.bind_llm(llm.model.get_input_embeddings().weight, torch.tensor(vocab))
    vocab_index = {t: i for i, t in enumerate(vocab)}
    lengths = torch.tensor([f.shape[0] for f, _ in batch])
    x = torch.zeros(batch_size, int(lengths.max()), encoder.d_model)
    for i, (f, _) in enumerate(batch):
        x[i, : f.shape[0]] = torch.from_numpy(f)
    examples = [ex for _, ex in batch]
    optim = torch.optim.AdamW(projector.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)

    def step(objective: str) -> float:
        start = time.perf_counter()
        if objective == 'ctc':
            loss = ctc_loss(projector, x, lengths, examples, vocab_index, negatives, generator)
        else:
            loss = ce_loss(projector, x, lengths, examples, llm)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        return time.perf_counter() - start

    step('ctc')  # warm-up: first calls allocate
    step('ce')
    ctc_times, ce_times = [], []
    for _ in range(repeats):
        ctc_times.append(step('ctc'))
        ce_times.append(step('ce'))
    ctc_s = statistics.median(ctc_times) / batch_size
    ce_s = statistics.median(ce_times) / batch_size
    result = {
        'objective': 'ctc',
        'objective_per_sample_s': round(ctc_s, 5),
        'ce_per_sample_s': round(ce_s, 5),
        'ratio': round(ce_s / ctc_s, 1),
        'llm': shape or llm.name,
        'llm_params': sum(p.numel() for p in llm.model.parameters()),
        'projector_params': projector.n_parameters(),
        'projector': {'type': config.type, 'd_model': config.d_model, 'n_layers': config.n_layers},
        'negatives': negatives,
        'head_rows': len(vocab),
        'batch_size': batch_size,
        'repeats': repeats,
        'mean_frames': float(lengths.float().mean()),
        'threads': torch.get_num_threads(),
        'peak_rss_mb': round(peak_rss_mb(), 1),
    }
    gc.collect()
    return result


if __name__ == '__main__':  # pragma: no cover - convenience
    print(bench_train(WhisperEncoder(), LLM(), sys.argv[1] if len(sys.argv) > 1 else None))
