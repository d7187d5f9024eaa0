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

"""`tinyalign synth` and `tinyalign corpus`: the training data (synthesized speech, the assistant text corpus)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .common import print_json


def _augment_config(spec: str | None) -> Any:
    """``--augment``: 'default' (the base corpus recipe), a JSON object of settings, or a JSON file."""
    if spec is None:
        return None
    from ..augment import AugmentConfig

    if spec == 'default':
        return AugmentConfig()
    text = Path(spec).read_text(encoding='utf-8') if Path(spec).is_file() else spec
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f'--augment must be "default", a JSON object or a JSON file: {exc}') from exc
    if not isinstance(data, dict):
        raise ValueError('--augment must be a JSON object of AugmentConfig settings')
    return AugmentConfig.from_dict(data)


def cmd_synth(args: argparse.Namespace) -> int:
    from ..synth import DEFAULT_VOICES, read_sentences, synthesize_corpus

    augment_config = _augment_config(args.augment)
    if args.set:
        from ..qa import synthesize_set

        if args.text is not None:
            raise ValueError('give either --text or --set, not both')
        voices = args.voices or ['en-us+f3', 'flite:slt']
        manifest = synthesize_set(args.set, args.out, voices, split=args.split, rates=args.rates or [160],
                                  augment_config=augment_config, seed=args.seed, workers=args.workers,
                                  progress=not args.json)
        summary = {'manifest': str(manifest), 'set': args.set, 'split': args.split or 'all', 'voices': voices,
                   'rates': args.rates or [160], 'augment': args.augment, 'seed': args.seed}
        print_json(summary) if args.json else print(f'{args.set} set written: {manifest}')
        return 0
    if args.text is None:
        raise ValueError('give --text SENTENCES or --set qa|commands')
    if args.split:
        raise ValueError('--split applies to --set only')
    rates = args.rates or [140, 165, 190]
    sentences = read_sentences(args.text, max_words=args.max_words)
    voices = args.voices or list(DEFAULT_VOICES)
    out = synthesize_corpus(sentences, args.out, voices=voices, rates=rates, n=args.n, seed=args.seed,
                            max_words=args.max_words, workers=args.workers, progress=not args.json,
                            augment_config=augment_config)
    summary = {'manifest': str(Path(out) / 'manifest.jsonl') if Path(out).is_dir() else str(out),
               'voices': voices, 'rates': rates, 'augment': args.augment, 'seed': args.seed}
    print_json(summary) if args.json else print(f'corpus written: {summary["manifest"]}')
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    """Build the assistant text corpus (deterministic for a seed) and print its summary."""
    from ..corpus import build_corpus, CorpusConfig, write_llm_source

    log = (lambda _msg: None) if args.json else (lambda msg: print(msg, flush=True))
    config = CorpusConfig(seed=args.seed)
    built = Path(args.out) / 'summary.json'
    if args.llm_source and built.is_file():  # add the LLM source to the corpus already there
        summary = json.loads(built.read_text(encoding='utf-8'))
    else:
        summary = build_corpus(args.out, args.text, config, log=log)
    if args.llm_source:
        summary = write_llm_source(args.out, args.llm, seed=args.seed, top_n=args.llm_top_words, log=log)
    if args.json:
        print_json(summary)
    else:
        print(f'{summary["distinct_train_sentences"]} distinct training sentences; coverage {summary["coverage"]}')
    return 0
