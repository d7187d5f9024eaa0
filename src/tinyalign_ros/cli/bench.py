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

"""`tinyalign bench-train`: the training cost per sample of the LLM-free objective against CE through the LLM."""

from __future__ import annotations

import argparse

from .common import print_json


def cmd_bench_train(args: argparse.Namespace) -> int:
    from ..training.bench import SHAPES, bench_train
    from ..encoder import WhisperEncoder
    from ..llm import LLM

    encoder = WhisperEncoder(args.whisper)
    shape = args.llm if args.llm in SHAPES else None
    # A random-weight shape only needs the embedded tokenizer; a real LLM is timed with its weights.
    llm = LLM(None if shape else args.llm, threads=args.threads, embeddings_only=shape is not None)
    result = bench_train(encoder, llm, shape=shape, batch_size=args.batch_size, repeats=args.repeats,
                         negatives=args.negatives)
    if args.json:
        print_json(result)
    else:
        print(f'{result["llm"]}: ctc {result["objective_per_sample_s"]:.4f} s/sample, '
              f'ce {result["ce_per_sample_s"]:.4f} s/sample, ratio {result["ratio"]}x')
    return 0
