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
The engine's YAML configuration, validated when it is loaded.

One file describes the whole assistant: which models, which adapter, the prompt with its injected
instruction, generation limits, the segmenter, and where and in which precision each model runs.
Unknown keys, wrong types and a GPU the machine does not have are refused at load time with the
key's full name, so a typo in a robot's config fails at start-up, not mid-mission.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
import types
import typing
from typing import Any

import yaml

from .device import check_device, check_dtype, DeviceError, resolve_device
from .fusion import FusionConfig
from .llm import GenerationConfig, PromptConfig
from .routing import FIXED_MODES
from .segmenter import SegmenterConfig

# Optional[X] and X | None carry this type; compared by identity, as the other annotations are.
_NONE_TYPE = type(None)


class ConfigError(ValueError):
    """A configuration file or value that cannot be used."""


@dataclass
class EncoderSettings:
    """
    Whisper (CTranslate2): which model, where it runs and its CTranslate2 compute type.

    ``device`` is cpu, cuda or auto (cuda when CTranslate2 sees a GPU); ``compute_type`` is
    CTranslate2's own precision setting (default, int8, float16, int8_float16, ...), which it
    checks itself when the model loads.
    """

    model: str | None = None  # None: the embedded Whisper tiny.en
    device: str = 'cpu'
    compute_type: str = 'default'
    cpu_threads: int = 0
    windows_s: list[float] = field(default_factory=lambda: [5.0, 10.0, 20.0, 30.0])
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        _check_names(self.device, None, 'encoder')


@dataclass
class LLMSettings:
    """
    The LLM (torch): which model, its threads, where it runs and its precision.

    ``device`` is cpu, cuda or auto (cuda when torch sees a GPU); ``dtype`` is the precision the
    weights are held and run in (float32, float16 or bfloat16). The projector runs on the LLM's
    device and scores its token head against the LLM's own embedding table in the LLM's dtype.
    """

    model: str | None = None  # None: the embedded SmolLM2-135M-Instruct (GGUF, converted once)
    threads: int | None = None
    device: str = 'cpu'
    # bfloat16 keeps `tinyalign respond` under its 1 GB budget on CPU; float32 restores the numbers from before
    # (docs/jetson.md, section 3, has both measured).
    dtype: str = 'bfloat16'

    def __post_init__(self) -> None:
        _check_names(self.device, self.dtype, 'llm')


def _check_names(device: str, dtype: str | None, section: str) -> None:
    """Refuse an unknown device or precision name with the setting's full key."""
    try:
        check_device(device, f'{section}.device')
        if dtype is not None:
            check_dtype(dtype, f'{section}.dtype')
    except DeviceError as exc:
        raise ConfigError(str(exc)) from exc


@dataclass
class AssistantConfig:
    """Everything :class:`tinyalign_ros.pipeline.Pipeline` needs."""

    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    llm: LLMSettings = field(default_factory=LLMSettings)
    adapter: str | None = None  # None: the shipped base adapter for the embedded model pair
    mode: str = 'aligned'  # or 'cascade'
    prompt: PromptConfig = field(default_factory=PromptConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)  # the LLM's prior in the aligned reading
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    max_utterance_s: float = 30.0

    def __post_init__(self) -> None:
        if self.mode not in FIXED_MODES:
            raise ConfigError(f'mode must be "aligned" or "cascade", got {self.mode!r}')
        if not 0.1 <= self.max_utterance_s <= 30.0:
            raise ConfigError(f'max_utterance_s must be in [0.1, 30] (the Whisper window), got {self.max_utterance_s}')


def _check_type(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against a (simple) annotation; ints are accepted where floats are expected."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _check_type(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f'{key}: {value!r} is not a valid {annotation}')
    if annotation is _NONE_TYPE:
        if value is None:
            return None
        raise ConfigError(f'{key}: expected null, got {value!r}')
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f'{key}: expected a list, got {value!r}')
        (inner, *_rest) = typing.get_args(annotation) or (Any,)
        items = [_check_type(v, inner, f'{key}[{i}]') for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f'{key}: expected a number, got {value!r}')
        return float(value)
    if annotation in (int, str, bool):
        if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
            raise ConfigError(f'{key}: expected {annotation.__name__}, got {value!r}')
        return value
    return value


def from_dict(cls: type, data: dict[str, Any] | None, prefix: str = '') -> Any:
    """Build dataclass ``cls`` from a mapping, recursively, refusing unknown keys."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f'{prefix or "config"}: expected a mapping, got {data!r}')
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f'unknown setting(s) {[prefix + k for k in unknown]}; known: {sorted(names)}')
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value, f'{prefix}{name}.')
        else:
            kwargs[name] = _check_type(value, hint, prefix + name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f'{prefix or "config"}: {exc}') from exc


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> AssistantConfig:
    """Read a YAML file (or nothing: defaults) plus flat ``overrides`` like ``{'generation.max_new_tokens': 32}``."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f'config file not found: {path}')
        try:
            data = yaml.safe_load(path.read_text(encoding='utf-8')) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f'{path} is not valid YAML: {exc}') from exc
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split('.')
        for part in parents:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f'cannot override {dotted}: {part} is not a section')
        node[leaf] = value
    config = from_dict(AssistantConfig, data)
    check_devices(config)
    return config


def check_devices(config: AssistantConfig) -> None:
    """
    Refuse a config that asks for a GPU this machine does not have, naming the setting.

    Run at load time (the names alone are checked when the settings are built) so that a robot's
    config copied to a machine without CUDA fails with one sentence, not inside torch later.
    """
    try:
        resolve_device(config.encoder.device, 'encoder.device', backend='ctranslate2')
        resolve_device(config.llm.device, 'llm.device', backend='torch')
    except DeviceError as exc:
        raise ConfigError(str(exc)) from exc


def to_dict(config: Any) -> dict[str, Any]:
    """Return the config as plain data (for logs and adapter metadata)."""
    return dataclasses.asdict(config)
