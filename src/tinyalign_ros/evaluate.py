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
Evaluation: how well the projector and the whole aligned path understand speech.

Four readings of the same utterances, so a regression can be located:

- ``wer_cascade``: Whisper's own transcription (the reference system robots run today);
- ``wer_nearest``: the projector alone, its outputs read back as the nearest LLM tokens (CTC greedy);
- ``wer_repeat``: end to end, the frozen LLM asked to repeat what it was given: the embeddings the
  aligned path injects (the fused reading's mix, as :meth:`Pipeline.read` makes it);
- ``wer_repeat_text``: the ceiling of that reading, the same LLM and instruction fed the true
  transcript's embeddings (a small LLM drops and paraphrases words even then);

plus ``nll_audio`` / ``nll_text``: the LLM's teacher-forced loss of the transcript after the
projector's raw output frames vs after the transcript itself (cheap: no reading, no search).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
import time
from typing import Any, Callable, Sequence

import numpy as np

from .audio import load_audio
from .data import Item
from .encoder import WhisperEncoder
from .fusion import fuse, FusionConfig
from .llm import GenerationConfig, LLM, PromptConfig
from .metrics import wer
from .projector import Projector

# The template's own system prompt and no example turns: a copying task, not the assistant's answering style.
REPEAT_PROMPT = PromptConfig(instruction='Repeat exactly the sentence that follows:', placement='before', system=None,
                             examples=())
READINGS = ('nearest', 'fused', 'repeat', 'repeat_text', 'cascade', 'nll')
# 'nll' is both of these; either alone skips the other's LLM passes. Personalization reads only the
# audio's: the text's is the same for every adapter, and it cost 0.12 s per held-out utterance.
NLL_PARTS = ('nll_audio', 'nll_text')
# Changes whenever a reading's definition changes, so remembered scores of the old one are not reused
# (2: ``repeat`` reads the injected mix, no longer the raw projected frames; 3: ``nearest`` drops a word
# piece emitted twice, :func:`tinyalign_ros.projector.repeats_word_end`).
READINGS_VERSION = 3


@dataclass
class Evaluation:
    """Corpus-level metrics plus what each utterance produced."""

    n: int
    metrics: dict[str, float | None]
    details: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self, with_details: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {'n': self.n, **self.metrics, 'seconds': round(self.seconds, 2)}
        if with_details:
            out['details'] = self.details
        return out


def repeat_generation(target_ids: Sequence[int]) -> GenerationConfig:
    """Greedy, long enough for the sentence plus slack, stopping at the end of the line."""
    return GenerationConfig(max_new_tokens=len(target_ids) + 12, do_sample=False, stop=('\n',))


def evaluate(items: Sequence[Item], encoder: WhisperEncoder, llm: LLM, projector: Projector | None,
             readings: Sequence[str] = READINGS, prompt: PromptConfig = REPEAT_PROMPT,
             progress: Callable[[int, int], None] | None = None,
             features: Callable[[Item], np.ndarray] | None = None,
             fusion: FusionConfig | None = None) -> Evaluation:
    """
    Score ``items`` (with transcripts) on the requested readings.

    ``nearest`` is the projector alone; ``fused`` is the same reading with the LLM's prior
    (:mod:`tinyalign_ros.fusion`, ``fusion`` settings, judged inside the assistant's default prompt),
    which is what the aligned path answers from.

    ``features`` lets a caller supply cached encoder features (training does); by default the
    audio is loaded and encoded here. Readings that need a projector are left out (None) without one.
    """
    unknown = sorted(set(readings) - set(READINGS) - set(NLL_PARTS))
    if unknown:
        raise ValueError(f'unknown readings {unknown}; choose from {READINGS + NLL_PARTS}')
    if any(item.text is None for item in items):
        raise ValueError('evaluation needs a transcript for every utterance')
    if not items:
        raise ValueError('nothing to evaluate: the dataset is empty')
    start = time.perf_counter()
    refs = [item.text or '' for item in items]
    hyps: dict[str, list[str]] = {name: [] for name in ('nearest', 'fused', 'repeat', 'repeat_text', 'cascade')}
    fusion = fusion or FusionConfig()
    nll_of_audio = bool({'nll', 'nll_audio'} & set(readings))
    nll_of_text = bool({'nll', 'nll_text'} & set(readings))
    needs_reading = {'fused', 'repeat'} & set(readings) and aligned_model(llm)
    context, after = llm.prompt_parts(PromptConfig()) if needs_reading else (None, None)
    end_id = after[0] if after else None
    # The repeat prompt's keys and values are computed once and reused by every generation.
    prefix = llm.prompt_parts(prompt)[0] if {'repeat', 'repeat_text'} & set(readings) and aligned_model(llm) else None
    nll_audio: list[float] = []
    nll_text: list[float] = []
    details: list[dict[str, Any]] = []
    aligned = projector is not None
    for i, item in enumerate(items):
        row: dict[str, Any] = {'id': item.id, 'ref': item.text}
        target = llm.tokenize(item.text or '')
        audio = None
        if 'cascade' in readings or (aligned and features is None):
            audio = load_audio(item.audio)
        if aligned and (nll_of_audio or any(r in readings for r in ('nearest', 'fused', 'repeat'))):
            feats = features(item) if features is not None else encoder.features(audio)
            if 'nearest' in readings:
                row['nearest'] = llm.tokenizer.decode(projector.decode_ids(feats, llm.piece_texts),
                                                      skip_special_tokens=True)
                hyps['nearest'].append(row['nearest'])
            read = fuse(projector, llm, feats, context, fusion, end_id) if context is not None else None
            if 'fused' in readings and read is not None:
                row['fused'] = llm.tokenizer.decode(read[0], skip_special_tokens=True)
                hyps['fused'].append(row['fused'])
            if 'repeat' in readings and read is not None:
                # What the assistant injects; a reading that heard nothing repeats nothing.
                injected = llm.build_inputs(read[1], prompt) if read[1].shape[0] else None
                row['repeat'] = '' if injected is None else \
                    llm.generate(injected, repeat_generation(target), prefix_ids=prefix).text.strip()
                hyps['repeat'].append(row['repeat'])
            if nll_of_audio:
                embeds = projector.project(feats, llm.piece_texts)
                if embeds.shape[0]:  # a projector that hears nothing has no audio NLL
                    nll_audio.append(llm.nll(llm.build_inputs(embeds, prompt), target))
        if 'repeat_text' in readings or nll_of_text:
            text_inputs = llm.build_text_inputs(item.text or '', prompt)
            if 'repeat_text' in readings:
                row['repeat_text'] = llm.generate(text_inputs, repeat_generation(target),
                                                  prefix_ids=prefix).text.strip()
                hyps['repeat_text'].append(row['repeat_text'])
            if nll_of_text:
                nll_text.append(llm.nll(text_inputs, target))
        if 'cascade' in readings:
            row['cascade'] = encoder.transcribe(audio)
            hyps['cascade'].append(row['cascade'])
        details.append(row)
        if progress is not None:
            progress(i + 1, len(items))
    metrics: dict[str, float | None] = {}
    for name in ('nearest', 'fused', 'repeat', 'repeat_text', 'cascade'):
        metrics[f'wer_{name}'] = round(wer(refs, hyps[name]), 4) if len(hyps[name]) == len(refs) else None
    metrics['nll_audio'] = _mean(nll_audio)
    metrics['nll_text'] = _mean(nll_text)
    return Evaluation(n=len(items), metrics=metrics, details=details, seconds=time.perf_counter() - start)


def aligned_model(llm: LLM) -> bool:
    """Whether ``llm`` can score text (an embeddings-only LLM, used in training, cannot)."""
    return getattr(llm, 'model', None) is not None


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return round(float(np.mean(finite)), 4) if finite else None
