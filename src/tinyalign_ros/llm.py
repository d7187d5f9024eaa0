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
The frozen causal LLM: loading, prompt building around injected embeddings, generation, NLL.

The aligned path never hands the LLM text: it hands it a sequence of input embeddings in which a
run of projected audio vectors sits inside an ordinary chat prompt. Everything here therefore works
on ``inputs_embeds`` rather than token ids, and the prompt is built by rendering the model's own chat
template around a placeholder, so the LLM sees exactly the turn structure it was tuned on.

GGUF files (the embedded SmolLM2 is one) are converted once into a plain transformers folder in a
cache (:mod:`tinyalign_ros.model_files`), so the model loads in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import contextlib
import copy
from dataclasses import dataclass, field
import hashlib
import inspect
import json
import math
from pathlib import Path
import threading
import time
from typing import Any
import warnings

import torch

from .device import dtype_name, resolve_device, resolve_dtype
from .model_files import COMPLETE_MARKER, file_sha256, LLMError, resolve_llm_path

PLACEMENTS = ('before', 'after', 'both')
# The audio (or user text) goes where this string lands in the rendered chat template.
PLACEHOLDER = '<<TINYALIGN_USER_CONTENT>>'
WEIGHT_SUFFIXES = ('.safetensors', '.bin', '.pt', '.pth')
# What a punctuation-only token may hold (:attr:`LLM.punctuation_ids`).
PUNCTUATION = '.,?!;:\'"-()[]…'


# --------------------------------------------------------------------------------------------
# Configuration and results


# What the assistant is, said once before every exchange. A 135M-parameter LLM answers more questions
# and more briefly when told its role and shown questions and a command answered in one sentence that
# names the answer (docs/results.md, "The prompt"; four more factual exchanges raised the text LLM on
# the QA dev split from 0.71 to 0.82). The examples are deliberately far from the packaged question sets;
# the garbled one teaches it to ask again instead of echoing an example (or claiming an action) when it
# cannot make sense of what it heard.
ROBOT_SYSTEM = 'You are the voice assistant of a robot. Answer the question in one short sentence.'
ROBOT_EXAMPLES = (
    'Who invented the telephone?', 'Alexander Graham Bell invented the telephone.',
    'How many players are on a soccer team?', 'A soccer team has eleven players.',
    'Please turn on the lights.', 'Okay, I am turning on the lights.',
    'Which metal is liquid at room temperature?', 'Mercury is liquid at room temperature.',
    'What do caterpillars turn into?', 'Caterpillars turn into butterflies.',
    'How many strings does a violin have?', 'A violin has four strings.',
    'Who was the first person on the moon?', 'Neil Armstrong was the first person on the moon.',
    'Grey the quickly under of sing?', 'Sorry, I did not understand. Could you say that again?',
)


@dataclass
class PromptConfig:
    """
    How the instruction is injected around the audio (or user text) inside the user turn.

    ``after_instruction`` is the text placed after the audio when placement is 'after' or 'both';
    it defaults to ``instruction``. ``system`` replaces the template's default system prompt (None:
    keep the template's own). ``examples`` are earlier turns shown before the user's, alternating
    user and assistant text (an even number of strings; empty: none): they set the answers' style.
    """

    instruction: str = 'Answer the question that follows.'
    placement: str = 'before'
    system: str | None = ROBOT_SYSTEM
    after_instruction: str | None = None
    examples: tuple[str, ...] = ROBOT_EXAMPLES

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ValueError(f'placement must be one of {PLACEMENTS}, got {self.placement!r}')
        self.examples = tuple(self.examples)
        if len(self.examples) % 2 or any(not isinstance(t, str) or not t.strip() for t in self.examples):
            raise ValueError('prompt examples alternate user and assistant turns: an even number of '
                             f'non-empty strings, got {len(self.examples)}')

    @property
    def turns(self) -> list[tuple[str, str]]:
        """Return the example exchanges as (user, assistant) pairs."""
        return list(zip(self.examples[::2], self.examples[1::2]))

    @property
    def before_text(self) -> str:
        return self.instruction if self.placement in ('before', 'both') else ''

    @property
    def after_text(self) -> str:
        if self.placement not in ('after', 'both'):
            return ''
        return self.instruction if self.after_instruction is None else self.after_instruction


@dataclass
class GenerationConfig:
    """
    Decoding settings; ``seed`` makes sampling reproducible (greedy ignores it).

    A 135M-parameter LLM fed noisy projected audio readily falls into a loop ("but but but ...")
    and then talks until ``max_new_tokens``. Three settings keep answers short and loop-free:

    - ``repetition_penalty`` (> 1) lowers the score of tokens the answer already used, and
      ``no_repeat_ngram_size`` (> 0) forbids repeating any n-gram of that size in the answer
      (transformers' own logits processors; the prompt is not part of the answer, so copying
      words of the question stays free);
    - ``loop_repeats`` stops decoding as soon as the answer ends in the same span of 1 to
      :data:`LOOP_MAX_PERIOD` tokens repeated that many times in a row (0 = off); the token that
      would complete the loop is never emitted;
    - the answer budget ties the token limit to the question: a question of ``q`` tokens may be
      answered in ``max(budget_min_tokens, ceil(budget_per_question_token * q))`` tokens, never more
      than ``max_new_tokens`` (``budget_per_question_token = 0`` turns the tie off).
    """

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    stop: tuple[str, ...] = ()
    seed: int | None = None
    repetition_penalty: float = 1.1
    no_repeat_ngram_size: int = 4
    loop_repeats: int = 3
    budget_min_tokens: int = 32
    budget_per_question_token: float = 3.0

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = (self.stop,)
        self.stop = tuple(self.stop)
        if self.max_new_tokens < 1:
            raise ValueError(f'max_new_tokens must be >= 1, got {self.max_new_tokens}')
        if self.temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {self.temperature} (use do_sample=False for greedy)')
        if not 0 < self.top_p <= 1:
            raise ValueError(f'top_p must be in (0, 1], got {self.top_p}')
        if any(not s for s in self.stop):
            raise ValueError('stop strings must be non-empty')
        if self.repetition_penalty <= 0:
            raise ValueError(f'repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty}')
        if self.no_repeat_ngram_size < 0:
            raise ValueError(f'no_repeat_ngram_size must be >= 0 (0 = off), got {self.no_repeat_ngram_size}')
        if self.loop_repeats < 0 or self.loop_repeats == 1:
            raise ValueError(f'loop_repeats must be 0 (off) or >= 2, got {self.loop_repeats}')
        if self.budget_min_tokens < 1:
            raise ValueError(f'budget_min_tokens must be >= 1, got {self.budget_min_tokens}')
        if self.budget_per_question_token < 0:
            raise ValueError(f'budget_per_question_token must be >= 0 (0 = off), got {self.budget_per_question_token}')

    def budget(self, question_tokens: int | None = None) -> int:
        """Answer tokens allowed for a question of ``question_tokens`` tokens (None: unknown)."""
        if question_tokens is None or self.budget_per_question_token == 0:
            return self.max_new_tokens
        tied = max(self.budget_min_tokens, math.ceil(self.budget_per_question_token * max(question_tokens, 0)))
        return min(self.max_new_tokens, tied)


# A loop longer than this many tokens per repetition is left to the budget and the n-gram ban.
LOOP_MAX_PERIOD = 16


def loop_start(ids: Sequence[int], repeats: int, max_period: int = LOOP_MAX_PERIOD) -> int | None:
    """
    Where the trailing loop starts when ``ids`` ends in one span repeated ``repeats`` times, else None.

    Checked after every token, so only loops that end at the last token matter; the shortest
    period is reported first ("a a a" is a loop of "a", not of "a a").
    """
    if repeats < 2:
        return None
    n = len(ids)
    for period in range(1, max_period + 1):
        span = period * repeats
        if span > n:
            break
        tail = list(ids[n - period:])
        if all(list(ids[n - (k + 1) * period:n - k * period]) == tail for k in range(1, repeats)):
            return n - span
    return None


@dataclass
class GenerationResult:
    """
    What ``LLM.generate`` produced.

    ``stopped_by`` is 'eos' (the model ended its turn), 'stop' (a stop string), 'loop' (a repeated
    span, see :func:`loop_start`) or 'length' (the answer budget); ``truncated`` is True for 'length'.
    ``max_new_tokens`` is the budget that applied.
    """

    text: str
    token_ids: list[int] = field(default_factory=list)
    n_tokens: int = 0
    first_token_s: float = 0.0
    total_s: float = 0.0
    stopped_by: str = 'length'
    truncated: bool = False
    max_new_tokens: int = 0


# --------------------------------------------------------------------------------------------
# Incremental detokenization


class TextStream:
    """
    Turns a growing list of token ids into text pieces that always join to the final text.

    Byte-level BPE can split one UTF-8 character over several tokens, so decoding token by token
    produces replacement characters; instead the whole id list is decoded each step and only the
    new, settled suffix is emitted. A trailing replacement character is held back until the next
    token completes it, and so is any tail that could be the start of a stop string, so the caller
    never receives text that is later cut away.
    """

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str] = ()) -> None:
        self._decode = decode
        self._stop = tuple(stop)
        self.ids: list[int] = []
        self.emitted = ''
        self.text = ''
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add one token; return the newly settled text (possibly empty)."""
        self.ids.append(int(token_id))
        self.text = self._decode(self.ids)
        cut = self._find_stop(self.text)
        if cut is not None:
            self.text = self.text[:cut]
            self.stopped = True
            return self._emit_upto(len(self.text))
        settled = len(self.text.rstrip('\ufffd'))
        settled = min(settled, self._stop_prefix_start(self.text[:settled]))
        return self._emit_upto(settled)

    def finish(self) -> str:
        """Flush whatever was held back; call once generation is over."""
        return self._emit_upto(len(self.text))

    def _emit_upto(self, end: int) -> str:
        if end <= len(self.emitted) or not self.text.startswith(self.emitted):
            return ''
        piece = self.text[len(self.emitted):end]
        self.emitted += piece
        return piece

    def _find_stop(self, text: str) -> int | None:
        """Index of the earliest stop string, searching only where a new one could have appeared."""
        if not self._stop:
            return None
        longest = max(len(s) for s in self._stop)
        start = max(0, len(self.emitted) - longest)
        hits = [i for i in (text.find(s, start) for s in self._stop) if i >= 0]
        return min(hits) if hits else None

    def _stop_prefix_start(self, text: str) -> int:
        """Start of the longest tail of ``text`` that is a proper prefix of some stop string."""
        for start in range(max(0, len(text) - max((len(s) for s in self._stop), default=0) + 1), len(text)):
            tail = text[start:]
            if any(s.startswith(tail) for s in self._stop):
                return start
        return len(text)


# --------------------------------------------------------------------------------------------
# The model


EMBEDDING_KEYS = ('embed_tokens.weight', 'wte.weight', 'word_embeddings.weight')


def _read_embedding_table(folder: Path) -> torch.Tensor | None:
    """
    Read the input-embedding table alone from a safetensors checkpoint.

    Return None when the folder has no safetensors file holding one under a known name (the caller
    then loads the model).
    """
    from safetensors import safe_open

    for weights in sorted(folder.glob('*.safetensors')):
        try:
            with safe_open(str(weights), framework='pt') as f:
                for key in f.keys():
                    if key.endswith(EMBEDDING_KEYS):
                        return f.get_tensor(key)
        except (OSError, ValueError, RuntimeError) as exc:
            raise LLMError(f'cannot read {weights}: {exc}') from exc
    return None


class LLM:
    """
    A frozen causal LM driven with input embeddings.

    ``path_or_spec`` is a transformers folder, a .gguf file, or None for the embedded SmolLM2.
    The model is put in eval mode with gradients off: nothing here trains it. ``threads`` calls
    ``torch.set_num_threads`` (process-wide); on a busy 2-core machine 1 thread decodes several
    times faster than 2, because torch's threads spin while competing with other processes.
    Weights are memory-mapped, so RSS grows by the model size on the first forward pass.

    ``dtype`` (a ``torch.dtype`` or its name) is the precision the weights are held and run in;
    a converted GGUF is stored in that precision, so nothing is cast (or copied) at load time.
    ``device`` is cpu, cuda or auto (:mod:`tinyalign_ros.device`); cuda without a GPU is refused
    with a :class:`~tinyalign_ros.device.DeviceError` before anything loads.

    ``embeddings_only`` loads the tokenizer and the input-embedding table and nothing else: the
    LLM-free training objectives need no more, and the transformer weights are most of the memory.
    Generation and scoring then raise :class:`LLMError`.
    """

    def __init__(self, path_or_spec: str | Path | None = None, dtype: torch.dtype | str = torch.float32,
                 threads: int | None = None, embeddings_only: bool = False, device: str = 'cpu') -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        if threads is not None:
            if threads < 1:
                raise ValueError(f'threads must be >= 1, got {threads}')
            torch.set_num_threads(threads)
        dtype = resolve_dtype(dtype, 'llm.dtype') if isinstance(dtype, str) else dtype
        self.device = torch.device(resolve_device(device, 'llm.device', backend='torch'))
        self.path = resolve_llm_path(path_or_spec, dtype_name(dtype))
        try:
            config = AutoConfig.from_pretrained(self.path, local_files_only=True)
        except (ValueError, OSError, KeyError) as exc:
            raise LLMError(f'cannot read the model config in {self.path}: {exc}') from exc
        if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
            raise LLMError(
                f'{self.path} holds a {config.model_type!r} model, which is not a causal language model'
            )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        except (ValueError, OSError, TypeError) as exc:
            raise LLMError(f'cannot load the tokenizer in {self.path}: {exc}') from exc
        self.config = config
        self.model: Any = None
        self._embeddings = _read_embedding_table(self.path) if embeddings_only else None
        if self._embeddings is None:
            try:
                self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype, local_files_only=True)
                if self.device.type != 'cpu':
                    self.model.to(self.device)
            except (ValueError, OSError, RuntimeError) as exc:
                raise LLMError(f'cannot load the model weights in {self.path} '
                               f'({dtype_name(dtype)} on {self.device}): {exc}') from exc
            self.model.eval()
            self.model.requires_grad_(False)
            if embeddings_only:  # no safetensors table to read alone: keep the rows, drop the rest
                self._embeddings = self.model.get_input_embeddings().weight.detach().clone()
                self.model = None
        if self._embeddings is not None:
            self._embeddings = self._embeddings.to(device=self.device, dtype=dtype)
        self.dtype = dtype
        self.hidden_size = int(self.embedding_matrix.shape[1])
        self.eos_token_ids = self._find_eos_ids()
        accepts = inspect.signature(self.model.forward).parameters if self.model is not None else {}
        self._last_logits_only = {'logits_to_keep': 1} if 'logits_to_keep' in accepts else {}
        self._sha256: str | None = None
        self._parts_cache: dict[tuple, tuple[list[int], list[int]]] = {}
        self._punctuation: frozenset[int] | None = None
        self._pieces: list[str] | None = None
        self._prefix_lock = threading.Lock()
        self._prefix: tuple[tuple[int, ...], Any] | None = None

    # ----- identity and embeddings

    @property
    def name(self) -> str:
        meta = self.path / COMPLETE_MARKER
        if meta.is_file():
            return json.loads(meta.read_text())['name']
        return self.path.name

    @property
    def sha256(self) -> str:
        """Return the GGUF's hash for converted models, otherwise a hash over the weight files (lazy)."""
        if self._sha256 is None:
            meta = self.path / COMPLETE_MARKER
            if meta.is_file():
                self._sha256 = json.loads(meta.read_text())['sha256']
            else:
                digest = hashlib.sha256()
                for weight in sorted(p for p in self.path.iterdir() if p.suffix in WEIGHT_SUFFIXES):
                    digest.update(weight.name.encode())
                    digest.update(file_sha256(weight).encode())
                self._sha256 = digest.hexdigest()
        return self._sha256

    @property
    def identity(self) -> dict:
        """Describe this LLM as an adapter records it, to refuse being loaded onto a different LLM."""
        return {'name': self.name, 'sha256': self.sha256, 'hidden_size': self.hidden_size,
                'vocab_size': int(self.embedding_matrix.shape[0])}

    @property
    def embedding_matrix(self) -> torch.Tensor:
        """Return the input embedding weight [vocab, hidden] itself (no copy): EmbedLink's target space."""
        if self.model is None:
            return self._embeddings
        return self.model.get_input_embeddings().weight

    @property
    def punctuation_ids(self) -> frozenset[int]:
        """
        Ids of the tokens that are only punctuation: "?", ".", ",", quotes, brackets and the like.

        Why: a speaker does not say "?" or "."; the token head guesses them from the words, and the
        fusion lets the LLM's prior decide them instead (:attr:`FusionConfig.punctuation_weight`).
        """
        if self._punctuation is None:
            marks = set(PUNCTUATION)
            pieces = [text.strip() for text in self.piece_texts]
            self._punctuation = frozenset(i for i, text in enumerate(pieces) if text and set(text) <= marks)
        return self._punctuation

    @property
    def piece_texts(self) -> list[str]:
        """
        Each token id's text as the tokenizer spells it alone; a leading space marks a word's start.

        The projector's reading uses it to drop a word piece emitted twice (:func:`projector.repeats_word_end`).
        Computed once per LLM (0.1 s for SmolLM2's 49,152 tokens); rows of the embedding table past the
        tokenizer's (padding some models add) spell nothing.
        """
        if self._pieces is None:
            tokens = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
            pieces = [self.tokenizer.convert_tokens_to_string([t]) if t is not None else '' for t in tokens]
            self._pieces = pieces + [''] * max(0, int(self.embedding_matrix.shape[0]) - len(pieces))
        return self._pieces

    def require_model(self) -> Any:
        """Return the transformers model; raise a clear error when only the embedding table was loaded."""
        if self.model is None:
            raise LLMError(f'{self.path} was loaded with embeddings only; generation and scoring need the '
                           'whole model')
        return self.model

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` without BOS/EOS; special-token strings in it stay single tokens."""
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=False)['input_ids'])

    def _tokenize_user(self, text: str) -> list[int]:
        """Like ``tokenize`` but a literal '<|im_end|>' in user text cannot close the turn."""
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)['input_ids'])

    def embed_ids(self, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Embedding rows for ``ids`` as a [n, hidden] tensor."""
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1).to(self.device)
        vocab = self.embedding_matrix.shape[0]
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
            raise LLMError(f'token ids must be in [0, {vocab}), got range [{int(ids.min())}, {int(ids.max())}]')
        with torch.no_grad():
            return self.embedding_matrix[ids]

    def embed_text(self, text: str) -> torch.Tensor:
        """Embeddings of ``text``'s tokens (no special tokens added), [n, hidden]."""
        return self.embed_ids(self.tokenize(text))

    # ----- prompts

    def prompt_parts(self, prompt: PromptConfig) -> tuple[list[int], list[int]]:
        r"""
        Return the token ids that go before and after the user content (audio or text).

        With a chat template: the template is rendered with a placeholder as the user message and
        split there; the instruction sits inside the user turn, separated from the content by a
        newline. Without a chat template (a base model) the layout is plain text:
        ``[system\n][instruction\n]<content>[\nafter_instruction]\n``.
        """
        key = (prompt.instruction, prompt.placement, prompt.system, prompt.after_instruction, prompt.examples)
        if key not in self._parts_cache:
            before, after = self._render_around_placeholder(prompt.system, prompt.turns)
            if prompt.before_text:
                before += prompt.before_text + '\n'
            if prompt.after_text:
                after = '\n' + prompt.after_text + after
            self._parts_cache[key] = (self.tokenize(before), self.tokenize(after))
        before_ids, after_ids = self._parts_cache[key]
        return list(before_ids), list(after_ids)

    def _render_around_placeholder(self, system: str | None,
                                   turns: Sequence[tuple[str, str]] = ()) -> tuple[str, str]:
        if not getattr(self.tokenizer, 'chat_template', None):
            lines = ([system] if system else []) + [line for turn in turns for line in turn]
            return ''.join(line + '\n' for line in lines), '\n'
        messages = ([{'role': 'system', 'content': system}] if system else [])
        for user, assistant in turns:
            messages += [{'role': 'user', 'content': user}, {'role': 'assistant', 'content': assistant}]
        messages.append({'role': 'user', 'content': PLACEHOLDER})
        rendered = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if rendered.count(PLACEHOLDER) != 1:
            raise LLMError('the chat template did not place the user message verbatim; '
                           'cannot inject embeddings into it')
        before, after = rendered.split(PLACEHOLDER)
        self._check_special_tokens(before + after)
        return before, after

    def _check_special_tokens(self, text: str) -> None:
        """Refuse a template whose markers (e.g. <|im_start|>) do not become their single special ids."""
        ids = set(self.tokenize(text))
        for token in self.tokenizer.all_special_tokens:
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if token in text and token_id not in ids:
                raise LLMError(f'special token {token!r} in the chat template is not tokenized as one id')

    def build_inputs(self, audio_embeds: torch.Tensor, prompt: PromptConfig) -> torch.Tensor:
        """Chat prompt embeddings with ``audio_embeds`` [n, hidden] as the user content: [1, L, hidden]."""
        audio_embeds = self._check_embeds(audio_embeds, 'audio_embeds', ndim=2)
        return self._wrap(audio_embeds, prompt)

    def build_text_inputs(self, user_text: str, prompt: PromptConfig) -> torch.Tensor:
        """
        Build the same prompt with the user text's token embeddings where the audio would be.

        Used by the cascade and as the 'text ceiling' of the aligned path: the two differ only in
        the content run.
        """
        if not user_text.strip():
            raise LLMError('user_text is empty')
        return self._wrap(self.embed_ids(self._tokenize_user(user_text)), prompt)

    def _wrap(self, content: torch.Tensor, prompt: PromptConfig) -> torch.Tensor:
        before_ids, after_ids = self.prompt_parts(prompt)
        parts = [self.embed_ids(before_ids), content, self.embed_ids(after_ids)]
        return torch.cat(parts, dim=0).unsqueeze(0)

    def _check_embeds(self, embeds: torch.Tensor, what: str, ndim: int) -> torch.Tensor:
        if not isinstance(embeds, torch.Tensor):
            raise LLMError(f'{what} must be a torch.Tensor, got {type(embeds).__name__}')
        if embeds.ndim != ndim or embeds.shape[-1] != self.hidden_size or embeds.shape[-2] == 0:
            want = '[n, hidden]' if ndim == 2 else '[1, L, hidden]'
            raise LLMError(f'{what} must be {want} with hidden={self.hidden_size}, got {tuple(embeds.shape)}')
        if ndim == 3 and embeds.shape[0] != 1:
            raise LLMError(f'{what} must have batch size 1, got {embeds.shape[0]}')
        if not torch.isfinite(embeds).all():
            raise LLMError(f'{what} contains NaN or Inf')
        return embeds.detach().to(device=self.device, dtype=self.dtype)

    # ----- generation and scoring

    def _find_eos_ids(self) -> set[int]:
        """Token ids that end the answer: the tokenizer's, the generation config's and ChatML's."""
        ids: set[int] = set()
        generation_config = getattr(self.model, 'generation_config', None)
        for source in (self.tokenizer.eos_token_id, getattr(generation_config, 'eos_token_id', None),
                       self.config.eos_token_id):
            if source is None:
                continue
            ids.update([source] if isinstance(source, int) else source)
        # ChatML models end a turn with <|im_end|> and a document with <|endoftext|>; either means
        # the answer is over even when the config names only one of them.
        special = set(self.tokenizer.all_special_tokens)
        for token in ('<|im_end|>', '<|endoftext|>'):
            if token in special:
                ids.add(self.tokenizer.convert_tokens_to_ids(token))
        return ids

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _hf_generation_config(self, config: GenerationConfig, budget: int) -> Any:
        """
        Build transformers' GenerationConfig for ``config``.

        It is built whole so the model folder's own generation defaults (a checkpoint may ship a
        temperature or top_k) never leak in.
        """
        from transformers import GenerationConfig as HFGenerationConfig

        eos = sorted(self.eos_token_ids)
        sampling = {'temperature': config.temperature, 'top_p': config.top_p, 'top_k': 0} if config.do_sample else {}
        return HFGenerationConfig(
            max_new_tokens=budget, do_sample=config.do_sample, num_beams=1, use_cache=True,
            repetition_penalty=config.repetition_penalty, no_repeat_ngram_size=config.no_repeat_ngram_size,
            eos_token_id=eos, pad_token_id=eos[0] if eos else None, **sampling)

    def generate(self, inputs_embeds: torch.Tensor, config: GenerationConfig | None = None,
                 on_token: Callable[[str], None] | None = None,
                 question_tokens: int | None = None, prefix_ids: Sequence[int] | None = None) -> GenerationResult:
        """
        Decode from a prompt given as embeddings with transformers' ``generate``.

        ``prefix_ids``: the token ids whose embeddings begin ``inputs_embeds`` (the prompt before the
        user content, :meth:`prompt_parts`). Their keys and values are computed once per prompt and
        reused, so an answer does not pay for reading the same system text and examples again.

        The repetition controls are its logits processors; stop strings and loops are stopping
        criteria; a streamer turns each new token into settled text for ``on_token`` (the pieces
        join to exactly ``result.text``). Stops at an end-of-turn token, a stop string (the stop
        string and anything after it are cut from the text), a loop (the token completing it is
        dropped) or the answer budget, ``config.budget(question_tokens)`` tokens.
        """
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        config = config or GenerationConfig()
        model = self.require_model()
        embeds = self._check_embeds(inputs_embeds, 'inputs_embeds', ndim=3)
        budget = config.budget(question_tokens)
        eos_ids = set(self.eos_token_ids)
        stream = TextStream(self._decode, config.stop)
        state: dict[str, Any] = {'stopped_by': 'length', 'first_token_s': None, 'prompt_seen': False,
                                 'loop': False, 'ended': False}
        start = time.perf_counter()

        decode = self._decode

        class _Stop(StoppingCriteria):
            """
            Stop at a loop or a stop string.

            transformers calls it on the answer's ids before handing the newest token to the
            streamer, which then knows whether to say it.
            """

            def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.Tensor:
                ids = [int(i) for i in input_ids[0]]
                done = False
                if ids and ids[-1] not in eos_ids:  # an end-of-turn token is the EOS criterion's
                    if config.loop_repeats and loop_start(ids, config.loop_repeats) is not None:
                        state['loop'] = done = True
                    elif config.stop and any(s in decode(ids) for s in config.stop):
                        done = True  # the streamer's TextStream cuts the text at the stop string
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        class _Streamer(BaseStreamer):
            """Feeds each new token into the TextStream and the caller's callback."""

            def put(self, value: torch.Tensor) -> None:
                if not state['prompt_seen']:  # generate first announces the prompt's ids (none here)
                    state['prompt_seen'] = True
                    return
                if state['first_token_s'] is None:
                    state['first_token_s'] = time.perf_counter() - start
                if state['ended']:
                    return
                token = int(value.reshape(-1)[0])
                if token in eos_ids:
                    state['stopped_by'], state['ended'] = 'eos', True
                    return
                if state.get('loop'):  # the token that completes a loop is never said
                    state['stopped_by'], state['ended'] = 'loop', True
                    return
                piece = stream.push(token)
                if piece and on_token is not None:
                    on_token(piece)
                if stream.stopped:
                    state['stopped_by'], state['ended'] = 'stop', True

            def end(self) -> None:
                pass

        seeded = config.do_sample and config.seed is not None
        # transformers samples from torch's global generator: a seeded call draws inside a fork of it,
        # so the process's random state is the same afterwards.
        rng = torch.random.fork_rng(devices=[]) if seeded else contextlib.nullcontext()
        with rng, torch.inference_mode(), warnings.catch_warnings():
            # transformers warns that with inputs_embeds the repetition controls see only the answer,
            # not the prompt: that is what is wanted (repeating the question's words is no loop).
            warnings.filterwarnings('ignore', message='Passing `(repetition_penalty|no_repeat_ngram_size)`')
            if seeded:
                torch.manual_seed(config.seed)
            attention = torch.ones(embeds.shape[:2], dtype=torch.long, device=self.device)
            past = self._prompt_keys_values(prefix_ids, embeds)
            model.generate(inputs_embeds=embeds, attention_mask=attention, past_key_values=past,
                           generation_config=self._hf_generation_config(config, budget),
                           stopping_criteria=StoppingCriteriaList([_Stop()]), streamer=_Streamer())
        tail = stream.finish()
        if tail and on_token is not None:
            on_token(tail)
        total_s = time.perf_counter() - start
        stopped_by = state['stopped_by']
        return GenerationResult(text=stream.text, token_ids=list(stream.ids), n_tokens=len(stream.ids),
                                first_token_s=state['first_token_s'] or 0.0, total_s=total_s, stopped_by=stopped_by,
                                truncated=stopped_by == 'length', max_new_tokens=budget)

    def next_token_logprobs(self, context_ids: Sequence[int], ids: Sequence[int]) -> torch.Tensor:
        """
        Log-probabilities the LLM gives each vocabulary token at each position of ``ids``: [n, V].

        Row i is the distribution over the token at position i given ``context_ids`` and ``ids[:i]``
        (teacher forced, one forward pass); :mod:`tinyalign_ros.fusion` reads its prior from it.
        """
        self.require_model()
        context, ids = list(context_ids), list(ids)
        if not context:
            raise LLMError('next_token_logprobs needs at least one context token')
        if not ids:
            return torch.zeros(0, self.embedding_matrix.shape[0])
        n = len(ids)
        with self._prefix_lock, torch.inference_mode():
            cache = self._prefix_cache(tuple(context))
            if cache is None:
                full = torch.as_tensor(context + ids[:-1], dtype=torch.long, device=self.device).unsqueeze(0)
                keep = {'logits_to_keep': n} if self._last_logits_only else {}
                logits = self.model(input_ids=full, use_cache=False, **keep).logits[0, -n:]
            else:
                # The context's keys and values are computed once per prompt; each call appends the
                # hypothesis and crops the cache back, so calls do not see each other.
                _crop(cache, len(context) - 1)
                rest = torch.as_tensor(context[-1:] + ids[:-1], dtype=torch.long, device=self.device).unsqueeze(0)
                logits = self.model(input_ids=rest, past_key_values=cache, use_cache=True).logits[0]
                _crop(cache, len(context) - 1)
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    def _prompt_keys_values(self, prefix_ids: Sequence[int] | None, embeds: torch.Tensor) -> Any:
        """Return a private copy of the cached keys and values of ``prefix_ids`` minus its last token, or None."""
        prefix = [int(i) for i in prefix_ids or ()]
        if len(prefix) < 2 or embeds.shape[1] <= len(prefix):
            return None
        with self._prefix_lock:
            cache = self._prefix_cache(tuple(prefix))
            if cache is None:
                return None
            _crop(cache, len(prefix) - 1)
            return copy.deepcopy(cache)  # generate appends to it; the kept one stays the prompt's

    def write_many(self, requests: Sequence[str], max_new_tokens: int = 28) -> list[str]:
        """
        Answer several user messages at once, greedily (deterministic): the text corpus's LLM source.

        Each request is one user turn of the chat template (or a plain line for a base model); the
        batch is padded on the left so every row's next token follows its own last one.
        """
        self.require_model()
        if not requests:
            return []
        if getattr(self.tokenizer, 'chat_template', None):
            texts = [self.tokenizer.apply_chat_template([{'role': 'user', 'content': r}], tokenize=False,
                                                        add_generation_prompt=True) for r in requests]
        else:
            texts = [r + '\n' for r in requests]
        side, pad_token = self.tokenizer.padding_side, self.tokenizer.pad_token
        try:
            self.tokenizer.padding_side = 'left'
            if pad_token is None:  # a tokenizer without one pads with its end of text (masked anyway)
                self.tokenizer.pad_token = self.tokenizer.eos_token
            pad = self.tokenizer.pad_token_id
            batch = self.tokenizer(texts, return_tensors='pt', padding=True, add_special_tokens=False)
        finally:
            self.tokenizer.padding_side, self.tokenizer.pad_token = side, pad_token
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            out = self.model.generate(**batch, max_new_tokens=int(max_new_tokens), do_sample=False,
                                      pad_token_id=pad, repetition_penalty=1.1)
        replies = self.tokenizer.batch_decode(out[:, batch['input_ids'].shape[1]:], skip_special_tokens=True)
        return [t.strip() for t in replies]

    def next_token_logprobs_many(self, context_ids: Sequence[int],
                                 hypotheses: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """
        :meth:`next_token_logprobs` for several hypotheses after the same context, in one batched pass.

        On a CPU a forward pass costs about the same for one row as for a few, so a search that needs
        several prefixes at once asks for them together. Rows are padded at the end (a causal model's
        real positions never see the padding), and the prompt's cached keys and values are shared.
        """
        hypotheses = [list(ids) for ids in hypotheses]
        if len(hypotheses) < 2 or any(not ids for ids in hypotheses):
            return [self.next_token_logprobs(context_ids, ids) for ids in hypotheses]
        self.require_model()
        context = list(context_ids)
        if not context:
            raise LLMError('next_token_logprobs needs at least one context token')
        with self._prefix_lock, torch.inference_mode():
            cache = self._prefix_cache(tuple(context))
            if cache is None or not hasattr(cache, 'batch_repeat_interleave'):
                return [self.next_token_logprobs(context, ids) for ids in hypotheses]
            _crop(cache, len(context) - 1)
            batch = copy.deepcopy(cache)
            batch.batch_repeat_interleave(len(hypotheses))
            width = max(len(ids) for ids in hypotheses)
            rows = [context[-1:] + ids[:-1] + [context[-1]] * (width - len(ids)) for ids in hypotheses]
            inputs = torch.as_tensor(rows, dtype=torch.long, device=self.device)
            logits = self.model(input_ids=inputs, past_key_values=batch, use_cache=True).logits
        return [torch.log_softmax(logits[i, :len(ids)].float(), dim=-1).cpu() for i, ids in enumerate(hypotheses)]

    def _prefix_cache(self, context: tuple[int, ...]) -> Any:
        """
        Keys and values of ``context`` minus its last token (one context is kept), or None if unsupported.

        A context that shares a beginning with the kept one reuses it: the kept cache is cut back to
        what they share and only the rest is read. So a search may move its settled words into the
        context and back to the bare prompt for the next utterance at the cost of the new tokens only.
        """
        if self._prefix is not None and self._prefix[0] == context:
            return self._prefix[1]
        if self._prefix is not None and len(context) > 1:
            old, cache = self._prefix
            shared = 0
            for a, b in zip(old, context):
                if a != b:
                    break
                shared += 1
            keep = min(shared, len(old) - 1, len(context) - 1)
            if keep >= 1:
                _crop(cache, keep)
                rest = list(context[keep:len(context) - 1])
                if rest:
                    self.model(input_ids=torch.as_tensor([rest], device=self.device), past_key_values=cache,
                               use_cache=True)
                self._prefix = (context, cache)
                return cache
        try:
            from transformers import DynamicCache
        except ImportError:  # an older transformers: fusion then re-reads the prompt on each call
            return None
        cache = DynamicCache()
        if len(context) > 1:
            self.model(input_ids=torch.as_tensor([list(context[:-1])], device=self.device), past_key_values=cache,
                       use_cache=True)
        if not getattr(cache, 'is_croppable', True):
            return None
        self._prefix = (context, cache)
        return cache

    def nll(self, inputs_embeds: torch.Tensor, target_ids: Sequence[int]) -> float:
        """
        Mean negative log-likelihood (nats/token) of ``target_ids`` teacher-forced after the prompt.

        Only the target positions are scored; the prompt is context.
        """
        self.require_model()
        embeds = self._check_embeds(inputs_embeds, 'inputs_embeds', ndim=3)
        target = torch.as_tensor(list(target_ids), dtype=torch.long, device=self.device)
        if target.numel() == 0:
            raise LLMError('target_ids is empty')
        full = torch.cat([embeds, self.embed_ids(target).unsqueeze(0)], dim=1)
        n = target.numel()
        # Position i predicts token i + 1, so the targets are predicted by the n positions that
        # end one before the last; keep only those logits when the model allows it.
        keep = {'logits_to_keep': n + 1} if self._last_logits_only else {}
        with torch.inference_mode():
            logits = self.model(inputs_embeds=full, use_cache=False, **keep).logits[0]
        predicted = logits[-n - 1:-1].float()
        return float(torch.nn.functional.cross_entropy(predicted, target))


def _crop(cache: Any, length: int) -> None:
    """Cut a key/value cache back to ``length`` positions (a negative crop means the same in 4.x and 5.x)."""
    extra = int(cache.get_seq_length()) - length
    if extra > 0:
        cache.crop(-extra)
