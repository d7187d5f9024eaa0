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
What the open-vocabulary token head costs at inference, side by side with a closed head.

The aligned path reads each utterance through the token head once (CTC collapse and the top-k mix).
An open head scores every row of the LLM's input table (49,152 for SmolLM2) where the earlier closed
head scored the 11,996 tokens of its training transcripts. Both heads are bound to the same trained
projector and timed alternately in one process on encoder features of 1-10 s utterances; only the
ratio is meant to be read.

    .venv/bin/python benchmarks/bench_head.py --json-out docs/benchmarks/head.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import statistics
import time

import numpy as np
from tinyalign_ros.adapter import load_adapter
from tinyalign_ros.durable import write_json
from tinyalign_ros.llm import LLM
from tinyalign_ros.pipeline import BASE_ADAPTER
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--adapter', type=Path, default=BASE_ADAPTER)
    parser.add_argument('--closed-rows', type=int, default=11996, help='size of the closed head compared')
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--json-out', type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    llm = LLM(None, embeddings_only=True)
    table = llm.embedding_matrix
    open_head, meta = load_adapter(args.adapter, None, None, table)
    closed, _ = load_adapter(args.adapter, None, None, table)
    closed.bind_llm(table, torch.arange(args.closed_rows))
    rng = np.random.default_rng(0)
    rows = []
    for seconds in (1, 3, 5, 10):
        feats = rng.standard_normal((seconds * 50, open_head.config.encoder_dim)).astype(np.float32)
        times: dict[str, list[float]] = {'open': [], 'closed': []}
        for _ in range(args.repeats):
            for name, projector in (('open', open_head), ('closed', closed)):
                start = time.perf_counter()
                projector.project(feats)
                times[name].append((time.perf_counter() - start) * 1000)
        row = {'seconds': seconds, 'open_rows': int(table.shape[0]), 'closed_rows': args.closed_rows,
               'open_ms': round(statistics.median(times['open']), 2),
               'closed_ms': round(statistics.median(times['closed']), 2)}
        row['ratio'] = round(row['open_ms'] / row['closed_ms'], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json_out:
        write_json(args.json_out, {'adapter': meta.get('adapter_id'), 'threads': 1, 'rows': rows})


if __name__ == '__main__':
    main()
