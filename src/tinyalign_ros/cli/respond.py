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

"""`tinyalign respond`: answer one audio file, the way the assistant node does."""

from __future__ import annotations

import argparse
import sys

from .common import config_from_args, print_json


def cmd_respond(args: argparse.Namespace) -> int:
    from ..audio import load_audio
    from ..pipeline import Pipeline

    config = config_from_args(args)
    audio = load_audio(args.audio, max_seconds=config.max_utterance_s)
    pipeline = Pipeline.from_config(config)
    mode = 'cascade' if args.cascade else config.mode
    stream = None if args.json else (lambda piece: print(piece, end='', flush=True))
    response = pipeline.respond(audio, mode=mode, on_token=stream)
    if args.json:
        out = {'text': response.text, 'mode': response.mode, 'audio_s': round(response.audio_s, 3),
               'latency_ms': {k: round(v, 1) for k, v in response.latency_ms.items()},
               'truncated': response.truncated, 'adapter': response.adapter_id}
        if response.transcript is not None:
            out['transcript'] = response.transcript
        print_json(out)
    else:
        print()
        lat = ', '.join(f'{k} {v:.0f} ms' for k, v in response.latency_ms.items())
        print(f'[{response.mode}] {response.audio_s:.1f} s of audio; {lat}', file=sys.stderr)
    return 0
