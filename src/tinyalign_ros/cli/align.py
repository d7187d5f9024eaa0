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

"""`tinyalign align`: train the base adapter from synthesized speech with the LLM-free objective."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import print_json


def cmd_align(args: argparse.Namespace) -> int:
    """
    Train the base adapter for an encoder/LLM pair from synthesized speech.

    Every default comes from the recipe file (the shipped one unless ``--recipe``); a flag given on
    the command line overrides that one value. Started by ``torchrun`` it trains data-parallel over
    the processes (``docs/distributed.md``); started plainly it is one process, as always.
    """
    import dataclasses

    from ..corpus import build_corpus, CorpusConfig, LLM_SOURCE, write_llm_source
    from ..encoder import WhisperEncoder
    from ..llm import LLM
    from ..memory import bound_heap
    from ..projector import ProjectorConfig
    from ..training.align import align, load_recipe
    from ..training.config import resolve_train_device, TrainConfig
    from ..training.distributed import from_env, shutdown

    recipe, train_dict, projector_dict = load_recipe(args.recipe)
    recipe.score_cascade = not args.no_cascade
    for flag, name in (('max_utterances', 'max_train_utterances'), ('seed', 'seed')):
        if getattr(args, flag) is not None:
            setattr(recipe, name, getattr(args, flag))
    for flag, name in (('objective', 'objective'), ('max_steps', 'max_steps'), ('batch_size', 'batch_size'),
                       ('lr', 'lr'), ('seed', 'seed'), ('eval_every', 'eval_every'), ('negatives', 'negatives'),
                       ('device', 'device'), ('dtype', 'dtype')):
        if getattr(args, flag) is not None:
            train_dict[name] = getattr(args, flag)
    if args.minutes is not None:
        train_dict['max_time_s'] = args.minutes * 60.0
    for flag, name in (('projector', 'type'), ('reduction', 'reduction'), ('d_model', 'd_model'),
                       ('layers', 'n_layers'), ('heads', 'n_heads'), ('ff_dim', 'ff_dim')):
        if getattr(args, flag) is not None:
            projector_dict[name] = getattr(args, flag)

    train_config = TrainConfig.from_dict(train_dict)
    # Under torchrun this joins the process group (WORLD_SIZE is set); otherwise it does nothing.
    dist = from_env(train_config.device)
    finished = False
    try:
        resolve_train_device(train_config.device, dist.local_rank)  # refuse a missing GPU before loading models
        bound_heap()  # a long run of differently sized batches: keep the heap from creeping up
        work = Path(args.work_dir)
        text_dir = work / 'corpus' / 'text'
        if dist.is_main and recipe.mix.get(LLM_SOURCE, 0) > 0 and not (text_dir / f'{LLM_SOURCE}.train.txt').is_file():
            # Written by the whole LLM, which training (embeddings only) does not load.
            if not (text_dir / 'summary.json').is_file():
                build_corpus(text_dir, Path(args.text), CorpusConfig(seed=recipe.seed))
            write_llm_source(text_dir, args.llm, seed=recipe.seed, threads=args.threads)
        encoder = WhisperEncoder(args.whisper, cache_dir=work / 'features')
        # The LLM-free objectives need only the tokenizer and the embedding table (most of the memory
        # saved); the conventional one runs the whole LLM.
        llm = LLM(args.llm, threads=args.threads, embeddings_only=train_config.objective != 'ce')
        projector_config = ProjectorConfig.from_dict({**projector_dict, 'encoder_dim': encoder.d_model,
                                                      'llm_dim': llm.hidden_size})
        log = (lambda _msg: None) if args.json else (lambda msg: print(msg, flush=True))
        meta = align(Path(args.text), work, Path(args.out), encoder, llm, recipe, train_config, projector_config,
                     real_data=Path(args.real) if args.real else None, log=log, progress=not args.json,
                     init=args.init, dist=dist)
        finished = True
    finally:
        shutdown(dist, finished)
    if not dist.is_main:
        return 0  # rank 0 reports for the whole run
    summary = {'adapter': str(args.out), 'metrics': meta['metrics'], 'seconds': meta['seconds'],
               'recipe': dataclasses.asdict(recipe), 'train': meta['training']['config'],
               'world_size': meta['training']['world_size']}
    if args.json:
        print_json(summary)
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    """Average adapters of one lineage into a new adapter (:func:`adapter.average_adapters`)."""
    from ..adapter import AdapterError, average_adapters, save_adapter

    try:
        projector, meta = average_adapters(list(args.adapters), args.weights)
    except AdapterError as exc:
        print(f'error: {exc}')
        return 2
    save_adapter(args.out, projector, meta)
    print_json({'out': str(args.out), 'averaged_from': meta['averaged_from']})
    return 0
