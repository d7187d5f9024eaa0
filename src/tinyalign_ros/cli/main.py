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
The `tinyalign` command: the engine without ROS.

This module holds the parser and dispatch; each command group lives in its own module of this
package. Every sub-command prints a human summary by default and one JSON object with ``--json``
(for scripts and benchmarks). Errors print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
import sys
from typing import Sequence

from .align import cmd_align, cmd_average
from .bench import cmd_bench_train
from .common import DEFAULT_DATA, generation_args, model_args
from .data import cmd_corpus, cmd_synth
from .demo import cmd_demo, DEMO_VOICE
from .evaluate import cmd_evaluate
from .personalize import cmd_adapters, cmd_personalize
from .respond import cmd_respond
from ..device import DTYPES
from ..personalization.config import METHODS, PersonalizeConfig


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format='%(levelname)s %(name)s: %(message)s')
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as exc:
        if args.verbose:
            raise
        print(f'tinyalign {args.command}: error: {exc}', file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='tinyalign', description=__doc__.strip().splitlines()[0])
    parser.add_argument('-v', '--verbose', action='store_true')
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('respond', help='answer one audio file')
    p.add_argument('audio', type=Path)
    p.add_argument('--cascade', action='store_true', help='transcribe with Whisper, then ask the LLM')
    generation_args(p)
    p.add_argument('--instruction')
    p.add_argument('--json', action='store_true')
    model_args(p)
    p.set_defaults(func=cmd_respond)

    p = sub.add_parser('evaluate', help='WER/NLL of the aligned path and the cascade, or spoken QA accuracy')
    p.add_argument('--data', type=Path, required=True, help='manifest.jsonl or LJ-Speech-style folder')
    p.add_argument('--task', choices=['wer', 'qa'], default='wer',
                   help='wer: transcription readings (default); qa: answer accuracy of text, cascade and '
                        'aligned on a QA manifest (`tinyalign synth --set qa`)')
    p.add_argument('--ids', nargs='+')
    p.add_argument('--split', choices=['dev', 'test'], help='only the items of this split (set manifests)')
    p.add_argument('--limit', type=int)
    p.add_argument('--readings', nargs='+',
                   help='wer task: subset of nearest fused repeat repeat_text cascade nll (nll_audio or nll_text: '
                        'one of its two halves)')
    p.add_argument('--paths', nargs='+', choices=['text', 'cascade', 'aligned'], help='qa task: paths to ask')
    p.add_argument('--details', action='store_true', help='include per-utterance outputs in the JSON')
    p.add_argument('--json', action='store_true')
    generation_args(p)
    model_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser('synth', help='synthesize a speech corpus (espeak-ng, flite, festival voices)')
    source = p.add_mutually_exclusive_group()
    source.add_argument('--text', type=Path, help='one sentence per line')
    source.add_argument('--set', choices=['qa', 'commands'],
                        help='the packaged spoken-question or robot-command set, every sentence in every voice')
    p.add_argument('--split', choices=['dev', 'test'], help='--set: only this split (default: both)')
    p.add_argument('--out', type=Path, required=True)
    p.add_argument('--n', type=int, help='--text: number of utterances (default: every sentence once)')
    p.add_argument('--voices', nargs='+', help='ENGINE:NAME or espeak-ng voices, e.g. en-us+f3 flite:slt '
                                               'festival:ked_diphone')
    p.add_argument('--rates', nargs='+', type=int,
                   help='words per minute (default: 140 165 190 for --text, 160 for --set)')
    p.add_argument('--augment', help='add noise/reverb/tempo...: "default" or AugmentConfig settings as a JSON '
                                     'object or file')
    p.add_argument('--max-words', type=int)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser('average', help='average the weights of adapters of one lineage into a new adapter')
    p.add_argument('adapters', nargs='+', type=Path, help='adapter folders (a base and its continuations)')
    p.add_argument('--weights', nargs='+', type=float, help='one weight per adapter (default: equal)')
    p.add_argument('--out', type=Path, required=True, help='the new adapter folder')
    p.set_defaults(func=cmd_average)

    p = sub.add_parser('align', help='train the base adapter from synthesized speech (LLM-free objective)')
    p.add_argument('--recipe', type=Path, help='recipe YAML (default: the shipped assets/recipes/align.yaml)')
    p.add_argument('--text', type=Path, default=DEFAULT_DATA / 'text' / 'ljspeech_sentences.txt',
                   help='the LJ Speech sentences, one of the corpus sources')
    p.add_argument('--work-dir', type=Path, default=Path('runs/align'), help='corpus and feature cache')
    p.add_argument('--out', type=Path, default=Path('runs/align/base_adapter'))
    p.add_argument('--real', type=Path, help='also score real recordings (LJ-Speech folder) at the end')
    p.add_argument('--init', type=Path, help='continue training from this adapter')
    p.add_argument('--no-cascade', action='store_true', help='skip the Whisper-transcription reference scores')
    p.add_argument('--minutes', type=float, help='training time budget (recipe: 75)')
    p.add_argument('--max-steps', type=int)
    p.add_argument('--max-utterances', type=int, help='train on the first N synthesized utterances')
    p.add_argument('--batch-size', type=int)
    p.add_argument('--lr', type=float)
    p.add_argument('--eval-every', type=int)
    p.add_argument('--objective', choices=['ctc', 'slots', 'ce'])
    p.add_argument('--negatives', type=int, help='ctc: vocabulary rows sampled per step (0 = all)')
    p.add_argument('--device', choices=['cpu', 'cuda', 'auto'],
                   help='where the projector trains (default cpu; auto = cuda when present); under torchrun each '
                        'process takes the GPU of its LOCAL_RANK')
    p.add_argument('--dtype', choices=['float32', 'float16', 'bfloat16'],
                   help='autocast precision of the training forward (default float32 = off; float16 needs cuda)')
    p.add_argument('--projector', choices=['bridgeformer', 'concat_mlp', 'linear'])
    p.add_argument('--reduction', choices=['stack', 'mean', 'adaptive'])
    p.add_argument('--d-model', type=int)
    p.add_argument('--layers', type=int)
    p.add_argument('--heads', type=int)
    p.add_argument('--ff-dim', type=int)
    p.add_argument('--threads', type=int)
    p.add_argument('--seed', type=int)
    p.add_argument('--whisper')
    p.add_argument('--llm')
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=cmd_align)

    p = sub.add_parser('corpus', help='build the assistant text corpus (questions, commands, chat, prose)')
    p.add_argument('--out', type=Path, default=Path('runs/align/corpus/text'))
    p.add_argument('--text', type=Path, default=DEFAULT_DATA / 'text' / 'ljspeech_sentences.txt',
                   help='the LJ Speech sentences (one source among several)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--llm-source', action='store_true',
                   help='also have the LLM write a sentence around each frequent word the corpus lacks '
                        '(added to a corpus already in --out, or to the one built)')
    p.add_argument('--llm', default=None, help='LLM folder for --llm-source; default: the embedded one')
    p.add_argument('--llm-top-words', type=int, default=20000,
                   help='--llm-source: the gaps are looked for among this many most frequent English words')
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser('bench-train', help='training cost per sample: LLM-free objective vs CE through the LLM')
    p.add_argument('--llm', help='model folder / .gguf, or a random-weight shape: 0.5b, 1b (default: embedded)')
    p.add_argument('--whisper')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--negatives', type=int, help="head rows sampled per CTC step (default: the trainer's; 0 = all)")
    p.add_argument('--threads', type=int)
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=cmd_bench_train)

    p = sub.add_parser('personalize', help="learn one operator's voice; keep the adapter only if it is better")
    p.add_argument('--operator', required=True, help='operator id (letters, digits, _ and -)')
    p.add_argument('--data', type=Path, required=True,
                   help='manifest.jsonl, LJ-Speech-style folder, or rosbag2 (sqlite3/mcap)')
    group = p.add_mutually_exclusive_group()
    group.add_argument('--holdout', type=int, help='held-out utterances (default: a quarter, 1 to 8)')
    group.add_argument('--holdout-ids', nargs='+', help='ids of the held-out utterances')
    p.add_argument('--topics', nargs='+', help='rosbag: audio topic [transcript topic]')
    p.add_argument('--store', type=Path, help='adapter store (default: $XDG_DATA_HOME/tinyalign_ros/operators)')
    p.add_argument('--work-dir', type=Path, help='caches and run records (default: <store>/.work)')
    p.add_argument('--keep', type=int, default=5, help='versions kept per operator')
    p.add_argument('--max-seconds', type=float, help='training budget in seconds (default 60)')
    p.add_argument('--max-total-seconds', type=float, default=110.0,
                   help='wall-clock budget of the whole command, model loading included; training gets what '
                        'is left after preparing and scoring (default 110; 0 = none)')
    p.add_argument('--max-steps', type=int, help='training step budget')
    p.add_argument('--objective', choices=['ctc', 'ce'], default='', help='ctc (default) or the conventional ce')
    p.add_argument('--method', choices=list(METHODS), default='',
                   help='train all projector weights (default), LoRA on them, the input layers, the biases and '
                        'norms, or one affine transform of the encoder frames')
    p.add_argument('--pseudo-label', action='store_true', help='label untranscribed speech with the cascade ASR')
    p.add_argument('--gate-margin', type=float,
                   help=f'relative improvement required (default {PersonalizeConfig.gate_margin})')
    p.add_argument('--lr', type=float, help=f'learning rate (default {PersonalizeConfig.lr:g})')
    p.add_argument('--n-general', type=int,
                   help=f'general utterances mixed in (default {PersonalizeConfig.n_general})')
    p.add_argument('--n-canary', type=int,
                   help=f'general canary utterances scored (default {PersonalizeConfig.n_canary})')
    p.add_argument('--repeat-items', type=int, help='held-out utterances scored with LLM repeat '
                                                    f'(default {PersonalizeConfig.repeat_items})')
    p.add_argument('--cascade-items', type=int, help="held-out utterances Whisper reads for the operator's mode "
                                                     f'(default {PersonalizeConfig.cascade_items})')
    p.add_argument('--train-dtype', choices=list(DTYPES),
                   help='autocast precision of the training steps (default '
                        f"{PersonalizeConfig.dtype}; --dtype sets the LLM's)")
    p.add_argument('--seed', type=int)
    p.add_argument('--json', action='store_true')
    model_args(p)
    p.set_defaults(func=cmd_personalize)

    p = sub.add_parser('adapters', help="list, activate or roll back an operator's adapters")
    p.add_argument('action', choices=['list', 'activate', 'rollback'])
    p.add_argument('--operator', required=True)
    p.add_argument('--adapter-id', help='the version to activate')
    p.add_argument('--store', type=Path, help='adapter store (default: $XDG_DATA_HOME/tinyalign_ros/operators)')
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=cmd_adapters)

    p = sub.add_parser('demo', help='the main job: answers real speech in both modes')
    p.add_argument('--data', type=Path, default=DEFAULT_DATA, help='folder holding ljspeech/')
    p.add_argument('--voice', default=DEMO_VOICE, help=f'voice asking the questions (default {DEMO_VOICE})')
    generation_args(p)
    model_args(p)
    p.set_defaults(func=cmd_demo)
    return parser
