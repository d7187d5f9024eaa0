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

"""The base-adapter recipe: synthesize a corpus, cache its features, train, evaluate, write the adapter.

``tinyalign align`` runs this end to end; the adapter shipped in ``assets/base_adapter`` is its
output for the embedded model pair. Every choice that shapes the result is an argument with the
shipped value as default, and all of it goes into the adapter's metadata, so the run can be repeated.

Held-out synthetic speech uses sentences *and* voices that are never trained on (the sentence split
is seeded; the voices are :data:`tinyalign_ros.synth.HELDOUT_VOICES`).
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .adapter import load_adapter, save_adapter
from .data import Item, load_dataset
from .encoder import WhisperEncoder
from .evaluate import evaluate
from .llm import LLM
from .projector import ProjectorConfig
from .synth import DEFAULT_VOICES, HELDOUT_VOICES, read_sentences, synthesize_corpus
from .train import Progress, TrainConfig, build_vocab, encode_examples, index_examples, new_projector, summarize, train


@dataclass
class AlignRecipe:
    """The knobs of the base-adapter run (defaults = the shipped adapter)."""

    max_words: int = 25
    min_words: int = 3
    n_test_sentences: int = 200
    n_train: int | None = None  # None: every remaining sentence once
    max_train_utterances: int | None = None  # use only the first N synthesized utterances
    train_rates: list[int] = field(default_factory=lambda: [130, 155, 180, 205])
    train_pitches: list[int] = field(default_factory=lambda: [35, 50, 65])
    test_rates: list[int] = field(default_factory=lambda: [150, 175])
    test_pitches: list[int] = field(default_factory=lambda: [45, 55])
    seed: int = 0
    n_eval: int = 100  # held-out synthetic utterances scored at the end
    score_cascade: bool = True  # also transcribe them with Whisper (the reference; slow, and the same every run)


def split_sentences(sentences: list[str], n_test: int, seed: int) -> tuple[list[str], list[str]]:
    """(train, test) sentences; the test ones are never synthesized for training."""
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    test = [sentences[i] for i in order[:n_test]]
    train_ = [sentences[i] for i in order[n_test:]]
    return train_, test


def build_corpora(text: Path, work_dir: Path, recipe: AlignRecipe, workers: int = 2,
                  progress: bool = True) -> tuple[Path, Path]:
    """Synthesize (or reuse) the training and held-out corpora; returns their manifests."""
    sentences = read_sentences(text, max_words=recipe.max_words, min_words=recipe.min_words)
    train_sents, test_sents = split_sentences(sentences, recipe.n_test_sentences, recipe.seed)
    test_manifest = synthesize_corpus(test_sents, work_dir / 'test', list(HELDOUT_VOICES), rates=recipe.test_rates,
                                      pitches=recipe.test_pitches, seed=recipe.seed + 1, workers=workers,
                                      progress=progress)
    train_manifest = synthesize_corpus(train_sents, work_dir / 'train', list(DEFAULT_VOICES),
                                       rates=recipe.train_rates, pitches=recipe.train_pitches, n=recipe.n_train,
                                       seed=recipe.seed, workers=workers, progress=progress)
    return Path(train_manifest), Path(test_manifest)


def align(text: Path, work_dir: Path, out: Path, encoder: WhisperEncoder, llm: LLM,
          recipe: AlignRecipe | None = None, train_config: TrainConfig | None = None,
          projector_config: ProjectorConfig | None = None, real_data: Path | None = None,
          log: Callable[[str], None] = print, progress: bool = True, init: Path | None = None) -> dict[str, Any]:
    """Run the whole recipe and write the adapter to ``out``; returns its metadata.

    ``init`` continues from an existing adapter (its projector config wins over
    ``projector_config``); its token vocabulary is extended with the corpus' tokens.
    """
    recipe = recipe or AlignRecipe()
    train_config = train_config or TrainConfig()
    start = time.perf_counter()
    train_manifest, test_manifest = build_corpora(text, work_dir / 'corpus', recipe, progress=progress)
    t_synth = time.perf_counter() - start
    train_items = load_dataset(train_manifest)[: recipe.max_train_utterances]
    test_items = load_dataset(test_manifest)[: recipe.n_eval]
    log(f'corpus: {len(train_items)} training utterances, {len(test_items)} held-out ({t_synth:.0f} s)')

    examples = index_examples(train_items, encoder, llm)
    # Encode in a background thread; training starts on the first cached batches and each epoch
    # takes in whatever has been encoded since (the validation items come first in the manifest).
    stop = threading.Event()
    t_feats: dict[str, float] = {}

    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(threads - 1)  # leave a core to the encoder while it runs

    def encode_all() -> None:
        encode_examples(train_items, examples, encoder, _bar('encoding', len(train_items), progress), stop=stop)
        t_feats['done'] = time.perf_counter() - start - t_synth

    encoder_thread = threading.Thread(target=encode_all, name='encode', daemon=True)
    encoder_thread.start()

    vocab = build_vocab(examples)
    if init is not None:
        projector, init_meta = load_adapter(init, encoder.identity, llm.identity)
        vocab = build_vocab(examples, projector.vocab_ids.tolist())
        projector.bind_llm(llm.embedding_matrix, vocab)
        log(f'continuing from adapter {init_meta.get("adapter_id", init)}')
    else:
        projector = new_projector(encoder, llm, vocab, projector_config)
    log(f'projector {projector.config.type}: {projector.n_parameters() / 1e6:.2f} M parameters, '
        f'token head over {len(vocab)} training tokens')
    meta_base = {'encoder': encoder.identity, 'llm': llm.identity}
    train_log = _train_log(log)

    def on_progress(p: Progress) -> None:
        # torch's thread count is per calling thread, so the core is handed back from here (the
        # training thread) once the encoder is done.
        if not encoder_thread.is_alive() and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        train_log(p)

    try:
        result = train(projector, examples, encoder, llm, train_config, progress=on_progress,
                       checkpoint_dir=out.with_name(out.name + '.checkpoint'), checkpoint_meta=meta_base)
    finally:
        stop.set()
        encoder_thread.join()
        torch.set_num_threads(threads)
    log(f'trained {result.steps} steps in {result.seconds:.0f} s ({result.stopped_by}); '
        f'best validation WER {result.best_val_wer}')

    metrics: dict[str, Any] = {}
    readings = ('nearest', 'cascade') if recipe.score_cascade else ('nearest',)
    held = evaluate(test_items, encoder, llm, projector, readings)
    metrics['heldout_synthetic'] = held.to_dict()
    log(f'held-out synthetic: {json.dumps(metrics["heldout_synthetic"])}')
    if real_data is not None:
        real = evaluate(load_dataset(real_data), encoder, llm, projector, readings)
        metrics['real'] = real.to_dict()
        log(f'real recordings: {json.dumps(metrics["real"])}')
    meta = {
        **meta_base,
        'adapter_id': out.name,
        'initialized_from': str(init) if init is not None else None,
        'training': summarize(result, train_config),
        'data': {'corpus': 'espeak-ng synthesis of ljspeech_sentences.txt', 'n_train_utterances': len(examples),
                 'voices': list(DEFAULT_VOICES), 'heldout_voices': list(HELDOUT_VOICES), 'recipe': asdict(recipe)},
        'metrics': metrics,
        'seconds': {'synthesis': round(t_synth, 1), 'features': round(t_feats.get('done', -1.0), 1),
                    'training': round(result.seconds, 1), 'total': round(time.perf_counter() - start, 1)},
    }
    save_adapter(out, projector, meta)
    return meta


def _bar(desc: str, total: int, enabled: bool) -> Callable[[int, int], None]:
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, disable=not enabled, leave=False)

    def update(done: int, _total: int) -> None:
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def _train_log(log: Callable[[str], None]) -> Callable[[Progress], None]:
    def report(p: Progress) -> None:
        if p.phase == 'evaluating' or p.step % 200 == 0:
            eta = f', eta {p.eta_s:.0f} s' if p.eta_s is not None else ''
            loss = f'{p.loss:.3f}' if p.loss is not None else '-'
            log(f'step {p.step}/{p.max_steps} loss {loss}{eta} {p.message}'.rstrip())

    return report


__all__ = ['AlignRecipe', 'align', 'build_corpora', 'split_sentences', 'Item']
