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
The assistant: one object that turns an utterance into a response.

Aligned mode runs encoder -> projector -> LLM (the projected audio is injected between the prompt's
instruction text); cascade mode runs Whisper transcription -> the same LLM and prompt with the
transcript in place of the audio. Auto mode decides per utterance: the aligned path answers when its
token head is sure enough of what it heard (:mod:`tinyalign_ros.routing`; the threshold is learned
per operator at personalization time), else Whisper transcribes. Both paths of auto mode share one
encoder pass over the utterance's fitted window: Whisper's decoder reads that window's output
(:meth:`WhisperEncoder.transcribe_encoded`) rather than a second, 30 s encoding, which is what lets
an unsure utterance fall back without paying the cascade's whole encoder (on the CPU; elsewhere
Whisper still encodes its 30 s window). Every response says which path answered and where the
time went, so a robot engineer can see whether the encoder, the projector or the LLM is the
bottleneck.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
import logging
from pathlib import Path
import threading
import time
from typing import Any, Callable

import numpy as np

from .adapter import load_adapter, read_metadata
from .audio import SAMPLE_RATE, validate
from .config import AssistantConfig
from .encoder import WhisperEncoder, WindowPolicy
from .fusion import fuse, FusionConfig
from .llm import GenerationConfig, GenerationResult, LLM, PromptConfig
from .memory import release_memory
from .projector import new_projector, Projector
from .routing import confidence, DEFAULT_THRESHOLD, MODES

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / 'assets'
BASE_ADAPTER = ASSETS / 'base_adapter'


class PipelineError(RuntimeError):
    """A request the pipeline cannot serve (unknown mode, no adapter for aligned mode, ...)."""


@dataclass
class Response:
    """One answer, with its latency breakdown in milliseconds."""

    text: str
    mode: str  # the path that answered: 'aligned' or 'cascade' (also when 'auto' was asked for)
    audio_s: float
    latency_ms: dict[str, float]
    truncated: bool = False
    adapter_id: str | None = None
    transcript: str | None = None  # what the cascade heard (cascade mode only)
    heard: str | None = None  # what the aligned path read: its injected tokens' best rows, decoded (aligned only)
    n_audio_tokens: int = 0  # embeddings injected for the audio (aligned mode only)
    extra: dict[str, Any] = field(default_factory=dict)  # auto mode: requested, confidence, threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def shipped_adapter_path() -> Path | None:
    """Return the base adapter shipped with the package for the embedded model pair, if present."""
    return BASE_ADAPTER if (BASE_ADAPTER / 'adapter.json').is_file() else None


class Pipeline:
    """Encoder + projector + LLM, with a thread-safe adapter swap for live personalization."""

    def __init__(self, encoder: WhisperEncoder, llm: LLM, projector: Projector | None = None,
                 prompt: PromptConfig | None = None, generation: GenerationConfig | None = None,
                 adapter_id: str | None = None, max_utterance_s: float = 30.0,
                 route_threshold: float | None = None, fusion: FusionConfig | None = None) -> None:
        self.encoder = encoder
        self.llm = llm
        self.prompt = prompt or PromptConfig()
        self.generation = generation or GenerationConfig()
        self.fusion = fusion or FusionConfig()
        self.max_utterance_s = max_utterance_s
        self._lock = threading.Lock()
        self._projector = projector
        self._adapter_id = adapter_id
        self._route_threshold = DEFAULT_THRESHOLD
        if route_threshold is not None:
            self.set_route_threshold(route_threshold)
        if projector is not None and not projector.is_bound:
            projector.bind_llm(llm.embedding_matrix)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: AssistantConfig | None = None) -> Pipeline:
        """Load the models and the adapter a config names (the shipped base adapter by default)."""
        config = config or AssistantConfig()
        encoder = WhisperEncoder(
            config.encoder.model, device=config.encoder.device, compute_type=config.encoder.compute_type,
            cpu_threads=config.encoder.cpu_threads, policy=WindowPolicy(tuple(config.encoder.windows_s)),
            cache_dir=config.encoder.cache_dir,
        )
        llm = LLM(config.llm.model, dtype=config.llm.dtype, threads=config.llm.threads, device=config.llm.device)
        pipeline = cls(encoder, llm, None, config.prompt, config.generation,
                       max_utterance_s=config.max_utterance_s, fusion=config.fusion)
        adapter = config.adapter or shipped_adapter_path()
        if adapter is not None:
            pipeline.load_adapter(adapter)
        else:
            log.warning('no adapter configured and none shipped: the aligned path uses an untrained '
                        'projector (run `tinyalign align` to train one)')
            pipeline.set_adapter(new_projector(encoder, llm), 'untrained')
        # Loading frees a lot it allocated on the way (the tokenizer's build, the adapter file's tensors);
        # handing that back before the first answer keeps it out of the answer's peak (about 35 MiB).
        release_memory()
        return pipeline

    # -- adapters -----------------------------------------------------------------------------
    @property
    def projector(self) -> Projector | None:
        return self._projector

    @property
    def adapter_id(self) -> str | None:
        return self._adapter_id

    def set_adapter(self, projector: Projector | None, adapter_id: str | None) -> None:
        """Swap the projector; requests already running finish with the one they started with."""
        if projector is not None:
            if not projector.is_bound:
                projector.bind_llm(self.llm.embedding_matrix)
            projector.eval()
        with self._lock:
            self._projector, self._adapter_id = projector, adapter_id

    def load_adapter(self, path: str | Path) -> dict[str, Any]:
        """
        Load an adapter folder, checked against the loaded models, and make it active.

        It comes with the auto-mode threshold its personalization learned, else the default one.
        """
        projector, meta = load_adapter(path, self.encoder.identity, self.llm.identity,
                                       self.llm.embedding_matrix)
        self.set_adapter(projector, meta.get('adapter_id', Path(path).name))
        threshold = (meta.get('routing') or {}).get('threshold')
        self.set_route_threshold(DEFAULT_THRESHOLD if threshold is None else threshold)
        return meta

    @property
    def route_threshold(self) -> float:
        """Auto mode answers from the projected audio when its confidence is at least this."""
        return self._route_threshold

    def set_route_threshold(self, threshold: float) -> None:
        """Set the auto-mode threshold (an operator's comes from their adapter's personalization)."""
        value = float(threshold)
        if not 0.0 <= value <= 1.5:  # margins lie in [0, 1]; above 1 = always the cascade
            raise PipelineError(f'route threshold must be a confidence margin in [0, 1.5], got {threshold!r}')
        self._route_threshold = value

    @staticmethod
    def adapter_metadata(path: str | Path) -> dict[str, Any]:
        return read_metadata(path)

    # -- answering ----------------------------------------------------------------------------
    def respond(self, audio: np.ndarray, mode: str = 'aligned', on_token: Callable[[str], None] | None = None,
                prompt: PromptConfig | None = None, generation: GenerationConfig | None = None) -> Response:
        """Answer one utterance (float32 mono 16 kHz) in ``mode``; ``on_token`` streams the answer."""
        if mode not in MODES:
            raise PipelineError(f'mode must be one of {MODES}, got {mode!r}')
        audio = validate(audio, max_seconds=self.max_utterance_s)
        prompt = prompt or self.prompt
        generation = generation or self.generation
        with self._lock:
            projector, adapter_id, threshold = self._projector, self._adapter_id, self._route_threshold
        start = time.perf_counter()
        transcript = heard = None
        n_audio = 0
        extra: dict[str, Any] = {}
        path = mode
        features = None
        encoding = None
        if mode == 'auto':
            if projector is None:  # nothing to route to but Whisper
                path = 'cascade'
                extra = {'requested': 'auto', 'confidence': None, 'threshold': threshold}
            else:
                # One encoder pass serves both paths: the projector reads its features and, when
                # it is unsure, Whisper's decoder reads the same window (module docstring).
                encoding = self.encoder.encode_window(audio)
                features = encoding.features
                sure = confidence(projector, features)
                path = 'aligned' if sure.margin >= threshold else 'cascade'
                extra = {'requested': 'auto', 'confidence': round(sure.margin, 4), 'threshold': threshold,
                         'route_ms': round((time.perf_counter() - start) * 1000.0, 2)}
        if path == 'aligned':
            if projector is None:
                raise PipelineError('aligned mode needs an adapter; load one or use cascade mode')
            if features is None:
                features = self.encoder.features(audio)
            t_encoded = time.perf_counter()
            ids, embeds = self.read(projector, features, prompt)
            heard = self.llm.tokenizer.decode(ids, skip_special_tokens=True).strip()
            n_audio = int(embeds.shape[0])
            inputs = self.llm.build_inputs(embeds, prompt) if n_audio else None
        else:
            if encoding is not None and self.encoder.device == 'cpu':
                transcript = self.encoder.transcribe_encoded(encoding)
                extra['whisper_window'] = 'fitted'
            else:
                transcript = self.encoder.transcribe(audio)
            t_encoded = time.perf_counter()
            inputs = self.llm.build_text_inputs(transcript, prompt) if transcript.strip() else None
        t_projected = time.perf_counter()
        if inputs is None:
            # Nothing was heard (a cough, a door): no words to answer, and no LLM call to pay for.
            result = GenerationResult(text='', token_ids=[], n_tokens=0, first_token_s=0.0, total_s=0.0,
                                      stopped_by='eos', truncated=False)
        else:
            # The answer budget follows the question's length: audio positions or transcript tokens.
            question = n_audio if path == 'aligned' else len(self.llm.tokenize(transcript or ''))
            result = self.llm.generate(inputs, generation, on_token=on_token, question_tokens=question,
                                       prefix_ids=self.llm.prompt_parts(prompt)[0])
        end = time.perf_counter()
        latency = {
            'encode': (t_encoded - start) * 1000.0,
            'project': (t_projected - t_encoded) * 1000.0,
            'first_token': (t_projected - start + result.first_token_s) * 1000.0,
            'total': (end - start) * 1000.0,
        }
        return Response(
            text=result.text, mode=path, audio_s=len(audio) / SAMPLE_RATE, latency_ms=latency,
            truncated=result.truncated, adapter_id=adapter_id if path == 'aligned' else None,
            transcript=transcript, heard=heard, n_audio_tokens=n_audio, extra=extra,
        )

    def read(self, projector: Projector, features: np.ndarray,
             prompt: PromptConfig | None = None) -> tuple[list[int], Any]:
        """
        Read one utterance on the aligned path: (token ids heard, embeddings to inject [n, llm_dim]).

        The projector's reading, fused with the LLM's prior when fusion is on (and the LLM can score).
        """
        if not self.fusion.enabled or self.llm.model is None:
            return projector.read(features, self.llm.piece_texts)
        context, after = self.llm.prompt_parts(prompt or self.prompt)
        return fuse(projector, self.llm, features, context, self.fusion, end_id=after[0] if after else None)

    def with_prompt(self, **changes: Any) -> PromptConfig:
        """Copy the current prompt with some fields changed (used by evaluation)."""
        return replace(self.prompt, **changes)
