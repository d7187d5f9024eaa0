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
What every `tinyalign` command shares: the model and decoding flags, the engine config they build, output.

Every sub-command prints a human summary by default and one JSON object with ``--json`` (for
scripts and benchmarks).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
from typing import Any, Callable

from tqdm import tqdm


DEFAULT_DATA = Path('../shared/data')


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def progress_bar(desc: str, total: int, enabled: bool = True) -> tuple[Callable[[int, int], None], tqdm]:
    bar = tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, leave=False)

    def update(done: int, _total: int) -> None:
        bar.n = done
        bar.refresh()

    return update, bar


# GenerationConfig fields that every answering command accepts as --flags (the YAML's generation: section
# is the other way to set them; both land in the same dataclass).
GENERATION_FLAGS = ('max_new_tokens', 'repetition_penalty', 'no_repeat_ngram_size', 'loop_repeats',
                    'budget_min_tokens', 'budget_per_question_token')


def generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--max-new-tokens', type=int, help='hard cap on answer tokens')
    p.add_argument('--repetition-penalty', type=float, help='>1 discourages repeating answer tokens (1 = off)')
    p.add_argument('--no-repeat-ngram-size', type=int, help='never repeat an n-gram of this size (0 = off)')
    p.add_argument('--loop-repeats', type=int, help='stop when a span repeats this many times in a row (0 = off)')
    p.add_argument('--budget-min-tokens', type=int, help='answer budget for the shortest question')
    p.add_argument('--budget-per-question-token', type=float,
                   help='answer tokens allowed per question token (0 = always --max-new-tokens)')
    p.add_argument('--fusion-weight', type=float,
                   help="weight of the LLM's prior in the aligned reading (0 = the projector alone)")
    p.add_argument('--fusion-search', choices=('beam', 'lattice'),  # fusion.SEARCHES (a test keeps them equal)
                   help="how the aligned reading is searched: beam over the head's frames or lattice re-ranking")


def config_from_args(args: argparse.Namespace) -> Any:
    from ..config import load_config

    overrides: dict[str, Any] = {}
    if getattr(args, 'adapter', None):
        overrides['adapter'] = str(args.adapter)
    if getattr(args, 'whisper', None):
        overrides['encoder.model'] = args.whisper
    if getattr(args, 'llm', None):
        overrides['llm.model'] = args.llm
    if getattr(args, 'device', None):  # one flag for the whole assistant; the YAML can split it per model
        overrides['encoder.device'] = args.device
        overrides['llm.device'] = args.device
    if getattr(args, 'dtype', None):
        overrides['llm.dtype'] = args.dtype
    if getattr(args, 'compute_type', None):
        overrides['encoder.compute_type'] = args.compute_type
    for name in GENERATION_FLAGS:  # decoding settings given on the command line beat the YAML
        if getattr(args, name, None) is not None:
            overrides[f'generation.{name}'] = getattr(args, name)
    if getattr(args, 'instruction', None):
        overrides['prompt.instruction'] = args.instruction
    if getattr(args, 'fusion_weight', None) is not None:
        overrides['fusion.weight'] = args.fusion_weight
    if getattr(args, 'fusion_search', None) is not None:
        overrides['fusion.search'] = args.fusion_search
    return load_config(getattr(args, 'config', None), overrides)


def model_args(p: argparse.ArgumentParser) -> None:
    from ..config import EncoderSettings, LLMSettings
    from ..device import DEVICES, DTYPES

    p.add_argument('--config', type=Path, help='engine YAML config (default: built-in defaults)')
    p.add_argument('--adapter', type=Path, help='adapter folder (default: the shipped base adapter)')
    p.add_argument('--whisper', help='faster-whisper model folder (default: embedded tiny.en)')
    p.add_argument('--llm', help='transformers model folder or .gguf file (default: embedded SmolLM2-135M)')
    p.add_argument('--device', choices=DEVICES,
                   help=f'where Whisper, the projector and the LLM run; auto = cuda when there is a GPU '
                        f"(default: the config's, else {LLMSettings.device})")
    p.add_argument('--dtype', choices=DTYPES,
                   help="precision of the LLM and of the projector's token head "
                        f"(default: the config's, else {LLMSettings.dtype})")
    p.add_argument('--compute-type',
                   help=f'CTranslate2 compute type of Whisper: default, int8, float16, ... '
                        f"(default: the config's, else {EncoderSettings.compute_type})")
