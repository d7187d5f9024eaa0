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
The pipeline ties each answer's token budget to the question it heard.

The budget is the number of projected audio positions in aligned mode, the transcript's token count in cascade
mode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tinyalign_ros.encoder import WhisperEncoder
from tinyalign_ros.llm import GenerationConfig, LLM
from tinyalign_ros.pipeline import Pipeline
from tinyalign_ros.projector import build_projector, ProjectorConfig
from tinyalign_ros.synth import synthesize
import torch


@pytest.fixture(scope='module')
def speech() -> np.ndarray:
    return synthesize('please turn left at the door and stop')


def test_the_budget_follows_what_each_mode_heard(encoder: WhisperEncoder, llm: LLM, speech: np.ndarray,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    projector = build_projector(ProjectorConfig(encoder_dim=encoder.d_model, llm_dim=llm.hidden_size, d_model=32,
                                                n_layers=1, n_heads=4, ff_dim=64, dropout=0.0))
    projector.bind_llm(llm.embedding_matrix)
    projector.blank.bias.data.fill_(-50.0)  # never blank: every position is injected
    generation = GenerationConfig(max_new_tokens=200, budget_min_tokens=1, budget_per_question_token=1.0,
                                  repetition_penalty=1.0, no_repeat_ngram_size=0, loop_repeats=0)
    pipeline = Pipeline(encoder, llm, projector.eval(), generation=generation, adapter_id='random')
    seen: list[Any] = []
    real_generate = llm.generate

    def recording_generate(*args: Any, **kwargs: Any) -> Any:
        result = real_generate(*args, **kwargs)
        seen.append((kwargs.get('question_tokens'), result.max_new_tokens))
        return result

    monkeypatch.setattr(llm, 'generate', recording_generate)
    # The tiny random Whisper transcribes nothing; the cascade's budget is about the words it hears.
    monkeypatch.setattr(encoder, 'transcribe', lambda audio: 'Please turn left at the door and stop.')
    # ... and so does auto mode's reading of the fitted window
    monkeypatch.setattr(encoder, 'transcribe_encoded', lambda encoding: 'Please turn left at the door and stop.')
    aligned = pipeline.respond(speech, mode='aligned')
    cascade = pipeline.respond(speech, mode='cascade')
    assert aligned.n_audio_tokens > 0 and cascade.transcript
    n_heard = len(llm.tokenize(cascade.transcript))
    assert seen == [(aligned.n_audio_tokens, aligned.n_audio_tokens), (n_heard, n_heard)]
    # auto mode budgets by the path that answered, whichever it is
    seen.clear()
    pipeline.set_route_threshold(0.0)  # every utterance is sure enough for the aligned path
    routed_aligned = pipeline.respond(speech, mode='auto')
    pipeline.set_route_threshold(1.5)  # none is
    routed_cascade = pipeline.respond(speech, mode='auto')
    assert (routed_aligned.mode, routed_cascade.mode) == ('aligned', 'cascade')
    assert seen == [(aligned.n_audio_tokens, aligned.n_audio_tokens), (n_heard, n_heard)]
