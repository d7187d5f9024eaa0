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
Tests for the assistant pipeline on the tiny random models.

Both modes end to end, latency accounting, streaming, the thread-safe adapter swap and the
refusals of bad input.

The tiny models understand nothing, so answers are checked for mechanics (what was injected,
which adapter answered, that streamed pieces join to the text), never for content.
"""

from __future__ import annotations

import math
from pathlib import Path
import threading
import time
from typing import Any

import numpy as np
import pytest
from tinyalign_ros.adapter import AdapterError, save_adapter
from tinyalign_ros.audio import AudioError
from tinyalign_ros.config import AssistantConfig, EncoderSettings, LLMSettings
from tinyalign_ros.encoder import WhisperEncoder
from tinyalign_ros.fusion import FusionConfig
from tinyalign_ros.llm import GenerationConfig, LLM, PromptConfig
from tinyalign_ros.pipeline import Pipeline, PipelineError, Response
from tinyalign_ros.projector import build_projector, Projector, ProjectorConfig
from tinyalign_ros.synth import synthesize
import torch

LATENCY_KEYS = {'encode', 'project', 'first_token', 'total'}
GEN = GenerationConfig(max_new_tokens=6)


@pytest.fixture(scope='module')
def speech() -> np.ndarray:
    return synthesize('please turn left at the door')


def chatty(encoder: WhisperEncoder, llm: LLM, seed: int = 0) -> Projector:
    """Build a small random BridgeFormer that never predicts blank: it injects several embeddings."""
    torch.manual_seed(seed)
    projector = build_projector(ProjectorConfig(encoder_dim=encoder.d_model, llm_dim=llm.hidden_size, d_model=32,
                                                n_layers=1, n_heads=4, ff_dim=64, dropout=0.0))
    projector.bind_llm(llm.embedding_matrix)
    projector.blank.bias.data.fill_(-50.0)
    return projector.eval()


def one_token(encoder: WhisperEncoder, llm: LLM, token: int = 123) -> Projector:
    """Build a linear projector that maps every frame to the same token: exactly one injected embedding."""
    projector = build_projector(ProjectorConfig(type='linear', encoder_dim=encoder.d_model,
                                                llm_dim=llm.hidden_size))
    projector.bind_llm(llm.embedding_matrix)
    table = llm.embedding_matrix.detach()
    with torch.no_grad():
        projector.out.weight.zero_()
        projector.out.bias.copy_((table[token] - table.mean(dim=0)) * 10)
        projector.blank.weight.zero_()
        projector.blank.bias.fill_(-50.0)
    return projector.eval()


def silent(encoder: WhisperEncoder, llm: LLM) -> Projector:
    """Build a projector that hears nothing: every frame decodes as blank."""
    projector = chatty(encoder, llm)
    projector.config.blank_bias = 1e4
    return projector


@pytest.fixture(scope='module')
def pipeline(encoder: WhisperEncoder, llm: LLM) -> Pipeline:
    return Pipeline(encoder, llm, chatty(encoder, llm), generation=GEN, adapter_id='chatty')


def check_latency(response: Response) -> None:
    assert set(response.latency_ms) == LATENCY_KEYS
    assert all(math.isfinite(v) and v >= 0 for v in response.latency_ms.values())
    lat = response.latency_ms
    assert lat['total'] >= lat['encode']
    assert lat['total'] >= lat['encode'] + lat['project'] - 1e-6
    assert lat['total'] >= lat['first_token'] >= lat['encode']


# ------------------------------------------------------------------ both modes


def test_aligned_response(pipeline: Pipeline, speech: np.ndarray) -> None:
    response = pipeline.respond(speech)
    assert isinstance(response, Response)
    assert response.mode == 'aligned'
    assert response.audio_s == pytest.approx(len(speech) / 16000)
    assert response.adapter_id == 'chatty'
    assert response.transcript is None
    features = pipeline.encoder.features(speech)
    # What the aligned path heard is its (fused) reading, decoded: as many tokens as it injected. The
    # beam search may read fewer or more tokens than the greedy collapse, never more than frames.
    ids, embeds = pipeline.read(pipeline.projector, features)
    assert response.n_audio_tokens == len(ids) == embeds.shape[0] >= 1
    assert len(ids) <= pipeline.projector.frame_logits(features).shape[0]
    assert response.heard == pipeline.llm.tokenizer.decode(ids, skip_special_tokens=True).strip()
    assert isinstance(response.text, str)
    check_latency(response)
    data = response.to_dict()
    assert data['mode'] == 'aligned' and set(data['latency_ms']) == LATENCY_KEYS


def test_aligned_answer_is_deterministic_and_depends_on_the_audio(pipeline: Pipeline, speech: np.ndarray) -> None:
    first = pipeline.respond(speech)
    assert pipeline.respond(speech).text == first.text
    other = pipeline.respond(synthesize('bring me the red box from the shelf', rate=200))
    assert other.n_audio_tokens != first.n_audio_tokens or other.text != first.text


def test_cascade_response(pipeline: Pipeline, speech: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    heard = []
    monkeypatch.setattr(pipeline.encoder, 'transcribe', lambda audio, **_: heard.append(len(audio)) or 'turn left')
    response = pipeline.respond(speech, mode='cascade')
    assert heard == [len(speech)]  # Whisper heard the utterance once
    assert response.mode == 'cascade'
    assert response.transcript == 'turn left' and response.heard is None
    assert response.adapter_id is None and response.n_audio_tokens == 0
    assert response.audio_s == pytest.approx(len(speech) / 16000)
    check_latency(response)


def test_cascade_feeds_the_transcript_to_the_llm(pipeline: Pipeline, speech: np.ndarray,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline.encoder, 'transcribe', lambda audio, **_: 'turn left')
    seen = []
    original = pipeline.llm.build_text_inputs
    monkeypatch.setattr(pipeline.llm, 'build_text_inputs',
                        lambda text, prompt: seen.append(text) or original(text, prompt))
    pipeline.respond(speech, mode='cascade')
    assert seen == ['turn left']


def test_cascade_when_whisper_hears_no_words(pipeline: Pipeline, speech: np.ndarray,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Answer nothing when Whisper hears nothing.

    Whisper returns '' for a cough or a door slam (the tiny random Whisper always does): the robot
    has nothing to answer, which is a normal outcome, not a crash.
    """
    monkeypatch.setattr(pipeline.encoder, 'transcribe', lambda audio, **_: '')
    response = pipeline.respond(speech, mode='cascade')
    assert response.mode == 'cascade' and response.transcript == ''
    assert response.text == ''
    assert set(response.latency_ms) == LATENCY_KEYS


def test_aligned_when_the_projector_emits_nothing(encoder: WhisperEncoder, llm: LLM, speech: np.ndarray) -> None:
    """
    Answer (with nothing) when the projector emits nothing, rather than fail inside the LLM.

    An adapter that decodes every frame as blank (noise, silence) injects no embedding.
    """
    pipe = Pipeline(encoder, llm, silent(encoder, llm), generation=GEN, adapter_id='silent')
    response = pipe.respond(speech)
    assert response.mode == 'aligned' and response.n_audio_tokens == 0
    assert response.text == ''
    assert set(response.latency_ms) == LATENCY_KEYS


def test_streamed_pieces_join_to_the_text(pipeline: Pipeline, speech: np.ndarray) -> None:
    pieces: list[str] = []
    response = pipeline.respond(speech, on_token=pieces.append,
                                generation=GenerationConfig(max_new_tokens=12))
    assert response.text  # the tiny model says something for this input
    assert pieces and all(pieces)
    assert ''.join(pieces) == response.text


def test_per_call_prompt_and_generation(pipeline: Pipeline, speech: np.ndarray,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = []
    original = pipeline.llm.build_inputs
    monkeypatch.setattr(pipeline.llm, 'build_inputs', lambda e, p: prompts.append(p) or original(e, p))
    one = pipeline.respond(speech, generation=GenerationConfig(max_new_tokens=1),
                           prompt=PromptConfig(instruction='Repeat.'))
    assert prompts[-1].instruction == 'Repeat.'
    assert len(pipeline.llm.tokenize(one.text)) <= 1
    pipeline.respond(speech)
    assert prompts[-1] == pipeline.prompt
    assert pipeline.with_prompt(instruction='X').instruction == 'X'
    assert pipeline.prompt.instruction != 'X'  # a copy


# ------------------------------------------------------------------ adapter swap


def test_set_adapter_takes_effect_on_the_next_call(encoder: WhisperEncoder, llm: LLM, speech: np.ndarray) -> None:
    pipe = Pipeline(encoder, llm, chatty(encoder, llm), generation=GEN, adapter_id='chatty')
    assert pipe.respond(speech).n_audio_tokens > 1
    pipe.set_adapter(one_token(encoder, llm), 'one')
    response = pipe.respond(speech)
    assert response.adapter_id == 'one' and pipe.adapter_id == 'one'
    assert response.n_audio_tokens == 1
    pipe.set_adapter(None, None)
    with pytest.raises(PipelineError, match='adapter'):
        pipe.respond(speech)


def test_set_adapter_binds_an_unbound_projector(encoder: WhisperEncoder, llm: LLM) -> None:
    projector = build_projector(ProjectorConfig(type='linear', encoder_dim=encoder.d_model, llm_dim=llm.hidden_size))
    projector.train()
    pipe = Pipeline(encoder, llm, None, generation=GEN)
    pipe.set_adapter(projector, 'fresh')
    assert projector.is_bound and not projector.training
    assert Pipeline(encoder, llm, build_projector(projector.config)).projector.is_bound


def test_adapter_swap_from_another_thread_is_safe(encoder: WhisperEncoder, llm: LLM, speech: np.ndarray) -> None:
    """Each response is served wholly by one adapter: the id it reports matches what was injected."""
    many, one = chatty(encoder, llm), one_token(encoder, llm)
    # The projector alone (fusion off), so that each adapter injects a known number of positions.
    pipe = Pipeline(encoder, llm, many, generation=GenerationConfig(max_new_tokens=2), adapter_id='many',
                    fusion=FusionConfig(weight=0.0))
    n_many = many.project(encoder.features(speech)).shape[0]
    assert n_many > 1
    stop = threading.Event()
    errors: list[BaseException] = []
    swaps = [0]

    def swapper() -> None:
        try:
            while not stop.is_set():
                pipe.set_adapter(one, 'one')
                time.sleep(0.001)
                pipe.set_adapter(many, 'many')
                time.sleep(0.001)
                swaps[0] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    seen = set()
    try:
        for _ in range(8):
            response = pipe.respond(speech)
            seen.add(response.adapter_id)
            assert response.n_audio_tokens == (1 if response.adapter_id == 'one' else n_many)
    finally:
        stop.set()
        thread.join(5)
    assert not errors
    assert swaps[0] > 0 and seen <= {'one', 'many'}


# ------------------------------------------------------------------ bad input


def test_bad_mode(pipeline: Pipeline, speech: np.ndarray) -> None:
    with pytest.raises(PipelineError, match='hybrid'):
        pipeline.respond(speech, mode='hybrid')


@pytest.mark.parametrize('audio,match', [
    (np.zeros(0, dtype=np.float32), 'no samples'),
    (np.array([0.0, np.nan, 0.1], dtype=np.float32), 'NaN'),
    (np.array([0.0, np.inf], dtype=np.float32), 'NaN/Inf'),
    (np.zeros(1600, dtype=np.int16), 'float'),
    (np.zeros((1600, 2), dtype=np.float32), 'mono'),
])
def test_bad_audio_is_refused_clearly(pipeline: Pipeline, audio: np.ndarray, match: str) -> None:
    for mode in ('aligned', 'cascade'):
        with pytest.raises(AudioError, match=match):
            pipeline.respond(audio, mode=mode)


def test_too_long_audio_is_refused(encoder: WhisperEncoder, llm: LLM) -> None:
    pipe = Pipeline(encoder, llm, chatty(encoder, llm), generation=GEN, max_utterance_s=1.0)
    with pytest.raises(AudioError, match='longer'):
        pipe.respond(np.zeros(32000, dtype=np.float32))
    assert pipe.respond(np.full(8000, 0.01, dtype=np.float32)).audio_s == pytest.approx(0.5)


# ------------------------------------------------------------------ loading adapters


def test_load_adapter_checks_the_models(encoder: WhisperEncoder, llm: LLM, speech: np.ndarray,
                                        tmp_path: Path) -> None:
    pipe = Pipeline(encoder, llm, chatty(encoder, llm), generation=GEN, adapter_id='before')
    good = save_adapter(tmp_path / 'good', one_token(encoder, llm), {'encoder': encoder.identity, 'llm': llm.identity})
    meta = pipe.load_adapter(good)
    assert meta['adapter_id'] == 'good' and pipe.adapter_id == 'good'
    assert pipe.respond(speech).n_audio_tokens == 1
    assert Pipeline.adapter_metadata(good)['adapter_id'] == 'good'

    other_llm = {**llm.identity, 'name': 'SmolLM2-135M-Instruct', 'sha256': '0' * 64}
    bad = save_adapter(tmp_path / 'bad', chatty(encoder, llm), {'encoder': encoder.identity, 'llm': other_llm})
    with pytest.raises(AdapterError, match='SmolLM2-135M-Instruct'):
        pipe.load_adapter(bad)
    assert pipe.adapter_id == 'good'  # the refused adapter did not replace the active one
    assert pipe.respond(speech).n_audio_tokens == 1


def test_from_config_builds_everything(tiny_whisper_path: Path, tiny_llm_path: Path, encoder: WhisperEncoder,
                                       llm: LLM, speech: np.ndarray, tmp_path: Path) -> None:
    adapter = save_adapter(tmp_path / 'r2', one_token(encoder, llm), {'encoder': encoder.identity, 'llm': llm.identity})
    config = AssistantConfig(encoder=EncoderSettings(model=str(tiny_whisper_path), cpu_threads=1),
                             llm=LLMSettings(model=str(tiny_llm_path)), adapter=str(adapter),
                             generation=GenerationConfig(max_new_tokens=3), max_utterance_s=10.0,
                             prompt=PromptConfig(instruction='Repeat.'))
    pipe = Pipeline.from_config(config)
    assert pipe.adapter_id == 'r2'
    assert pipe.max_utterance_s == 10.0 and pipe.prompt.instruction == 'Repeat.'
    assert pipe.generation.max_new_tokens == 3
    response = pipe.respond(speech)
    assert response.adapter_id == 'r2' and response.n_audio_tokens == 1


# ------------------------------------------------------------------ auto: per-utterance routing


def test_auto_answers_from_the_audio_when_the_head_is_sure(encoder: WhisperEncoder, llm: LLM, speech: np.ndarray,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = Pipeline(encoder, llm, one_token(encoder, llm), generation=GEN, adapter_id='sure', route_threshold=0.5)
    heard = []
    n_frames = encoder.features(speech).shape[0]

    def second_pass(audio: np.ndarray, **_: object) -> str:
        raise AssertionError('auto mode encoded the utterance a second time')

    def from_window(encoding: Any, **_: object) -> str:
        assert encoding.features.shape[0] == n_frames
        assert encoding.full.shape[0] >= encoding.features.shape[0]
        heard.append(1)
        return 'turn left'

    monkeypatch.setattr(pipe.encoder, 'transcribe', second_pass)
    monkeypatch.setattr(pipe.encoder, 'transcribe_encoded', from_window)
    response = pipe.respond(speech, mode='auto')
    assert response.mode == 'aligned' and response.n_audio_tokens == 1 and heard == []  # Whisper never ran
    assert response.extra['requested'] == 'auto' and response.extra['confidence'] > 0.5
    assert response.extra['threshold'] == 0.5 and response.adapter_id == 'sure'
    check_latency(response)
    assert response.text == pipe.respond(speech, mode='aligned').text  # the same answer as aligned mode

    pipe.set_route_threshold(1.2)  # no reading is that sure: every utterance goes to Whisper
    calls = encoder.encode_calls
    response = pipe.respond(speech, mode='auto')
    assert response.mode == 'cascade' and response.transcript == 'turn left' and heard == [1]
    assert encoder.encode_calls == calls + 1  # Whisper read the window the projector's features came from
    assert response.extra['whisper_window'] == 'fitted'
    assert response.extra['confidence'] < 1.2 and response.adapter_id is None
    check_latency(response)


def test_auto_sends_what_the_projector_did_not_hear_to_whisper(encoder: WhisperEncoder, llm: LLM,
                                                               speech: np.ndarray,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = Pipeline(encoder, llm, silent(encoder, llm), generation=GEN, adapter_id='deaf')
    monkeypatch.setattr(pipe.encoder, 'transcribe', lambda audio, **_: 'turn left')
    monkeypatch.setattr(pipe.encoder, 'transcribe_encoded', lambda encoding, **_: 'turn left')
    response = pipe.respond(speech, mode='auto')
    assert response.mode == 'cascade' and response.extra['confidence'] == 0.0 and response.transcript == 'turn left'
    no_adapter = Pipeline(encoder, llm, None, generation=GEN)
    assert no_adapter.respond(speech, mode='auto').mode == 'cascade'


def test_the_threshold_comes_with_the_adapter(encoder: WhisperEncoder, llm: LLM, tmp_path: Path) -> None:
    from tinyalign_ros.routing import DEFAULT_THRESHOLD

    pipe = Pipeline(encoder, llm, chatty(encoder, llm), generation=GEN)
    assert pipe.route_threshold == DEFAULT_THRESHOLD
    ids = {'encoder': encoder.identity, 'llm': llm.identity}
    personal = save_adapter(tmp_path / 'personal', one_token(encoder, llm), {**ids, 'routing': {'threshold': 0.31}})
    pipe.load_adapter(personal)
    assert pipe.route_threshold == 0.31
    plain = save_adapter(tmp_path / 'plain', one_token(encoder, llm), ids)
    pipe.load_adapter(plain)  # an adapter without a learned threshold brings back the default
    assert pipe.route_threshold == DEFAULT_THRESHOLD
    for bad in (-0.1, 2.0, 'high'):
        with pytest.raises((PipelineError, ValueError)):
            pipe.set_route_threshold(bad)
    assert pipe.route_threshold == DEFAULT_THRESHOLD
