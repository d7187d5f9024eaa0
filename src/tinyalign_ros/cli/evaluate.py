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

"""`tinyalign evaluate`: word error and NLL of the aligned path and the cascade, or spoken QA accuracy."""

from __future__ import annotations

import argparse
import dataclasses

from .common import config_from_args, print_json, progress_bar


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..data import load_dataset, select
    from ..evaluate import READINGS, evaluate
    from ..pipeline import Pipeline

    items = load_dataset(args.data)
    if args.ids:
        items = select(items, args.ids)
    if args.split:
        items = [it for it in items if it.meta.get('split') == args.split]
        if not items:
            raise ValueError(f'no items of split {args.split!r} in {args.data}')
    if args.limit:
        items = items[: args.limit]
    if args.task == 'qa':
        from ..qa import PATHS, evaluate_qa, qa_items

        qa_items(items)  # refuse a manifest without answers before loading any model
        pipeline = Pipeline.from_config(config_from_args(args))
        update, bar = progress_bar('asking', len(items), not args.json)
        qa = evaluate_qa(items, pipeline, args.paths or list(PATHS), progress=update)
        bar.close()
        out = qa.to_dict(with_details=args.details)
        out['adapter'] = pipeline.adapter_id
        out['generation'] = dataclasses.asdict(pipeline.generation)
        out['fusion'] = pipeline.fusion.to_dict()
        if args.json:
            print_json(out)
        else:
            print(f'{"path":>8}  accuracy  first token  total  (n={qa.n}, adapter {pipeline.adapter_id})')
            for path, acc in qa.accuracy.items():
                if acc is not None:
                    lat = qa.latency_ms[path] or {}
                    print(f'{path:>8}  {acc:8.3f}  {lat.get("first_token", 0):8.0f} ms  {lat.get("total", 0):5.0f} ms')
            print(f'aligned / cascade: {out["aligned_over_cascade"]}')
            for voice, accs in qa.per_voice.items():
                print(f'  {voice}: ' + ', '.join(f'{k} {v}' for k, v in accs.items() if v is not None))
        return 0
    pipeline = Pipeline.from_config(config_from_args(args))
    readings = args.readings or list(READINGS)
    update, bar = progress_bar('evaluating', len(items), not args.json)
    result = evaluate(items, pipeline.encoder, pipeline.llm, pipeline.projector, readings, progress=update,
                      fusion=pipeline.fusion)
    bar.close()
    out = result.to_dict(with_details=args.details)
    out['adapter'] = pipeline.adapter_id
    out['fusion'] = pipeline.fusion.to_dict()
    if args.json:
        print_json(out)
    else:
        for key, value in out.items():
            if key != 'details':
                print(f'{key:>16}: {value}')
    return 0
