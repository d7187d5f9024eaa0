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
The assistant node's parameters: one table of declarations, and the checks every value passes.

The table (:data:`PARAMS`) is the one place a parameter is defined: the node declares from it, the
shipped YAML and the launch file are tested against it, and :func:`check_parameter` validates
against it. Values come from outside (a parameters file, a launch file, ``ros2 param set``), so
each one is checked before the node uses it and a refusal says which parameter and why. The
helpers that bound what is echoed back (:func:`clip`) and that check names (topics, operators)
live here too because parameters, goals and service requests share them.
"""

from __future__ import annotations

from dataclasses import dataclass
import re
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from tinyalign_ros.audio import normalize_format, SAMPLE_FORMATS
from tinyalign_ros.audio_messages import FLAVOURS, MAX_MESSAGE_BYTES, MESSAGE_NAMES
from tinyalign_ros.config import EncoderSettings, LLMSettings
from tinyalign_ros.device import DeviceError, DEVICES, DTYPES, resolve_device
from tinyalign_ros.fusion import FusionConfig, SEARCHES
from tinyalign_ros.llm import PromptConfig
from tinyalign_ros.personalization.api import OPERATOR_ID_PATTERN, OperatorIdError, validate_operator_id
from tinyalign_ros.pipeline import MODES

# ROS name rules (rcl's topic-name validation): tokens of letters, digits and "_" not starting with
# a digit, separated by single "/"; "~" (the node's private namespace) only at the start, followed
# by "/"; "{substitutions}" (e.g. "{node}") stand for a token. Always matched in full.
_TOPIC_TOKEN = r'[A-Za-z_][A-Za-z0-9_]*'
TOPIC_NAME = re.compile(rf'/?{_TOPIC_TOKEN}(?:/{_TOPIC_TOKEN})*')
TOPIC_SUBSTITUTION = re.compile(r'\{[A-Za-z_][A-Za-z0-9_]*\}')
# personalize.backend names a factory inside this package only: a parameters file must not be able
# to make the node import (and so run) an arbitrary module.
BACKEND_SPEC = re.compile(r'tinyalign_ros(?:\.[a-z_][a-z0-9_]*)+:[A-Za-z_][A-Za-z0-9_]*')
MAX_INSTRUCTION_CHARS = 2000
MAX_NAME_CHARS = 255
# Strings from outside (messages, goals, parameters) are echoed into logs, diagnostics and
# responses at most this long, so one hostile field cannot be copied into every message.
MAX_ECHO_CHARS = 120
# A frame_id longer than this is not a frame id; the response then carries the configured one.
MAX_FRAME_ID_CHARS = 256


class NodeConfigError(ValueError):
    """A parameter combination the node cannot start with; the message names the parameter."""


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter: default, description, range and whether it can change at run time."""

    name: str
    default: Any
    description: str
    read_only: bool = True
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor()
        d.description = self.description
        d.read_only = self.read_only
        if self.choices:
            d.additional_constraints = 'one of: ' + ', '.join(repr(c) for c in self.choices)
        if self.int_range is not None:
            d.integer_range = [IntegerRange(from_value=self.int_range[0], to_value=self.int_range[1], step=1)]
        if self.float_range is not None:
            d.floating_point_range = [FloatingPointRange(
                from_value=float(self.float_range[0]), to_value=float(self.float_range[1]), step=0.0)]
        return d


PARAMS: tuple[ParamSpec, ...] = (
    # audio input
    ParamSpec('autostart', True, 'Configure and activate at start-up (what `ros2 launch` relies on); false: '
              'stay unconfigured until a lifecycle manager drives the transitions.'),
    ParamSpec('audio.topic', 'audio', 'Audio topic to listen to (audio_common_msgs, either flavour).'),
    ParamSpec('audio.info_topic', '', 'Latched AudioInfo topic giving the sample format of the ros-drivers '
              'flavour; empty = audio_info next to the audio topic (/mic/audio -> /mic/audio_info).'),
    ParamSpec('audio.flavour', 'auto', 'Which audio_common_msgs is installed: auto, ros-drivers or mgonzs13.',
              choices=('auto',) + FLAVOURS),
    ParamSpec('audio.message', '', 'Audio message type: empty = AudioData (ros-drivers) / AudioStamped '
              '(mgonzs13); or AudioDataStamped, Audio.',
              choices=('',) + MESSAGE_NAMES['ros-drivers'] + MESSAGE_NAMES['mgonzs13']),
    ParamSpec('audio.sample_format', 'S16LE', 'Sample format used until an AudioInfo arrives (ros-drivers).',
              choices=SAMPLE_FORMATS),
    ParamSpec('audio.channels', 1, 'Channels used until an AudioInfo arrives (ros-drivers).', int_range=(1, 32)),
    ParamSpec('audio.sample_rate', 16000, 'Sample rate [Hz] used until an AudioInfo arrives (ros-drivers).',
              int_range=(1000, 384000)),
    ParamSpec('audio.use_info_topic', True, 'Follow the AudioInfo topic (false: always use the parameters).'),
    ParamSpec('audio.qos_depth', 50, 'Depth of the best-effort audio subscription queue.', int_range=(1, 1000)),
    ParamSpec('audio.max_message_s', 5.0, 'Longest audio accepted in one message; longer ones are rejected '
              'as malformed before decoding.', float_range=(0.01, 60.0)),
    ParamSpec('audio.max_message_bytes', MAX_MESSAGE_BYTES, 'Largest audio message accepted [bytes]; larger '
              'ones are rejected before anything decodes them.', int_range=(1000, 256_000_000)),
    ParamSpec('audio.expected_rate', 1.0, 'Seconds of audio a streaming microphone delivers per second; '
              'diagnostics warn when less arrives (messages lost upstream). 0 = push-to-talk, no check.',
              float_range=(0.0, 10.0)),
    # segmentation
    ParamSpec('segmentation', 'vad', 'vad: cut utterances with Silero VAD; message: every audio message is '
              'one utterance (push-to-talk or an upstream VAD).', choices=('vad', 'message')),
    ParamSpec('segmenter.threshold', 0.5, 'Silero speech probability threshold.', float_range=(0.05, 0.95)),
    ParamSpec('segmenter.min_speech_s', 0.3, 'Shorter speech is ignored (coughs, clicks).', float_range=(0.0, 5.0)),
    ParamSpec('segmenter.max_utterance_s', 20.0, 'Longest utterance; longer speech is cut (and flagged).',
              float_range=(0.5, 30.0)),
    ParamSpec('segmenter.padding_s', 0.2, 'Audio kept around detected speech.', float_range=(0.0, 2.0)),
    ParamSpec('segmenter.end_silence_s', 0.6, 'Silence that ends an utterance.', float_range=(0.05, 5.0)),
    ParamSpec('segmenter.max_buffer_s', 60.0, 'Upper bound on buffered audio.', float_range=(5.0, 600.0)),
    # responses and the pipeline (models, devices, fusion, prompt, generation)
    ParamSpec('response.frame_id', '', 'header.frame_id of responses; empty = the frame_id of the stamped '
              'audio message the utterance came from (empty for unstamped audio). Runtime-changeable.',
              read_only=False),
    ParamSpec('queue.size', 4, 'Utterances waiting for the pipeline; when full the oldest is dropped.',
              int_range=(1, 64)),
    ParamSpec('encoder.model', '', 'Whisper CTranslate2 folder; empty = the embedded tiny.en.'),
    ParamSpec('encoder.device', EncoderSettings.device, 'Where Whisper runs: cpu, cuda or auto (cuda when '
              'CTranslate2 sees a GPU). cuda without one is refused (logged; the default is kept).',
              choices=DEVICES),
    ParamSpec('encoder.compute_type', EncoderSettings.compute_type,
              'CTranslate2 compute type (default, int8, float16, ...).'),
    ParamSpec('encoder.cpu_threads', 0, 'Encoder threads; 0 = CTranslate2 default.', int_range=(0, 256)),
    ParamSpec('encoder.cache_dir', '', 'Feature cache folder; empty = no cache.'),
    ParamSpec('llm.model', '', 'LLM folder or .gguf file; empty = the embedded SmolLM2-135M-Instruct.'),
    ParamSpec('llm.threads', 0, 'Torch threads for the LLM; 0 = torch default.', int_range=(0, 256)),
    ParamSpec('llm.device', LLMSettings.device, 'Where the LLM and the projector run: cpu, cuda or auto (cuda '
              'when torch sees a GPU). cuda without one is refused (logged; the default is kept).',
              choices=DEVICES),
    ParamSpec('llm.dtype', LLMSettings.dtype, 'Precision of the LLM and of the token head: float32, float16 or '
              'bfloat16.', choices=DTYPES),
    ParamSpec('adapter', '', 'Base adapter folder used when no operator adapter is active; empty = shipped one.'),
    ParamSpec('mode', 'aligned', "One of the engine's modes: aligned (encoder -> projector -> LLM), cascade "
              '(Whisper text -> LLM), ... Runtime-changeable.', read_only=False, choices=MODES),
    ParamSpec('operator', '', 'Operator whose active adapter answers; empty = the base adapter. '
              'Runtime-changeable (the adapter is swapped without a restart).', read_only=False),
    ParamSpec('prompt.instruction', PromptConfig().instruction,
              'Instruction injected around the audio. Runtime-changeable.', read_only=False),
    ParamSpec('prompt.placement', 'before', 'Where the instruction goes: before, after or both the audio.',
              choices=('before', 'after', 'both')),
    ParamSpec('prompt.system', PromptConfig().system, "System prompt; empty = the chat template's default."),
    ParamSpec('prompt.examples', list(PromptConfig().examples), 'Example turns shown before each utterance, '
              'alternating user and assistant text (an even number); [""] = none.'),
    ParamSpec('generation.max_new_tokens', 64, 'Longest answer in tokens. Runtime-changeable.',
              read_only=False, int_range=(1, 1024)),
    ParamSpec('generation.do_sample', False, 'Sample instead of greedy decoding.'),
    ParamSpec('generation.temperature', 0.7, 'Sampling temperature.', float_range=(0.01, 2.0)),
    ParamSpec('generation.top_p', 0.9, 'Nucleus sampling mass.', float_range=(0.01, 1.0)),
    ParamSpec('generation.seed', -1, 'Sampling seed; -1 = random.', int_range=(-1, 2**31 - 1)),
    ParamSpec('fusion.weight', FusionConfig().weight, "Weight of the LLM's own prior when the aligned path reads "
              "the audio (0 = the projector alone): among the projector's close alternatives the LLM picks the "
              'likelier words.', float_range=(0.0, 10.0)),
    ParamSpec('fusion.search', FusionConfig().search, 'How the aligned reading is searched: beam (over the token '
              "head's frames, can mend a split or dropped word) or lattice (re-ranks each greedy position).",
              choices=SEARCHES),
    ParamSpec('fusion.candidates', FusionConfig().candidates, 'Tokens per frame (beam) or alternatives per heard '
              'position (lattice) the LLM chooses among.', int_range=(1, 64)),
    ParamSpec('fusion.beam', FusionConfig().beam, 'Beam search: hypotheses kept after each frame.',
              int_range=(1, 64)),
    ParamSpec('fusion.punctuation_weight', FusionConfig().punctuation_weight, "Beam search: weight of the LLM's "
              'prior on punctuation tokens, which a speaker does not say ("?" after "What ...").',
              float_range=(0.0, 10.0)),
    ParamSpec('fusion.insertion_bonus', FusionConfig().insertion_bonus, 'Beam search: score added per token read, '
              "against the LLM prior's bias to readings that drop words.", float_range=(-10.0, 10.0)),
    ParamSpec('fusion.llm_candidates', FusionConfig().llm_candidates, "Beam search: the LLM's likeliest next tokens "
              "that compete beside the head's own at each frame (0 = the head's only).", int_range=(0, 64)),
    ParamSpec('fusion.llm_floor', FusionConfig().llm_floor, "Beam search: the token head's log-probability an LLM "
              'candidate needs at the frame.', float_range=(-30.0, 0.0)),
    # personalization
    ParamSpec('personalize.enabled', True, 'Offer the personalize action and the adapter services.'),
    ParamSpec('personalize.backend', 'tinyalign_ros.personalization.job:ros_backend',
              'module:factory returning the personalization job and adapter store.'),
    ParamSpec('personalize.store_dir', '', 'Adapter store folder; empty = $XDG_DATA_HOME/tinyalign_ros/operators '
              '(the engine default, shared with the CLI).'),
    ParamSpec('personalize.work_dir', '', 'Recordings and caches of runs; empty = <store_dir>/.work (as for the CLI).'),
    ParamSpec('personalize.prompts_file', '', 'Enrollment sentences, one per line; empty = built-in list.'),
    ParamSpec('personalize.answer_timeout_s', 15.0, 'Time to wait for the answer to one prompt.',
              float_range=(1.0, 300.0)),
    ParamSpec('personalize.max_utterances', 20, 'Default number of utterances to record.', int_range=(1, 500)),
    ParamSpec('personalize.max_record_s', 600.0, 'Default recording budget in seconds.', float_range=(5.0, 7200.0)),
    ParamSpec('personalize.on_new_goal', 'reject', 'A goal arriving while one runs: reject it, or preempt '
              '(abort the running one, like ros2/examples server_single_goal).', choices=('reject', 'preempt')),
    ParamSpec('personalize.feedback_period_s', 0.5, 'Feedback period while a goal runs.', float_range=(0.05, 1.0)),
    # diagnostics
    ParamSpec('diagnostics.period_s', 1.0, 'Diagnostics publishing period.', float_range=(0.1, 60.0)),
    ParamSpec('diagnostics.stale_audio_s', 5.0, 'Warn when no audio arrived for this long.',
              float_range=(0.5, 3600.0)),
    ParamSpec('diagnostics.latency_window', 100, 'Answers kept for latency percentiles.', int_range=(10, 10000)),
    ParamSpec('diagnostics.hardware_id', 'tinyalign', 'hardware_id of the diagnostic statuses.'),
)
SPECS = {spec.name: spec for spec in PARAMS}
# Device parameters and the engine that must see the GPU for "cuda" (tinyalign_ros.device).
DEVICE_BACKENDS = {'encoder.device': 'ctranslate2', 'llm.device': 'torch'}


def clip(value: Any, limit: int = MAX_ECHO_CHARS) -> str:
    """``repr``-free text of ``value`` cut to ``limit`` characters (echoed strings stay small)."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f'{text[:limit]}... ({len(text)} characters)'


def valid_topic_name(name: Any) -> bool:
    """Whether ``name`` is a valid (absolute, relative or private) ROS topic name."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        return False
    body = TOPIC_SUBSTITUTION.sub('s', name)
    if body == '~':
        return True
    if body.startswith('~/'):
        body = body[2:]
    return TOPIC_NAME.fullmatch(body) is not None


def operator_id_problem(operator_id: Any) -> str | None:
    """Why ``operator_id`` cannot name an operator (None: fine); the whole string must match."""
    try:
        validate_operator_id(operator_id)
    except OperatorIdError:
        pass
    else:
        if OPERATOR_ID_PATTERN.fullmatch(operator_id):
            return None
    return (f'operator id {clip(operator_id)!r} is not allowed: use 1-64 letters, digits, "_" or "-", '
            'starting with a letter or digit (no "/", "\\", ".", spaces or line breaks)')


def check_parameter(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``name`` (None: fine). Ranges are checked by rclpy."""
    spec = SPECS.get(name)
    if spec is None:
        return None
    if spec.choices:
        if name == 'audio.sample_format':
            try:
                normalize_format(value)
            except ValueError as exc:
                return str(exc)
        elif value not in spec.choices:
            return f'{name} must be one of {list(spec.choices)}, got {value!r}'
    if isinstance(value, str) and len(value) > MAX_INSTRUCTION_CHARS:
        return f'{name} is {len(value)} characters; at most {MAX_INSTRUCTION_CHARS}'
    if name == 'operator' and value != '':
        return operator_id_problem(value)
    if name in DEVICE_BACKENDS and value == 'cuda':
        try:
            resolve_device(value, name, backend=DEVICE_BACKENDS[name])
        except DeviceError as exc:
            return str(exc)
    if name == 'prompt.instruction':
        if not value.strip():
            return 'prompt.instruction must not be empty'
    if name == 'prompt.examples':
        turns = [t for t in value if t]
        if len(turns) % 2 or any(not t.strip() or len(t) > MAX_INSTRUCTION_CHARS for t in turns):
            return ('prompt.examples alternates user and assistant text: an even number of non-empty strings '
                    f'of at most {MAX_INSTRUCTION_CHARS} characters ([""] = none)')
    if name == 'generation.max_new_tokens' and not 1 <= value <= 1024:
        return 'generation.max_new_tokens must be 1..1024'
    if name in ('audio.topic', 'audio.info_topic') and (value or name == 'audio.topic') \
            and not valid_topic_name(value):
        return f'{name} {clip(value)!r} is not a valid topic name'
    if name == 'response.frame_id' and len(value) > MAX_FRAME_ID_CHARS:
        return f'response.frame_id is {len(value)} characters; at most {MAX_FRAME_ID_CHARS}'
    return None


def info_topic_for(audio_topic: str, info_topic: str = '') -> str:
    """Return the AudioInfo topic: the given one, else ``audio_info`` beside the audio topic (as audio_capture)."""
    if info_topic:
        return info_topic
    head, separator, _name = audio_topic.rpartition('/')
    return f'{head}{separator}audio_info'
