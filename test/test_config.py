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
Tests for the engine's YAML configuration.

Defaults, loading, overrides and the refusals that make a typo fail at start-up with the key's full name.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tinyalign_ros.config import (
    AssistantConfig, ConfigError, EncoderSettings, from_dict, LLMSettings, load_config, to_dict,
)
from tinyalign_ros.llm import GenerationConfig, PromptConfig
from tinyalign_ros.segmenter import SegmenterConfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / 'engine.yaml'
    path.write_text(text, encoding='utf-8')
    return path


def test_defaults() -> None:
    config = load_config()
    assert config == AssistantConfig()
    assert config.mode == 'aligned'
    assert config.adapter is None
    assert config.max_utterance_s == 30.0
    assert config.encoder == EncoderSettings()
    assert config.encoder.model is None and config.encoder.device == 'cpu'
    assert config.encoder.windows_s == [5.0, 10.0, 20.0, 30.0]
    assert config.llm == LLMSettings() and config.llm.model is None
    assert config.prompt == PromptConfig()
    assert config.generation == GenerationConfig()
    assert config.segmenter == SegmenterConfig()


def test_defaults_are_not_shared_between_instances() -> None:
    first = AssistantConfig()
    first.encoder.windows_s.append(1.0)
    assert AssistantConfig().encoder.windows_s == [5.0, 10.0, 20.0, 30.0]


def test_yaml_file_is_loaded_into_typed_sections(tmp_path: Path) -> None:
    path = write(tmp_path, """
mode: cascade
adapter: /robots/r2/adapter
max_utterance_s: 12
encoder:
  model: /models/whisper-base.en
  compute_type: int8
  cpu_threads: 2
  windows_s: [5, 10, 30]
  cache_dir: /tmp/feats
llm:
  threads: 1
prompt:
  instruction: Answer briefly.
  placement: both
  after_instruction: Be polite.
generation:
  max_new_tokens: 32
  do_sample: true
  temperature: 1
  stop: ["\\n", "User:"]
  seed: 7
segmenter:
  threshold: 0.6
  end_silence_s: 0.8
""")
    config = load_config(path)
    assert config.mode == 'cascade'
    assert config.adapter == '/robots/r2/adapter'
    assert config.max_utterance_s == 12.0 and isinstance(config.max_utterance_s, float)
    assert config.encoder.model == '/models/whisper-base.en'
    assert config.encoder.compute_type == 'int8' and config.encoder.cpu_threads == 2
    assert config.encoder.windows_s == [5.0, 10.0, 30.0]
    assert all(isinstance(w, float) for w in config.encoder.windows_s)
    assert config.encoder.device == 'cpu'  # untouched keys keep their defaults
    assert config.llm.threads == 1 and config.llm.model is None
    assert config.prompt == PromptConfig('Answer briefly.', 'both', after_instruction='Be polite.')
    assert config.generation.max_new_tokens == 32 and config.generation.do_sample is True
    assert config.generation.temperature == 1.0
    assert config.generation.stop == ('\n', 'User:')
    assert config.generation.seed == 7
    assert config.segmenter.threshold == 0.6 and config.segmenter.end_silence_s == 0.8
    assert config.segmenter.padding_s == SegmenterConfig().padding_s


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, '# nothing set\n')) == AssistantConfig()


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'mode: cascade\ngeneration:\n  max_new_tokens: 32\n  temperature: 0.5\n')
    config = load_config(path, {'generation.max_new_tokens': 8, 'mode': 'aligned', 'llm.model': '/m/llm',
                                'prompt.instruction': 'Repeat.'})
    assert config.generation.max_new_tokens == 8
    assert config.generation.temperature == 0.5  # sibling keys of an override survive
    assert config.mode == 'aligned'
    assert config.llm.model == '/m/llm'
    assert config.prompt.instruction == 'Repeat.'
    assert load_config(None, {'adapter': '/a'}).adapter == '/a'


def test_overrides_fill_a_section_left_empty_in_the_file(tmp_path: Path) -> None:
    """``generation:`` with nothing under it is YAML null; an override must still land in it."""
    path = write(tmp_path, 'generation:\nprompt:\n')
    assert load_config(path) == AssistantConfig()
    config = load_config(path, {'generation.max_new_tokens': 8})
    assert config.generation.max_new_tokens == 8


@pytest.mark.parametrize('text,key', [
    ('modee: aligned\n', 'modee'),
    ('generation:\n  max_tokens: 5\n', 'generation.max_tokens'),
    ('encoder:\n  modle: x\n', 'encoder.modle'),
    ('segmenter:\n  thresh: 0.3\n', 'segmenter.thresh'),
])
def test_unknown_keys_are_refused_with_their_full_name(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace('.', r'\.')):
        load_config(write(tmp_path, text))


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match=r'prompt\.instructions'):
        load_config(None, {'prompt.instructions': 'x'})


@pytest.mark.parametrize('text,key', [
    ('generation:\n  max_new_tokens: ten\n', 'generation.max_new_tokens'),
    ('generation:\n  max_new_tokens: true\n', 'generation.max_new_tokens'),  # bool is not an int
    ('generation:\n  do_sample: 1\n', 'generation.do_sample'),
    ('generation:\n  temperature: warm\n', 'generation.temperature'),
    ('encoder:\n  windows_s: [5, ten]\n', r'encoder.windows_s\[1\]'),
    ('encoder:\n  windows_s: 5\n', 'encoder.windows_s'),
    ('encoder:\n  cpu_threads: 1.5\n', 'encoder.cpu_threads'),
    ('llm:\n  threads: two\n', 'llm.threads'),
    ('adapter: 5\n', 'adapter'),
    ('max_utterance_s: long\n', 'max_utterance_s'),
    ('prompt: hello\n', 'prompt'),
])
def test_wrong_types_are_refused_with_the_key_name(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize('text,match', [
    ('mode: hybrid\n', 'mode'),
    ('max_utterance_s: 45\n', 'max_utterance_s'),
    ('max_utterance_s: 0\n', 'max_utterance_s'),
    ('generation:\n  max_new_tokens: 0\n', 'max_new_tokens'),
    ('prompt:\n  placement: middle\n', 'placement'),
    ('segmenter:\n  threshold: 2.0\n', 'threshold'),
])
def test_invalid_values_are_refused(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))


def test_mode_is_validated_on_construction_too() -> None:
    assert AssistantConfig(mode='cascade').mode == 'cascade'
    with pytest.raises(ConfigError, match='hybrid'):
        AssistantConfig(mode='hybrid')
    assert issubclass(ConfigError, ValueError)


def test_missing_or_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='not found'):
        load_config(tmp_path / 'missing.yaml')
    with pytest.raises(ConfigError, match='YAML'):
        load_config(write(tmp_path, 'mode: [aligned\n'))
    with pytest.raises(ConfigError, match='mapping'):
        load_config(write(tmp_path, '- aligned\n- cascade\n'))


def test_to_dict_round_trips() -> None:
    config = load_config(None, {'mode': 'cascade', 'generation.stop': ['\n'], 'encoder.windows_s': [10, 30]})
    data = to_dict(config)
    assert data['mode'] == 'cascade' and data['generation']['stop'] == ('\n',)
    data['generation']['stop'] = list(data['generation']['stop'])
    assert from_dict(AssistantConfig, data) == config
