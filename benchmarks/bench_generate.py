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
First-token latency of ``LLM.generate`` against a bare KV-cache greedy loop.

``LLM.generate`` is transformers' ``generate`` with a streamer, logits processors and stopping criteria; the
two run side by side in one process.

    .venv/bin/python benchmarks/bench_generate.py [--questions 12] [--repeats 3] [--out docs/benchmarks/generate.json]

The bare loop is what decoding costs with nothing around it; the difference is the price of the
library's generation machinery (config checks, processors, criteria, streamer) on the latency a
user feels first. Both decode the same text prompts (questions of the QA dev set) in alternation,
so a busy machine slows both alike. Reports medians in milliseconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import statistics
import time

from tinyalign_ros.durable import write_json
from tinyalign_ros.llm import GenerationConfig, LLM, PromptConfig
from tinyalign_ros.qa import load_set
import torch


def bare_loop(llm: LLM, embeds: torch.Tensor, max_new_tokens: int) -> tuple[float, float, int]:
    """Greedy decoding with a KV cache and nothing else: (first token s, total s, tokens)."""
    start = time.perf_counter()
    first = 0.0
    n = 0
    with torch.inference_mode():
        out = llm.model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1)
        for step in range(max_new_tokens):
            token = int(out.logits[0, -1].argmax())
            if step == 0:
                first = time.perf_counter() - start
            if token in llm.eos_token_ids:
                break
            n += 1
            out = llm.model(input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True)
    return first, time.perf_counter() - start, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--questions', type=int, default=12)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--out', type=Path)
    args = parser.parse_args()
    llm = LLM(None, threads=args.threads)
    questions = [r['question'] for r in load_set('qa', 'dev')][:args.questions]
    config = GenerationConfig()
    rows: dict[str, dict[str, list[float]]] = {k: {'first_token_ms': [], 'ms_per_token': []}
                                               for k in ('generate', 'bare_loop')}
    for question in questions[:2]:  # warm-up: first calls pay one-time costs
        inputs = llm.build_text_inputs(question, PromptConfig())
        llm.generate(inputs, config)
        bare_loop(llm, inputs, 8)
    for _ in range(args.repeats):
        for question in questions:
            inputs = llm.build_text_inputs(question, PromptConfig())
            result = llm.generate(inputs, config, question_tokens=len(llm.tokenize(question)))
            rows['generate']['first_token_ms'].append(result.first_token_s * 1000.0)
            rows['generate']['ms_per_token'].append(result.total_s * 1000.0 / max(result.n_tokens, 1))
            first, total, n = bare_loop(llm, inputs, max(result.n_tokens, 1))
            rows['bare_loop']['first_token_ms'].append(first * 1000.0)
            rows['bare_loop']['ms_per_token'].append(total * 1000.0 / max(n, 1))
    summary = {name: {k: round(statistics.median(v), 1) for k, v in values.items()} for name, values in rows.items()}
    summary['first_token_ratio'] = round(summary['generate']['first_token_ms'] / summary['bare_loop']['first_token_ms'],
                                         3)
    summary['n'] = len(rows['generate']['first_token_ms'])
    summary['threads'] = args.threads
    print(json.dumps(summary, indent=1))
    if args.out:
        write_json(args.out, summary, indent=1)


if __name__ == '__main__':
    main()
