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
Aligned, cascade and auto side by side on spoken questions and robot commands.

Questions are scored by the answer (one of the accepted keywords in the LLM's reply); commands by
what the answering path heard (every key word of the command in the aligned path's own reading or
in Whisper's transcript), since a robot acts on the words, not on a chat reply. Latency is the
pipeline's total per utterance (encode, route, project or transcribe, generate).

The auto threshold is learned the way a personalization learns it (routing.learn_threshold), on a
separate dev set: other sentences in the same voices, never the test utterances.

    python benchmarks/bench_routing.py --out docs/benchmarks/routing.json [--adapter DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
from tinyalign_ros.audio import load_audio
from tinyalign_ros.config import AssistantConfig
from tinyalign_ros.durable import write_json
from tinyalign_ros.llm import GenerationConfig
from tinyalign_ros.metrics import normalize_text, wer
from tinyalign_ros.pipeline import Pipeline
from tinyalign_ros.routing import confidence, learn_threshold
from tinyalign_ros.synth import synthesize

# (question, accepted answer keywords), written for this benchmark.
QUESTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ('What is the capital of France?', ('paris',)),
    ('What is the capital of Japan?', ('tokyo',)),
    ('What is the capital of Italy?', ('rome',)),
    ('What is the capital of England?', ('london',)),
    ('How many legs does a spider have?', ('eight', '8')),
    ('How many days are in a week?', ('seven', '7')),
    ('How many hours are in a day?', ('24', 'twenty-four', 'twenty four')),
    ('How many months are in a year?', ('twelve', '12')),
    ('What color is the sky on a clear day?', ('blue',)),
    ('What color is grass?', ('green',)),
    ('What color is snow?', ('white',)),
    ('What do bees make?', ('honey',)),
    ('What is the largest planet in our solar system?', ('jupiter',)),
    ('Which planet is known as the red planet?', ('mars',)),
    ('What is frozen water called?', ('ice',)),
    ('What gas do plants take in from the air?', ('carbon dioxide', 'co2')),
    ('What is the opposite of hot?', ('cold',)),
    ('What is the opposite of up?', ('down',)),
    ('What animal says moo?', ('cow',)),
    ('What animal barks?', ('dog',)),
    ('What do you use to write on paper?', ('pen', 'pencil')),
    ('What is two plus two?', ('four', '4')),
    ('What is ten minus three?', ('seven', '7')),
    ('What is the boiling point of water in Celsius?', ('100', 'hundred')),
    ('Who wrote Romeo and Juliet?', ('shakespeare',)),
    ('What is the largest ocean on Earth?', ('pacific',)),
    ('What language is spoken in Spain?', ('spanish',)),
    ('What is the tallest animal in the world?', ('giraffe',)),
    ('What do cows drink?', ('water',)),
    ('What season comes after winter?', ('spring',)),
    ('What is the first month of the year?', ('january',)),
    ('Which day comes after Monday?', ('tuesday',)),
    ('What fruit is yellow and curved?', ('banana',)),
    ('What is the main ingredient of bread?', ('flour', 'wheat')),
    ('Where does the sun rise?', ('east',)),
    ('What do we breathe to stay alive?', ('oxygen', 'air')),
    ('How many wheels does a bicycle have?', ('two', '2')),
    ('What is the color of a ripe tomato?', ('red',)),
    ('What star is closest to the Earth?', ('sun',)),
    ('What instrument has black and white keys?', ('piano',)),
)

# (command, key words the robot must hear).
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ('Turn left at the next door.', ('left', 'door')),
    ('Turn right and stop.', ('right', 'stop')),
    ('Go forward two meters.', ('forward', 'two')),
    ('Move back one meter.', ('back', 'one')),
    ('Bring me the red cup.', ('bring', 'red', 'cup')),
    ('Pick up the blue box.', ('pick', 'blue', 'box')),
    ('Open the kitchen door.', ('open', 'kitchen', 'door')),
    ('Close the window, please.', ('close', 'window')),
    ('Follow me to the garage.', ('follow', 'garage')),
    ('Wait here for five minutes.', ('wait', 'five')),
    ('Go to the charging station.', ('charging', 'station')),
    ('Stop right now.', ('stop', 'now')),
    ('Turn off the lights.', ('off', 'lights')),
    ('Turn on the fan.', ('on', 'fan')),
    ('Put the bottle on the table.', ('bottle', 'table')),
    ('Clean the living room floor.', ('clean', 'floor')),
    ('Find my keys.', ('find', 'keys')),
    ('Check the front door.', ('check', 'door')),
    ('Lift the tray slowly.', ('lift', 'tray')),
    ('Drive to the loading dock.', ('drive', 'dock')),
    ('Rotate ninety degrees to the left.', ('ninety', 'left')),
    ('Lower the arm a little.', ('lower', 'arm')),
    ('Return to the dock.', ('return', 'dock')),
    ('Take a picture of the plant.', ('picture', 'plant')),
)

# Other sentences in the same voices, only to learn the auto threshold.
DEV: tuple[str, ...] = (
    'What is the capital of Germany?', 'How many legs does a cat have?', 'What color is a banana?',
    'What is three plus five?', 'Which animal gives us wool?', 'What do fish live in?',
    'What is the opposite of big?', 'How many minutes are in an hour?',
    'Go to the kitchen and wait.', 'Turn around slowly.', 'Bring the green bag to the desk.',
    'Put the cup in the sink.', 'Open the garage door.', 'Move to the left a little.',
    'Stop at the red line.', 'Switch off the heater.',
)

VOICES = (('flite', 'slt'), ('espeak', 'en-us+m3'))


def speak(text: str, engine: str, voice: str, folder: Path) -> np.ndarray:
    """One utterance from flite or espeak-ng, 16 kHz mono float32."""
    if engine == 'espeak':
        return synthesize(text, voice=voice, rate=165)
    wav = folder / f'{abs(hash((text, voice)))}.wav'
    subprocess.run(['flite', '-voice', voice, '-t', text, '-o', str(wav)], check=True, capture_output=True)
    return load_audio(wav)


def words(text: str) -> set[str]:
    return set(normalize_text(text).split())


def heard_by_aligned(pipeline: Pipeline, audio: np.ndarray) -> str:
    ids = pipeline.projector.decode_ids(pipeline.encoder.features(audio), pipeline.llm.piece_texts)
    return pipeline.llm.tokenizer.decode(ids, skip_special_tokens=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', type=Path, default=Path('docs/benchmarks/routing.json'))
    parser.add_argument('--adapter', help='adapter folder (default: the shipped base adapter)')
    parser.add_argument('--max-new-tokens', type=int, default=24)
    parser.add_argument('--limit', type=int, default=0, help='first N questions and commands only (a smoke run)')
    args = parser.parse_args(argv)

    config = AssistantConfig(adapter=args.adapter) if args.adapter else AssistantConfig()
    pipeline = Pipeline.from_config(config)
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens)
    questions = QUESTIONS[: args.limit] if args.limit else QUESTIONS
    commands = COMMANDS[: args.limit] if args.limit else COMMANDS
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # 1. the threshold, learned on the dev sentences
        margins, aligned_err, cascade_err = [], [], []
        for engine, voice in VOICES:
            for text in DEV:
                audio = speak(text, engine, voice, folder)
                feats = pipeline.encoder.features(audio)
                margins.append(confidence(pipeline.projector, feats).margin)
                n = len(text.split())
                aligned_err.append(wer([text], [heard_by_aligned(pipeline, audio)]) * n)
                fallback = pipeline.encoder.transcribe_encoded(pipeline.encoder.encode_window(audio))  # auto's Whisper
                cascade_err.append(wer([text], [fallback]) * n)
        threshold, numbers = learn_threshold(margins, aligned_err, cascade_err)
        pipeline.set_route_threshold(threshold)
        print(f'threshold {threshold:.3f} learned on {len(margins)} dev utterances: {numbers}', file=sys.stderr)

        # 2. the test sets in every mode
        rows: list[dict[str, Any]] = []
        for engine, voice in VOICES:
            for kind, items in (('qa', questions), ('command', commands)):
                for text, keys in items:
                    audio = speak(text, engine, voice, folder)
                    pipeline.encoder.features(audio)  # warm the window's first run outside the timings
                    row: dict[str, Any] = {'kind': kind, 'voice': f'{engine}:{voice}', 'text': text}
                    for mode in ('aligned', 'cascade', 'auto'):
                        response = pipeline.respond(audio, mode=mode, generation=gen)
                        if kind == 'qa':
                            answer = normalize_text(response.text)
                            ok = any(re.search(rf'\b{re.escape(k)}\b', answer) for k in keys)
                        else:
                            heard = response.transcript if response.mode == 'cascade' else \
                                heard_by_aligned(pipeline, audio)
                            ok = set(keys) <= words(heard or '')
                        row[mode] = {'ok': bool(ok), 'path': response.mode,
                                     'ms': round(response.latency_ms['total'], 1), 'text': response.text[:120],
                                     'confidence': response.extra.get('confidence')}
                    rows.append(row)
                    marks = ' '.join(f"{m}:{'Y' if row[m]['ok'] else '.'}{row[m]['ms']:6.0f}"
                                     for m in ('aligned', 'cascade', 'auto'))
                    print(f"{kind:7} {row['voice']:16} {marks}  {text}", file=sys.stderr, flush=True)

    summary: dict[str, Any] = {}
    for kind in ('qa', 'command'):
        subset = [r for r in rows if r['kind'] == kind]
        summary[kind] = {mode: {'accuracy': round(float(np.mean([r[mode]['ok'] for r in subset])), 4),
                                'mean_latency_ms': round(float(np.mean([r[mode]['ms'] for r in subset])), 1)}
                         for mode in ('aligned', 'cascade', 'auto')}
        summary[kind]['auto']['aligned_share'] = round(float(np.mean(
            [r['auto']['path'] == 'aligned' for r in subset])), 4)
        summary[kind]['n'] = len(subset)
    out = {'adapter': pipeline.adapter_id, 'threshold': threshold, 'threshold_dev': numbers,
           'voices': [f'{e}:{v}' for e, v in VOICES], 'max_new_tokens': args.max_new_tokens,
           'summary': summary, 'rows': rows, 'measured': time.strftime('%Y-%m-%d %H:%M')}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, out, indent=1)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
