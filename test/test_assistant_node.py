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
The assistant node against rclpy (real when installed, else the stand-in) with a fake pipeline.

Covers: audio subscription -> response (both audio_common_msgs flavours), AudioInfo handling,
VAD segmentation of synthesized speech, partial and latency topics, the bounded drop-oldest queue,
parameter validation (declaration and run time, and the shipped YAML), adapter hot swap through
the operator parameter and the adapter services, diagnostics, and fuzzing of the audio callback.
"""

from __future__ import annotations

import array
import ast
import math
from pathlib import Path
import random
import re
import threading
import time
from typing import Any

import numpy as np
import pytest

import ros_env
from ros_env import FakePipeline, FakeStore, Spinner, wait_for, wait_future

import rclpy  # noqa: E402, I100  (after ros_env chose real rclpy or the stand-in)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=ros_env.available_flavours())
def flavour(request: pytest.FixtureRequest) -> str:
    ros_env.use_flavour(request.param)
    return request.param


@pytest.fixture
def ros():
    """Initialise rclpy; nodes and spinners registered in the yielded list are cleaned up."""
    rclpy.init()
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        if isinstance(thing, Spinner):
            thing.stop()
        else:
            thing.destroy_node()
    rclpy.try_shutdown()


class Probe:
    """A test node: publishes audio, records everything the assistant publishes."""

    def __init__(self, ros: list[Any], flavour: str, audio_topic: str = 'audio') -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from std_msgs.msg import Float32, String
        from tinyalign_msgs.msg import AssistantResponse
        from tinyalign_ros.nodes import ros_audio

        self.ros_audio = ros_audio
        self.flavour = flavour
        self.node = Node('probe')
        ros.append(self.node)
        self.responses: list[Any] = []
        self.texts: list[str] = []
        self.partials: list[str] = []
        self.latency: list[float] = []
        self.diagnostics: list[Any] = []
        reliable = QoSProfile(depth=100)
        self.node.create_subscription(AssistantResponse, 'response', self.responses.append, reliable)
        self.node.create_subscription(String, 'response/text', lambda m: self.texts.append(m.data), reliable)
        self.node.create_subscription(String, 'response/partial', lambda m: self.partials.append(m.data), reliable)
        self.node.create_subscription(Float32, 'latency/total_ms', lambda m: self.latency.append(m.data), reliable)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append, reliable)
        self.audio_pub = self.node.create_publisher(ros_audio.message_class(flavour), audio_topic,
                                                    QoSProfile(depth=100))
        self.info_pub = None
        if flavour == 'ros-drivers':
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.info_pub = self.node.create_publisher(ros_audio.info_class(), 'audio_info', latched)

    def connect(self, spinner: Spinner) -> None:
        """Wait for discovery (instant in the stand-in, real on ROS)."""
        wait_for(lambda: self.audio_pub.get_subscription_count() > 0, 10, 'audio subscriber', spinner)
        wait_for(lambda: self.node.count_publishers('response') > 0, 10, 'response publisher', spinner)

    def send(self, samples: np.ndarray, fmt: Any = None) -> None:
        fmt = fmt or self.ros_audio.AudioFormat()
        self.audio_pub.publish(self.ros_audio.encode(samples, self.flavour, fmt))

    def send_info(self, fmt: Any) -> None:
        self.info_pub.publish(self.ros_audio.info_message('ros-drivers', fmt))


def start(ros: list[Any], flavour: str, pipeline: Any = None, params: dict[str, Any] | None = None,
          **kwargs: Any) -> tuple[Any, Probe, Spinner, Any]:
    from tinyalign_ros.nodes.assistant_node import AssistantNode

    pipeline = pipeline or FakePipeline()
    settings = {'segmentation': 'message', 'personalize.backend': 'tinyalign_ros.nonexistent:none',
                'diagnostics.period_s': 0.2}
    settings.update(params or {})
    node = AssistantNode(pipeline=pipeline, parameter_overrides=[Parameter(k, value=v) for k, v in settings.items()],
                         **kwargs)
    ros.append(node)
    probe = Probe(ros, flavour, settings.get('audio.topic', 'audio'))
    spinner = Spinner(node, probe.node).start()
    ros.append(spinner)
    probe.connect(spinner)
    return node, probe, spinner, pipeline


def test_audio_message_becomes_a_response(ros: list[Any], flavour: str) -> None:
    node, probe, spinner, fake = start(ros, flavour)
    probe.send(ros_env.speech_like(1.5))
    wait_for(lambda: probe.responses and probe.texts and probe.latency, 10, 'response', spinner)
    response = probe.responses[0]
    assert response.text == 'heard 1.50 s with base' == probe.texts[0]
    assert response.mode == 'aligned' and response.adapter_id == 'base'
    assert response.utterance_id == 1
    assert math.isclose(response.audio_duration_s, 1.5, abs_tol=1e-3)
    assert (response.encode_ms, response.project_ms, response.first_token_ms, response.total_ms) == (1.0, 0.5, 2.0, 3.0)
    assert response.queue_ms >= 0.0 and not response.truncated and not response.audio_truncated
    assert probe.latency[0] == pytest.approx(3.0)
    wait_for(lambda: len(probe.partials) == 5, 5, 'partials', spinner)
    assert probe.partials[0] == 'heard ' and probe.partials[-1].strip() == response.text
    assert fake.calls[0]['n'] == 24000 and fake.calls[0]['instruction'] == 'Answer the question that follows.'


def test_audio_info_sets_the_format(ros: list[Any]) -> None:
    """ros-drivers: an 8 kHz stereo stream announced on audio_info is resampled to 16 kHz mono."""
    if 'ros-drivers' not in ros_env.available_flavours():
        pytest.skip('the ros-drivers audio_common_msgs is not the installed flavour')
    ros_env.use_flavour('ros-drivers')
    node, probe, spinner, fake = start(ros, 'ros-drivers')
    fmt = probe.ros_audio.AudioFormat('S16LE', 2, 8000)
    probe.send_info(fmt)
    wait_for(lambda: node.statistics()['info_messages'] == 1, 10, 'audio_info', spinner)
    probe.send(ros_env.speech_like(1.0, rate=8000), fmt)
    wait_for(lambda: probe.responses, 10, 'response', spinner)
    # 1 s at 8 kHz stereo: 16000 mono samples after resampling (read as the default S16LE mono
    # 16 kHz, the same bytes would have been 32000 samples).
    assert 15900 <= fake.calls[0]['n'] <= 16100


def test_compressed_stream_is_dropped_until_pcm_arrives(ros: list[Any]) -> None:
    """audio_capture defaults to mp3: its bytes must be refused (counted, diagnosed), not read as PCM."""
    if 'ros-drivers' not in ros_env.available_flavours():
        pytest.skip('the ros-drivers audio_common_msgs is not the installed flavour')
    ros_env.use_flavour('ros-drivers')
    node, probe, spinner, fake = start(ros, 'ros-drivers')
    mp3 = probe.ros_audio.info_class()()
    mp3.sample_format, mp3.channels, mp3.sample_rate, mp3.coding_format = 'S16LE', 1, 16000, 'mp3'
    probe.info_pub.publish(mp3)
    wait_for(lambda: node.statistics()['info_messages'] == 1, 10, 'mp3 audio_info', spinner)
    for _ in range(3):
        probe.send(ros_env.speech_like(0.5))
    wait_for(lambda: node.statistics()['compressed_dropped'] == 3, 10, 'compressed audio dropped', spinner)
    wait_for(lambda: any(_status(d, 'audio input').level == _level('ERROR')
                         and 'compressed' in _status(d, 'audio input').message for d in probe.diagnostics),
             5, 'compressed audio diagnosed', spinner)
    assert not fake.calls and not probe.responses
    assert node.statistics()['audio_errors'] == 0  # not malformed: a configuration to fix upstream
    probe.send_info(probe.ros_audio.AudioFormat('S16LE', 1, 16000))
    wait_for(lambda: node.statistics()['info_messages'] == 2, 10, 'wave audio_info', spinner)
    probe.send(ros_env.speech_like(0.5))
    wait_for(lambda: probe.responses, 10, 'response after PCM arrived', spinner)
    assert len(fake.calls) == 1 and node.statistics()['compressed_dropped'] == 3


@pytest.mark.parametrize('durability', ['volatile', 'transient_local'])
def test_audio_info_from_either_audio_capture_release(ros: list[Any], durability: str) -> None:
    """
    Receive audio_info from either audio_capture release.

    Older releases publish it volatile, 0.4.0 transient-local (republished every 5 s).
    """
    if 'ros-drivers' not in ros_env.available_flavours():
        pytest.skip('the ros-drivers audio_common_msgs is not the installed flavour')
    ros_env.use_flavour('ros-drivers')
    from tinyalign_ros.nodes import ros_audio
    from tinyalign_ros.nodes.assistant_node import AssistantNode

    publisher = Node('mic')
    ros.append(publisher)
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=getattr(DurabilityPolicy, durability.upper()))
    info_pub = publisher.create_publisher(ros_audio.info_class(), 'audio_info', qos)
    node = AssistantNode(pipeline=FakePipeline(), parameter_overrides=[
        Parameter('segmentation', value='message'), Parameter('personalize.enabled', value=False)])
    ros.append(node)
    spinner = Spinner(node, publisher).start()
    ros.append(spinner)
    wait_for(lambda: info_pub.get_subscription_count() > 0, 10, 'audio_info subscriber', spinner)
    info_pub.publish(ros_audio.info_message('ros-drivers', ros_audio.AudioFormat('S32LE', 1, 16000)))
    wait_for(lambda: node.statistics()['info_messages'] == 1, 10, f'{durability} audio_info', spinner)


def test_vad_segments_synthesized_speech(ros: list[Any], flavour: str) -> None:
    from tinyalign_ros.synth import synthesize

    node, probe, spinner, fake = start(ros, flavour, params={'segmentation': 'vad'})
    speech = synthesize('Where is the charging station?')
    silence = np.zeros(16000, np.float32)
    stream = np.concatenate([silence[:8000], speech, silence, silence[:8000]])
    for i in range(0, stream.size, 1600):
        probe.send(stream[i:i + 1600])
    wait_for(lambda: probe.responses, 20, 'VAD utterance answered', spinner)
    assert len(probe.responses) == 1
    duration = probe.responses[0].audio_duration_s
    assert speech.size / 16000 - 0.3 < duration < speech.size / 16000 + 1.0
    assert node.statistics()['utterances'] == 1


def test_bounded_queue_drops_the_oldest(ros: list[Any]) -> None:
    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    fake = FakePipeline()
    fake.gate.clear()  # the worker blocks inside respond() on the first utterance
    node, probe, spinner, _ = start(ros, flavour, pipeline=fake, params={'queue.size': 2})
    probe.send(ros_env.speech_like(0.5))
    assert fake.entered.wait(10), 'the worker never took the first utterance'
    for k in range(1, 6):
        probe.send(ros_env.speech_like(0.5 + 0.1 * k))
    wait_for(lambda: node.statistics()['utterances'] == 6, 10, 'six utterances routed', spinner)
    stats = node.statistics()
    assert stats['dropped'] == 3 and stats['queue_depth'] == 2
    fake.gate.set()
    wait_for(lambda: len(probe.responses) == 3, 10, 'three answers', spinner)
    assert [r.utterance_id for r in probe.responses] == [1, 5, 6]
    wait_for(lambda: any(_status(d, 'pipeline') and _value(_status(d, 'pipeline'), 'dropped utterances') == '3'
                         for d in probe.diagnostics), 5, 'drops in diagnostics', spinner)


def _status(array_msg: Any, suffix: str) -> Any:
    return next((s for s in array_msg.status if s.name.endswith(suffix)), None)


def _value(status: Any, key: str) -> str | None:
    return next((kv.value for kv in status.values if kv.key == key), None)


def test_runtime_parameters_are_validated_and_applied(ros: list[Any]) -> None:
    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    node, probe, spinner, fake = start(ros, flavour)
    refused = {
        'operator': '../../etc', 'generation.max_new_tokens': 0, 'mode': 'telepathy',
        'prompt.instruction': '   ', 'audio.topic': 'other',
    }
    for name, value in refused.items():
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful, name
        assert result.reason
    assert 'not allowed' in node.set_parameters([Parameter('operator', value='a/b')])[0].reason
    assert 'read-only' in node.set_parameters([Parameter('audio.topic', value='x')])[0].reason
    wrong_type = node.set_parameters([Parameter('generation.max_new_tokens', value='many')])[0]
    assert not wrong_type.successful
    accepted = node.set_parameters([Parameter('mode', value='cascade'),
                                    Parameter('prompt.instruction', value='Reply in five words.'),
                                    Parameter('generation.max_new_tokens', value=12)])
    assert all(r.successful for r in accepted)
    assert node.get_parameter('generation.max_new_tokens').value == 12
    probe.send(ros_env.speech_like(1.0))
    wait_for(lambda: probe.responses, 10, 'response', spinner)
    assert fake.calls[-1] == {'n': 16000, 'mode': 'cascade', 'adapter_id': 'base',
                              'instruction': 'Reply in five words.', 'max_new_tokens': 12}
    assert probe.responses[0].mode == 'cascade' and probe.responses[0].transcript == 'fake transcript'


def test_declaration_rejects_bad_overrides(ros: list[Any]) -> None:
    from tinyalign_ros.nodes.assistant_node import AssistantNode

    ros_env.use_flavour(ros_env.available_flavours()[0])
    with pytest.raises(InvalidParameterValueException):
        AssistantNode(pipeline=FakePipeline(), parameter_overrides=[Parameter('mode', value='bogus')])
    with pytest.raises(InvalidParameterTypeException):
        AssistantNode(pipeline=FakePipeline(), parameter_overrides=[Parameter('queue.size', value=2.5)])
    with pytest.raises(InvalidParameterValueException):
        AssistantNode(pipeline=FakePipeline(), parameter_overrides=[Parameter('segmenter.threshold', value=1.5)])


def test_cuda_without_a_gpu_is_refused_and_logged_not_fatal(ros: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A launch file written for a GPU robot, started on a machine without one: the node runs on the CPU."""
    import torch
    from tinyalign_ros import device
    from tinyalign_ros.nodes import assistant_node
    from tinyalign_ros.nodes.assistant_node import AssistantNode
    from tinyalign_ros.nodes.parameters import check_parameter

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(device, 'ctranslate2_cuda_available', lambda: False)
    assert 'torch sees no CUDA GPU' in check_parameter('llm.device', 'cuda')
    assert check_parameter('llm.device', 'auto') is None and check_parameter('llm.dtype', 'bfloat16') is None
    assert 'must be one of' in check_parameter('llm.dtype', 'half')
    errors: list[str] = []
    real_init = AssistantNode.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        monkeypatch.setattr(self, 'get_logger', lambda: _ListLogger(errors), raising=False)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(assistant_node.AssistantNode, '__init__', init)
    ros_env.use_flavour(ros_env.available_flavours()[0])
    node = AssistantNode(pipeline=FakePipeline(), parameter_overrides=[
        Parameter('llm.device', value='cuda'), Parameter('encoder.device', value='cuda'),
        Parameter('llm.dtype', value='bfloat16')])
    ros.append(node)
    assert node.get_parameter('llm.device').value == 'cpu'
    assert node.get_parameter('encoder.device').value == 'cpu'
    assert node.get_parameter('llm.dtype').value == 'bfloat16'
    assert any('llm.device refused' in e and 'no CUDA GPU' in e for e in errors), errors
    assert any('encoder.device refused' in e for e in errors), errors
    with pytest.raises(InvalidParameterValueException):  # other bad values still stop the node
        AssistantNode(pipeline=FakePipeline(), parameter_overrides=[Parameter('llm.dtype', value='half')])


class _ListLogger:
    """A logger that keeps error messages (and drops the rest) for assertions."""

    def __init__(self, errors: list[str]) -> None:
        self._errors = errors

    def error(self, message: str, **_kwargs: Any) -> None:
        self._errors.append(message)

    def __getattr__(self, _name: str) -> Any:
        return lambda *args, **kwargs: None


def test_shipped_config_loads_with_matching_types(ros: list[Any]) -> None:
    """config/assistant.yaml through --params-file: declared types and ranges, documented defaults."""
    from tinyalign_ros.nodes.assistant_node import AssistantNode
    from tinyalign_ros.nodes.parameters import PARAMS

    ros_env.use_flavour(ros_env.available_flavours()[0])
    config = ROOT / 'config' / 'assistant.yaml'
    store = FakeStore()
    node = AssistantNode(pipeline=FakePipeline(), job=ros_env.FakeJob(store, ''), store=store,
                         cli_args=['--ros-args', '--params-file', str(config)])
    ros.append(node)
    for spec in PARAMS:
        assert node.get_parameter(spec.name).value == spec.default, spec.name
    text = config.read_text()
    for spec in PARAMS:  # the YAML documents every parameter
        assert re.search(rf'^\s*{re.escape(spec.name.split(".")[-1])}:', text, re.M), spec.name


def test_prompt_examples_parameter_pairs_up_and_reaches_the_prompt(ros: list[Any]) -> None:
    from tinyalign_ros.nodes.assistant_node import AssistantNode

    ros_env.use_flavour(ros_env.available_flavours()[0])
    with pytest.raises(InvalidParameterValueException):
        AssistantNode(pipeline=FakePipeline(),
                      parameter_overrides=[Parameter('prompt.examples', value=['A question without an answer?'])])
    store = FakeStore()
    for value, expected in ((['Who are you?', 'The robot.'], ('Who are you?', 'The robot.')), ([''], ())):
        node = AssistantNode(pipeline=FakePipeline(), job=ros_env.FakeJob(store, ''), store=store,
                             parameter_overrides=[Parameter('prompt.examples', value=value)])
        ros.append(node)
        assert node._prompt.examples == expected


def test_launch_file_arguments_match_the_nodes() -> None:
    from tinyalign_ros.nodes.parameters import SPECS

    tree = ast.parse((ROOT / 'launch' / 'assistant.launch.py').read_text())
    declared = {node.args[0].value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'DeclareLaunchArgument'}
    assert declared == {'config_file', 'namespace', 'audio_topic', 'flavour', 'cascade', 'with_file_publisher',
                        'audio_files'}
    keys = {k.value for node in ast.walk(tree) if isinstance(node, ast.Dict) for k in node.keys
            if isinstance(k, ast.Constant)}
    subscripts = {node.slice.value for node in ast.walk(tree)
                  if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)}
    publisher_src = (ROOT / 'src' / 'tinyalign_ros' / 'nodes' / 'audio_file_publisher.py').read_text()
    publisher_params = set(re.findall(r"declare_parameter\('([\w.]+)'", publisher_src))
    for key in keys | subscripts:
        assert key in SPECS or key in publisher_params, f'launch sets unknown parameter {key!r}'


def test_operator_switch_hot_swaps_the_adapter(ros: list[Any], tmp_path: Path) -> None:
    from tinyalign_msgs.srv import ActivateAdapter, ListAdapters
    from tinyalign_ros.projector import Projector

    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    store = FakeStore()
    store.add('alice', 'alice-v1', ros_env.save_tiny_adapter(tmp_path / 'a1', 'alice-v1'), metrics={'wer_nearest': 0.4})
    store.add('alice', 'alice-v2', ros_env.save_tiny_adapter(tmp_path / 'a2', 'alice-v2'), metrics={'wer_nearest': 0.3})
    node, probe, spinner, fake = start(ros, flavour, job=ros_env.FakeJob(store, ''), store=store,
                                       params={'personalize.backend': 'unused:unused'})
    assert node.set_parameters([Parameter('operator', value='alice')])[0].successful
    assert node.wait_for_adapter()  # the adapter loads outside the parameter callback
    assert fake.adapter_id == 'alice-v2' and isinstance(fake.projector, Projector)
    probe.send(ros_env.speech_like(1.0))
    wait_for(lambda: probe.responses, 10, 'response', spinner)
    assert probe.responses[-1].adapter_id == 'alice-v2' and probe.responses[-1].operator_id == 'alice'

    list_client = probe.node.create_client(ListAdapters, 'list_adapters')
    assert list_client.wait_for_service(timeout_sec=10)
    listing = wait_future(list_client.call_async(ListAdapters.Request()), 10, 'list_adapters', spinner)
    assert listing.success and listing.operators == ['alice'] and listing.active_adapter_id == 'alice-v2'
    assert [(a.adapter_id, a.active, a.loaded) for a in listing.adapters] == [('alice-v1', False, False),
                                                                              ('alice-v2', True, True)]
    assert listing.adapters[0].metrics[0].name == 'wer_nearest'

    activate = probe.node.create_client(ActivateAdapter, 'activate_adapter')
    assert activate.wait_for_service(timeout_sec=10)
    request = ActivateAdapter.Request(operator_id='', action=ActivateAdapter.Request.ROLLBACK)
    reply = wait_future(activate.call_async(request), 10, 'rollback', spinner)
    assert reply.success and reply.loaded
    assert (reply.previous_adapter_id, reply.active_adapter_id) == ('alice-v2', 'alice-v1')
    assert fake.adapter_id == 'alice-v1'
    request = ActivateAdapter.Request(operator_id='alice', action=ActivateAdapter.Request.ACTIVATE, adapter_id='nope')
    reply = wait_future(activate.call_async(request), 10, 'bad activate', spinner)
    assert not reply.success and 'nope' in reply.message and fake.adapter_id == 'alice-v1'
    request = ActivateAdapter.Request(operator_id='../x', action=ActivateAdapter.Request.ACTIVATE, adapter_id='a')
    assert not wait_future(activate.call_async(request), 10, 'bad operator', spinner).success

    # Back to no operator: the base adapter answers again.
    assert node.set_parameters([Parameter('operator', value='')])[0].successful
    assert node.wait_for_adapter()  # the adapter loads outside the parameter callback
    assert (fake.projector, fake.adapter_id) == ('base-projector', 'base')


def test_operator_without_adapter_and_cascade_preference(ros: list[Any]) -> None:
    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    store = FakeStore()
    store.set_mode('bob', 'cascade')
    node, probe, spinner, fake = start(ros, flavour, job=ros_env.FakeJob(store, ''), store=store)
    assert node.set_parameters([Parameter('operator', value='bob')])[0].successful
    assert node.wait_for_adapter()  # the adapter loads outside the parameter callback
    assert node.effective_mode == 'cascade' and fake.adapter_id == 'base'
    probe.send(ros_env.speech_like(0.5))
    wait_for(lambda: probe.responses, 10, 'response', spinner)
    assert probe.responses[0].mode == 'cascade'


def test_broken_adapter_is_refused_and_the_old_one_stays(ros: list[Any], tmp_path: Path) -> None:
    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    store = FakeStore()
    broken = tmp_path / 'broken'
    broken.mkdir()
    (broken / 'adapter.json').write_text('{not json')
    store.add('carol', 'carol-v1', str(broken))
    node, probe, spinner, fake = start(ros, flavour, job=ros_env.FakeJob(store, ''), store=store)
    result = node.set_parameters([Parameter('operator', value='carol')])[0]
    assert not result.successful and 'carol-v1' in result.reason
    assert fake.adapter_id == 'base' and node.get_parameter('operator').value == ''


def test_pipeline_failure_is_reported_and_the_node_keeps_answering(ros: list[Any]) -> None:
    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    node, probe, spinner, fake = start(ros, flavour)
    fake.fail_next = True
    probe.send(ros_env.speech_like(0.5))
    wait_for(lambda: node.statistics()['pipeline_errors'] == 1, 10, 'failure counted', spinner)
    wait_for(lambda: any(_status(d, 'pipeline') and _status(d, 'pipeline').level == _level('ERROR')
                         for d in probe.diagnostics), 5, 'ERROR in diagnostics', spinner)
    probe.send(ros_env.speech_like(0.5))
    wait_for(lambda: probe.responses, 10, 'next answer', spinner)


def _level(name: str) -> Any:
    from diagnostic_msgs.msg import DiagnosticStatus
    return getattr(DiagnosticStatus, name)


def test_diagnostics_describe_input_pipeline_and_training(ros: list[Any]) -> None:
    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    node, probe, spinner, fake = start(ros, flavour)
    wait_for(lambda: probe.diagnostics, 5, 'diagnostics', spinner)
    first = probe.diagnostics[-1]
    names = [s.name for s in first.status]
    assert names == ['tinyalign_assistant: audio input', 'tinyalign_assistant: pipeline',
                     'tinyalign_assistant: personalization']
    audio = _status(first, 'audio input')
    assert audio.level == _level('WARN') and audio.message == 'no audio received yet'
    assert _value(audio, 'flavour') == flavour and _value(audio, 'format') == 'S16LE 1 ch 16000 Hz'
    personalization = _status(first, 'personalization')
    assert personalization.level == _level('WARN') and 'unavailable' in personalization.message
    probe.send(ros_env.speech_like(1.0))
    wait_for(lambda: probe.responses, 10, 'response', spinner)
    count = len(probe.diagnostics)
    wait_for(lambda: len(probe.diagnostics) > count + 1, 5, 'fresh diagnostics', spinner)
    latest = probe.diagnostics[-1]
    assert _status(latest, 'audio input').level == _level('OK')
    pipeline = _status(latest, 'pipeline')
    assert pipeline.level == _level('OK')
    assert _value(pipeline, 'total p50 [ms]') == '3.0' and _value(pipeline, 'answered') == '1'
    assert all(isinstance(kv.value, str) for s in latest.status for kv in s.values)


def malformed_messages(flavour: str, ros_audio: Any, rng: random.Random) -> list[Any]:
    """Messages of the right type with wrong content: sizes, formats, NaN, empty, huge, random."""
    cls = ros_audio.message_class(flavour)
    fmt = ros_audio.AudioFormat()
    msgs: list[Any] = [cls()]  # empty (and, for mgonzs13, format 0)
    huge = ros_audio.encode(np.zeros(16000 * 3, np.float32), flavour, fmt)  # 3 s > max_message_s
    msgs.append(huge)
    if flavour == 'ros-drivers':
        odd = cls()
        odd.data = array.array('B', b'\x00\x01\x02')
        msgs.append(odd)
    else:
        for format_code, channels, rate in ((4, 1, 16000), (8, 0, 16000), (8, 1, 10), (99, 1, 16000), (1, 1, 16000)):
            msg = ros_audio.encode(ros_env.speech_like(0.1), flavour, fmt)
            msg.audio.info.format, msg.audio.info.channels, msg.audio.info.rate = format_code, channels, rate
            msgs.append(msg)  # the last one says float32 but carries int16 samples
        nan = ros_audio.encode(ros_env.speech_like(0.1), flavour, ros_audio.AudioFormat('F32LE'))
        nan.audio.audio_data.float32_data = array.array('f', [float('nan'), float('inf')] * 50)
        msgs.append(nan)
        odd = ros_audio.encode(ros_env.speech_like(0.1), flavour, ros_audio.AudioFormat('S16LE', 2, 16000))
        odd.audio.audio_data.int16_data = array.array('h', [1, 2, 3])
        msgs.append(odd)
    return msgs


def test_fuzzed_audio_never_stops_the_node(ros: list[Any], flavour: str) -> None:
    from tinyalign_ros.nodes import ros_audio

    node, probe, spinner, fake = start(ros, flavour, params={'audio.max_message_s': 2.0})
    rng = random.Random(4)
    bad = malformed_messages(flavour, ros_audio, rng)
    for msg in bad:
        probe.audio_pub.publish(msg)
    wait_for(lambda: node.statistics()['audio_errors'] == len(bad), 10, 'all malformed messages refused', spinner)
    if flavour == 'ros-drivers':
        nan_info = ros_audio.info_message('ros-drivers', ros_audio.AudioFormat('F32LE'))
        probe.info_pub.publish(nan_info)
        wait_for(lambda: node.statistics()['info_messages'] == 1, 10, 'info', spinner)
        nan = ros_audio.message_class(flavour)()
        nan.data = array.array('B', np.full(256, np.nan, np.float32).tobytes())
        probe.audio_pub.publish(nan)
        wait_for(lambda: node.statistics()['audio_errors'] == len(bad) + 1, 10, 'NaN refused', spinner)
        for k, fields in enumerate(({'sample_format': 'S24LE'}, {'channels': 0}, {'sample_rate': 5},
                                    {'sample_format': 'S16LE' * 20000})):
            info = ros_audio.info_message('ros-drivers', ros_audio.AudioFormat())
            for key, value in fields.items():
                setattr(info, key, value)
            probe.info_pub.publish(info)  # one at a time: the latched info subscription keeps only 1
            wait_for(lambda: node.statistics()['audio_errors'] == len(bad) + 2 + k, 10, f'bad info {fields}', spinner)
        probe.send_info(ros_audio.AudioFormat('S16LE', 1, 16000))
        wait_for(lambda: node.statistics()['info_messages'] == 2, 10, 'good info', spinner)
    # Random bytes / random typed values of random lengths: anything may happen except a crash.
    for _ in range(100):
        n = rng.choice([0, 1, 3, 7, 160, 1601, 4096])
        if flavour == 'ros-drivers':
            msg = ros_audio.message_class(flavour)()
            msg.data = array.array('B', bytes(rng.getrandbits(8) for _ in range(n)))
        else:
            msg = ros_audio.encode(np.zeros(max(n, 1), np.float32), flavour, ros_audio.AudioFormat())
            msg.audio.info.format = rng.choice([1, 2, 8, 16, 32, 0, -1])
            msg.audio.info.channels = rng.choice([1, 2, 3, -2])
            msg.audio.info.rate = rng.choice([16000, 44100, 0, 2**31 - 1])
        probe.audio_pub.publish(msg)
    errors_before = node.statistics()['audio_errors']
    probe.send(ros_env.speech_like(0.7))
    wait_for(lambda: any(r.text == 'heard 0.70 s with base' for r in probe.responses), 10, 'good audio answered',
             spinner)
    assert spinner.error is None
    assert node.statistics()['audio_errors'] >= errors_before
    wait_for(lambda: any(_status(d, 'audio input') and _value(_status(d, 'audio input'), 'malformed messages')
                         == str(node.statistics()['audio_errors']) for d in probe.diagnostics),
             5, 'malformed count in diagnostics', spinner)
    assert any(_status(d, 'audio input').level == _level('ERROR') for d in probe.diagnostics)


def test_real_pipeline_on_tiny_models(ros: list[Any], tiny_whisper_path: Path, tiny_llm_path: Path,
                                      tmp_path: Path) -> None:
    """
    Integration: the engine's Pipeline (tiny random Whisper + tiny LLM) behind the node.

    Also hot-swaps to an adapter saved for exactly these models (checked against their identities).
    """
    from tinyalign_ros.adapter import save_adapter
    from tinyalign_ros.encoder import WhisperEncoder
    from tinyalign_ros.llm import LLM, GenerationConfig
    from tinyalign_ros.pipeline import Pipeline
    from tinyalign_ros.projector import new_projector

    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    encoder, llm = WhisperEncoder(str(tiny_whisper_path)), LLM(str(tiny_llm_path))
    pipeline = Pipeline(encoder, llm, new_projector(encoder, llm).eval(), generation=GenerationConfig(max_new_tokens=4),
                        adapter_id='untrained')
    store = FakeStore()
    path = tmp_path / 'eve-v1'
    save_adapter(path, new_projector(encoder, llm), {'adapter_id': 'eve-v1', 'encoder': encoder.identity,
                                                     'llm': llm.identity})
    store.add('eve', 'eve-v1', str(path))
    node, probe, spinner, _ = start(ros, flavour, pipeline=pipeline, job=ros_env.FakeJob(store, ''), store=store,
                                    params={'generation.max_new_tokens': 4})
    probe.send(ros_env.speech_like(1.0))
    wait_for(lambda: probe.responses, 60, 'answer from the real pipeline', spinner)
    first = probe.responses[0]
    assert first.mode == 'aligned' and first.adapter_id == 'untrained' and first.total_ms > 0.0
    assert first.encode_ms > 0.0 and first.first_token_ms <= first.total_ms
    assert math.isclose(first.audio_duration_s, 1.0, abs_tol=1e-3)
    assert node.set_parameters([Parameter('operator', value='eve')])[0].successful
    assert node.wait_for_adapter()  # the adapter loads outside the parameter callback
    assert pipeline.adapter_id == 'eve-v1' and pipeline.projector.is_bound
    assert node.set_parameters([Parameter('mode', value='cascade')])[0].successful
    probe.send(ros_env.speech_like(0.5))
    # The random tiny Whisper may transcribe a tone as nothing, which the engine refuses; either way
    # the cascade ran and the node accounted for the utterance (answer or reported error).
    wait_for(lambda: node.statistics()['answered'] + node.statistics()['pipeline_errors'] == 2, 60,
             'cascade attempt on the real pipeline', spinner)
    assert all(r.mode == 'cascade' and r.adapter_id == '' for r in probe.responses[1:])


def test_best_effort_publisher_in_a_namespace(ros: list[Any], flavour: str) -> None:
    """
    A SensorDataQoS (best-effort) publisher on /audio/audio, as audio_capture's launch file names it.

    The assistant's best-effort subscription receives it and finds the AudioInfo beside it
    (/audio/audio_info); a reliable subscriber does not match a best-effort publisher at all.
    """
    from rclpy.qos import qos_profile_sensor_data
    from tinyalign_ros.nodes import ros_audio

    node, probe, spinner, fake = start(ros, flavour, params={'audio.topic': '/audio/audio'})
    publisher = probe.node.create_publisher(ros_audio.message_class(flavour), '/audio/audio', qos_profile_sensor_data)
    reliable_got: list[Any] = []
    probe.node.create_subscription(ros_audio.message_class(flavour), '/audio/audio', reliable_got.append,
                                   QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    fmt = ros_audio.AudioFormat('S16LE', 1, 16000)
    if flavour == 'ros-drivers':
        fmt = ros_audio.AudioFormat('S16LE', 1, 8000)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        info_pub = probe.node.create_publisher(ros_audio.info_class(), '/audio/audio_info', latched)
        info_pub.publish(ros_audio.info_message('ros-drivers', fmt))
        wait_for(lambda: node.statistics()['info_messages'] == 1, 10, 'info beside the audio topic', spinner)
    wait_for(lambda: publisher.get_subscription_count() > 0, 10, 'best-effort match', spinner)
    publisher.publish(ros_audio.encode(ros_env.speech_like(1.0, rate=fmt.sample_rate), flavour, fmt))
    wait_for(lambda: probe.responses, 10, 'answer', spinner)
    assert 15900 <= fake.calls[0]['n'] <= 16100
    assert reliable_got == []


def _stamped_setup(ros: list[Any], flavour: str, params: dict[str, Any] | None = None,
                   pipeline: Any = None) -> tuple[Any, Probe, Spinner, Any, Any]:
    """Start the assistant on the flavour's stamped audio message, and a publisher of it."""
    from tinyalign_ros.nodes import ros_audio

    stamped = 'AudioDataStamped' if flavour == 'ros-drivers' else 'AudioStamped'
    settings = {'audio.message': stamped, 'audio.expected_rate': 0.0}
    settings.update(params or {})
    node, probe, spinner, fake = start(ros, flavour, pipeline=pipeline, params=settings)
    pub = probe.node.create_publisher(ros_audio.message_class(flavour, stamped), 'audio', QoSProfile(depth=10))
    wait_for(lambda: pub.get_subscription_count() > 0, 10, 'stamped audio subscriber', spinner)

    def send(samples: np.ndarray, sec: int, nanosec: int, frame_id: str) -> None:
        from builtin_interfaces.msg import Time
        pub.publish(ros_audio.encode(samples, flavour, ros_audio.AudioFormat(), stamped,
                                     stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id))
    return node, probe, spinner, fake, send


def test_response_header_is_the_stamp_of_the_audio_and_a_frame(ros: list[Any], flavour: str) -> None:
    """
    Stamp responses with the end of the utterance's audio and a frame, not the finish time and topic.

    frame_id comes from the audio or the response.frame_id parameter.
    """
    node, probe, spinner, fake, send = _stamped_setup(ros, flavour, pipeline=FakePipeline(delay_s=0.2))
    send(ros_env.speech_like(0.5), 1234, 500_000_000, 'mic_link')
    wait_for(lambda: probe.responses, 10, 'response', spinner)
    header = probe.responses[0].header
    assert (header.stamp.sec, header.stamp.nanosec) == (1234, 500_000_000)
    assert header.frame_id == 'mic_link'
    node.set_parameters([Parameter('response.frame_id', value='base_link')])
    send(ros_env.speech_like(0.5), 1240, 0, 'mic_link')
    wait_for(lambda: len(probe.responses) == 2, 10, 'second response', spinner)
    assert probe.responses[1].header.frame_id == 'base_link'
    assert (probe.responses[1].header.stamp.sec, probe.responses[1].header.stamp.nanosec) == (1240, 0)


def test_unstamped_audio_is_dated_by_its_arrival_not_the_answer(ros: list[Any]) -> None:
    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    node, probe, spinner, fake = start(ros, flavour, pipeline=FakePipeline(delay_s=0.5))
    sent_ns = node.get_clock().now().nanoseconds
    probe.send(ros_env.speech_like(0.5))
    wait_for(lambda: probe.responses, 10, 'response', spinner)
    answered_ns = node.get_clock().now().nanoseconds
    stamp = probe.responses[0].header.stamp
    stamp_ns = stamp.sec * 1_000_000_000 + stamp.nanosec
    assert sent_ns <= stamp_ns <= answered_ns - 400_000_000  # before the 0.5 s the pipeline took
    assert probe.responses[0].header.frame_id == ''  # not the topic name


def test_vad_utterance_is_stamped_at_its_end(ros: list[Any]) -> None:
    """With VAD the utterance ends before the message that closed it: the stamp is its own end."""
    from tinyalign_ros.synth import synthesize

    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    params = {'segmentation': 'vad', 'audio.qos_depth': 500}
    node, probe, spinner, fake, send = _stamped_setup(ros, flavour, params=params)
    speech = synthesize('Please bring me the red toolbox from the workshop.')
    audio = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(32000, np.float32)])
    chunk = 1600  # 0.1 s per message, stamped at its last sample; stream time starts at 100 s
    for i in range(0, audio.size - chunk + 1, chunk):
        end_ns = 100_000_000_000 + int((i + chunk) / 16000 * 1e9)
        send(audio[i:i + chunk], end_ns // 1_000_000_000, end_ns % 1_000_000_000, 'mic')
    wait_for(lambda: probe.responses, 20, 'response', spinner)
    from tinyalign_ros.segmenter import Segmenter

    offline = Segmenter(node._audio_input.segmenter_config)
    ends = [u.end_s for i in range(0, audio.size - chunk + 1, chunk) for u in offline.feed(audio[i:i + chunk])]
    assert ends, 'the segmenter found no utterance offline'
    stamp = probe.responses[0].header.stamp
    stamp_s = stamp.sec + stamp.nanosec / 1e9 - 100.0
    assert abs(stamp_s - ends[0]) < 1e-3, (stamp_s, ends[0])
    assert stamp_s < audio.size / 16000 - 0.5  # not the time of the message that closed the utterance


def test_unmeasured_latencies_use_the_documented_sentinel(ros: list[Any]) -> None:
    """No NaN in float fields (Humble's rosidl only accepts it since a backport): -1 = not measured."""
    class NoProjectLatency(FakePipeline):
        def respond(self, *args: Any, **kwargs: Any) -> Any:
            response = super().respond(*args, **kwargs)
            response.latency_ms = {'encode': float('nan'), 'total': 3.0}
            return response

    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    node, probe, spinner, fake = start(ros, flavour, pipeline=NoProjectLatency())
    probe.send(ros_env.speech_like(0.5))
    wait_for(lambda: probe.responses, 10, 'response', spinner)
    response = probe.responses[0]
    assert (response.encode_ms, response.project_ms, response.first_token_ms, response.total_ms) == (-1.0, -1.0,
                                                                                                     -1.0, 3.0)
    text = (ROOT / 'msg' / 'msg' / 'AssistantResponse.msg').read_text()
    assert '-1' in text and 'not measured' in text
    from tinyalign_ros.nodes.messages import metrics_to_msgs, NOT_MEASURED
    assert NOT_MEASURED == -1.0 and metrics_to_msgs({'wer': float('nan')})[0].value == -1.0


def test_oversized_fields_are_not_echoed(ros: list[Any], flavour: str) -> None:
    """
    Refuse or drop oversized fields instead of copying them into every message.

    A 100 kB sample_format or a 1 MB frame_id never reaches diagnostics or responses; one audio
    message over the byte cap is refused undecoded.
    """
    from tinyalign_ros.nodes import ros_audio

    node, probe, spinner, fake, send = _stamped_setup(ros, flavour, params={'audio.max_message_bytes': 20000})
    send(ros_env.speech_like(0.5), 10, 0, 'x' * 1_000_000)
    wait_for(lambda: probe.responses, 10, 'response', spinner)
    assert probe.responses[0].header.frame_id == ''
    if flavour == 'ros-drivers':
        huge = ros_audio.info_message('ros-drivers', ros_audio.AudioFormat())
        huge.sample_format = 'S16LE' * 20000
        probe.info_pub.publish(huge)
        wait_for(lambda: node.statistics()['audio_errors'] == 1, 10, 'huge info refused', spinner)
    send(ros_env.speech_like(1.0), 11, 0, 'mic')  # 32000 bytes of S16LE > 20000
    errors = 2 if flavour == 'ros-drivers' else 1
    wait_for(lambda: node.statistics()['audio_errors'] == errors, 10, 'oversized message refused', spinner)
    assert 'bytes' in node.statistics()['last_audio_error'] and len(fake.calls) == 1
    count = len(probe.diagnostics)
    wait_for(lambda: len(probe.diagnostics) > count + 1, 5, 'diagnostics', spinner)
    longest = max(len(field) for array_msg in probe.diagnostics for status in array_msg.status
                  for field in [status.message, status.name, status.hardware_id]
                  + [kv.value for kv in status.values])
    assert longest <= 400, longest


def test_middleware_losses_and_arrival_rate_are_diagnosed(ros: list[Any]) -> None:
    """
    Count middleware losses and compare the arrival rate with the expected one.

    A burst that overflows the subscription queue is counted through the message_lost event, and
    audio arriving slower than real time is reported against the expected rate.
    """
    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    node, probe, spinner, fake = start(ros, flavour, params={'audio.qos_depth': 2, 'segmentation': 'vad'})
    spinner.stop()  # hold the executor: the burst fills the queue of depth 2
    for _ in range(10):
        probe.send(np.zeros(1600, np.float32))
    spinner = Spinner(node, probe.node).start()
    ros.append(spinner)
    wait_for(lambda: node.statistics()['lost_messages'] == 8, 10, 'lost messages counted', spinner)
    wait_for(lambda: any(_value(_status(d, 'audio input'), 'lost messages (middleware)') == '8'
                         for d in probe.diagnostics), 5, 'lost messages in diagnostics', spinner)
    # 0.1 s of audio per 0.2 s diagnostics period: half of real time.
    count = len(probe.diagnostics)
    for _ in range(10):
        probe.send(np.zeros(1600, np.float32))
        time.sleep(0.2)
    statuses = [_status(d, 'audio input') for d in probe.diagnostics[count:]]
    assert any('expected 1.00' in s.message and s.level == _level('WARN') for s in statuses), \
        [s.message for s in statuses]


@pytest.mark.parametrize('name', ['audio', '/mic/audio', '~/audio', '~', '{node}/audio', '/robot_{node}/mic',
                                  'a/b_2/c'])
def test_valid_topic_names_are_accepted(name: str) -> None:
    from tinyalign_ros.nodes.parameters import check_parameter

    assert check_parameter('audio.topic', name) is None


@pytest.mark.parametrize('name', ['', '/', 'audio/', 'a//b', '2audio', 'a b', 'a~', '/~/audio', '{}', '{2x}',
                                  'audio\n', 'ä', 'x' * 300])
def test_invalid_topic_names_are_refused(name: str) -> None:
    from tinyalign_ros.nodes.parameters import check_parameter

    assert 'not a valid topic name' in (check_parameter('audio.topic', name) or '')


@pytest.mark.parametrize('operator_id', ['alice\n', 'alice\n\n', 'a' * 64 + '\n', '../alice', 'alice/bob', ''])
def test_operator_ids_must_match_in_full(operator_id: str) -> None:
    r"""``re.match`` with ``$`` lets 'alice\n' through (a folder named with a newline)."""
    from tinyalign_ros.nodes.parameters import check_parameter, operator_id_problem

    assert operator_id_problem(operator_id)
    if operator_id:
        assert 'not allowed' in (check_parameter('operator', operator_id) or '')
    assert operator_id_problem('alice') is None and check_parameter('operator', 'alice_2-b') is None


def test_adapter_loads_outside_the_parameter_services_group(ros: list[Any], tmp_path: Path) -> None:
    """
    Load the adapter outside the group of the parameter services and the diagnostics timer.

    ``ros2 param set operator`` must not block that group while the adapter loads: validate in the
    callback, load in the adapter thread.
    """
    from rcl_interfaces.srv import SetParameters

    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    gate, entered = threading.Event(), threading.Event()

    def slow_loader(path: str) -> tuple[Any, dict[str, Any]]:
        entered.set()
        gate.wait(15)
        return f'projector of {path}', {}

    store = FakeStore()
    store.add('alice', 'alice-v1', str(tmp_path))
    node, probe, spinner, fake = start(ros, flavour, job=ros_env.FakeJob(store, ''), store=store,
                                       adapter_loader=slow_loader)
    client = probe.node.create_client(SetParameters, f'{node.get_fully_qualified_name()}/set_parameters')
    assert client.wait_for_service(timeout_sec=10)
    request = SetParameters.Request(parameters=[Parameter('operator', value='alice').to_parameter_msg()])
    try:
        reply = wait_future(client.call_async(request), 5, 'set_parameters reply', spinner)
        assert reply.results[0].successful
        assert entered.wait(5)
        count = len(probe.diagnostics)
        wait_for(lambda: len(probe.diagnostics) >= count + 3, 5, 'diagnostics while the adapter loads', spinner)
        assert fake.adapter_id == 'base'  # the old adapter answers until the new one is loaded
    finally:
        gate.set()
    assert node.wait_for_adapter()
    assert fake.adapter_id == 'alice-v1' and node.operator == 'alice'


def test_adapter_that_fails_to_load_sets_the_parameter_back(ros: list[Any], tmp_path: Path) -> None:
    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)

    def failing_loader(path: str) -> tuple[Any, dict[str, Any]]:
        raise ValueError('weights do not fit this LLM')

    store = FakeStore()
    store.add('bob', 'bob-v1', str(tmp_path))
    node, probe, spinner, fake = start(ros, flavour, job=ros_env.FakeJob(store, ''), store=store,
                                       adapter_loader=failing_loader)
    assert node.set_parameters([Parameter('operator', value='bob')])[0].successful
    wait_for(lambda: node.get_parameter('operator').value == '', 10, 'operator set back', spinner)
    assert node.wait_for_adapter() and fake.adapter_id == 'base' and node.operator == ''
    wait_for(lambda: any('weights do not fit' in _status(d, 'pipeline').message for d in probe.diagnostics),
             5, 'the load failure in diagnostics', spinner)


def test_backend_outside_the_package_is_never_imported(ros: list[Any], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """personalize.backend comes from YAML: naming any importable module must not run it."""
    marker = tmp_path / 'imported'
    (tmp_path / 'evil_backend.py').write_text(f'open({str(marker)!r}, "w").close()\ndef factory(context):\n'
                                              '    raise RuntimeError("should not be called")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    node, probe, spinner, fake = start(ros, flavour, params={'personalize.backend': 'evil_backend:factory'})
    assert not marker.exists()
    assert 'not allowed' in node._backend_error and node.job is None


class _LaunchStubs:
    """Just enough of launch / launch_ros to run the launch file's own code without ROS."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import types

        class LaunchConfiguration:
            def __init__(self, name: str) -> None:
                self.name = name

            def perform(self, context: dict[str, str]) -> str:
                return context[self.name]

        class Node:
            def __init__(self, **kwargs: Any) -> None:
                self.kwargs = kwargs

        modules = {
            'launch': {'LaunchDescription': list},
            'launch.actions': {'DeclareLaunchArgument': lambda *a, **k: (a, k), 'OpaqueFunction': lambda **k: k},
            'launch.substitutions': {'LaunchConfiguration': LaunchConfiguration, 'PathJoinSubstitution': list},
            'launch_ros': {},
            'launch_ros.actions': {'Node': Node},
            'launch_ros.substitutions': {'FindPackageShare': str},
        }
        for name, attrs in modules.items():
            module = types.ModuleType(name)
            module.__dict__.update(attrs)
            monkeypatch.setitem(__import__('sys').modules, name, module)
        import importlib.util
        spec = importlib.util.spec_from_file_location('assistant_launch', ROOT / 'launch' / 'assistant.launch.py')
        self.module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.module)

    def nodes(self, **arguments: str) -> list[Any]:
        context = {'config_file': str(ROOT / 'config' / 'assistant.yaml'), 'namespace': '', 'audio_topic': '',
                   'flavour': '', 'cascade': '', 'with_file_publisher': 'false', 'audio_files': ''}
        context.update(arguments)
        return self.module._nodes(context)


def test_launch_overrides_only_what_the_user_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stubs = _LaunchStubs(monkeypatch)
    config = tmp_path / 'mine.yaml'
    config.write_text('/**/tinyalign_assistant:\n  ros__parameters:\n    audio:\n      topic: /mic/audio\n'
                      '      flavour: mgonzs13\n    mode: cascade\n')
    assistant, = stubs.nodes(config_file=str(config))
    assert assistant.kwargs['parameters'] == [str(config)]  # the user's file wins: nothing after it
    assistant, = stubs.nodes(config_file=str(config), audio_topic='/other', cascade='false')
    assert assistant.kwargs['parameters'] == [str(config), {'audio.topic': '/other', 'mode': 'aligned'}]


def test_launch_file_publisher_plays_where_the_assistant_listens(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    stubs = _LaunchStubs(monkeypatch)
    config = tmp_path / 'mine.yaml'
    config.write_text('/**/tinyalign_assistant:\n  ros__parameters:\n    audio:\n      topic: /mic/audio\n')
    _assistant, publisher = stubs.nodes(config_file=str(config), with_file_publisher='true', audio_files='a.wav')
    params = publisher.kwargs['parameters'][0]
    assert (params['topic'], params['info_topic']) == ('/mic/audio', '/mic/audio_info')
    _assistant, publisher = stubs.nodes(with_file_publisher='true', audio_files='a.wav', audio_topic='robot/audio')
    params = publisher.kwargs['parameters'][0]
    assert (params['topic'], params['info_topic']) == ('robot/audio', 'robot/audio_info')


def test_launch_fails_on_a_missing_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stubs = _LaunchStubs(monkeypatch)
    with pytest.raises(RuntimeError, match='does not exist'):
        stubs.nodes(config_file=str(tmp_path / 'typo.yaml'))


def test_main_shuts_down_cleanly_while_an_answer_is_being_generated(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Shut down cleanly (Ctrl-C) while an answer is being generated.

    main returns promptly, the executor's threads end, the worker publishes nothing on destroyed
    publishers and no thread dies with a traceback.
    """
    from tinyalign_ros.nodes import assistant_node

    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    errors: list[Any] = []
    monkeypatch.setattr(threading, 'excepthook', errors.append)
    fake = FakePipeline(delay_s=3.0)
    made: list[Any] = []

    real_class = assistant_node.AssistantNode

    def factory() -> Any:
        node = real_class(pipeline=fake, parameter_overrides=[
            Parameter('segmentation', value='message'), Parameter('personalize.enabled', value=False)])
        made.append(node)
        return node

    monkeypatch.setattr(assistant_node, 'AssistantNode', factory)  # what main() builds
    before = set(threading.enumerate())
    runner = threading.Thread(target=assistant_node.main, kwargs={'args': []})
    runner.start()
    wait_for(lambda: made, 10, 'node created')
    probe = Node('probe', context=made[0].context)
    from tinyalign_ros.nodes import ros_audio
    pub = probe.create_publisher(ros_audio.message_class(flavour), 'audio', QoSProfile(depth=10))
    wait_for(lambda: pub.get_subscription_count() > 0, 10, 'subscriber')
    pub.publish(ros_audio.encode(ros_env.speech_like(0.5), flavour, ros_audio.AudioFormat()))
    assert fake.entered.wait(10)
    probe.destroy_node()
    stopped = time.monotonic()
    rclpy.shutdown()  # what the SIGINT handler does
    runner.join(timeout=10)
    assert not runner.is_alive() and time.monotonic() - stopped < 2.5, 'main waited for the answer'
    time.sleep(3.5)  # the abandoned answer finishes meanwhile
    assert not errors, errors
    left = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not left, f'threads still running after main returned: {[t.name for t in left]}'


def test_modes_come_from_the_engine() -> None:
    """One home for the list of modes: a mode the engine adds (e.g. auto) is accepted unchanged."""
    from tinyalign_ros import pipeline
    from tinyalign_ros.nodes import assistant_node, parameters

    assert assistant_node.MODES is pipeline.MODES and parameters.SPECS['mode'].choices is pipeline.MODES
    for mode in pipeline.MODES:
        assert parameters.check_parameter('mode', mode) is None


def test_response_says_which_path_answered(ros: list[Any]) -> None:
    """When the engine chooses the path itself (a mode like auto), the response carries the path."""
    class Choosing(FakePipeline):
        def respond(self, *args: Any, **kwargs: Any) -> Any:
            response = super().respond(*args, **kwargs)
            response.path = 'cascade'
            response.mode = 'auto'
            return response

    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    node, probe, spinner, fake = start(ros, flavour, pipeline=Choosing())
    probe.send(ros_env.speech_like(0.5))
    wait_for(lambda: probe.responses, 10, 'response', spinner)
    assert probe.responses[0].mode == 'cascade'


@pytest.mark.parametrize('name, value, good', [
    ('mode', 'cascade', True), ('mode', 'telepathy', False),
    ('prompt.instruction', 'Reply in three words.', True), ('prompt.instruction', '  ', False),
    ('generation.max_new_tokens', 7, True), ('generation.max_new_tokens', 0, False),
    ('response.frame_id', 'base_link', True), ('response.frame_id', 'x' * 300, False),
    ('operator', 'carol', True), ('operator', 'carol\n', False), ('audio.topic', 'other', False),
])
def test_ros2_param_set_on_runtime_parameters(ros: list[Any], name: str, value: Any, good: bool) -> None:
    """``ros2 param set`` goes through the parameter service: valid values apply, others are refused."""
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.srv import GetParameters, SetParameters

    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    node, probe, spinner, fake = start(ros, flavour, job=ros_env.FakeJob(FakeStore(), ''), store=FakeStore())
    prefix = node.get_fully_qualified_name()
    setter = probe.node.create_client(SetParameters, f'{prefix}/set_parameters')
    getter = probe.node.create_client(GetParameters, f'{prefix}/get_parameters')
    assert setter.wait_for_service(timeout_sec=10) and getter.wait_for_service(timeout_sec=10)
    before = node.get_parameter(name).value
    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    result = wait_future(setter.call_async(request), 10, 'set_parameters', spinner).results[0]
    assert result.successful == good, result.reason
    assert good or result.reason
    reply = wait_future(getter.call_async(GetParameters.Request(names=[name])), 10, 'get_parameters', spinner)
    stored = Parameter.from_parameter_msg(ParameterMsg(name=name, value=reply.values[0])).value
    assert stored == (value if good else before)
    if name == 'operator' and good:
        assert node.wait_for_adapter() and node.operator == value
    elif good and name != 'response.frame_id':
        probe.send(ros_env.speech_like(0.5))
        wait_for(lambda: fake.calls, 10, 'an answer with the new value', spinner)
        applied = {'mode': fake.calls[0]['mode'], 'prompt.instruction': fake.calls[0]['instruction'],
                   'generation.max_new_tokens': fake.calls[0]['max_new_tokens']}
        assert applied[name] == value


def _state(node: Any) -> str:
    """Label of the node's primary lifecycle state (stand-in property, or rclpy's state machine)."""
    state = getattr(node, 'lifecycle_state', None)
    return state.label if state is not None else node._state_machine.current_state[1]


def test_lifecycle_transitions(ros: list[Any]) -> None:
    """
    Drive the node through every lifecycle transition, as a lifecycle manager would.

    Unconfigured -> inactive (models loaded, silent) -> active (answers) -> inactive -> active ->
    cleanup (unloaded) -> configure again -> shutdown.
    """
    from rclpy.lifecycle import TransitionCallbackReturn
    from tinyalign_ros.nodes.assistant_node import AssistantNode

    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    fake = FakePipeline()
    node = AssistantNode(pipeline=fake, parameter_overrides=[
        Parameter('autostart', value=False), Parameter('segmentation', value='message'),
        Parameter('personalize.enabled', value=False), Parameter('diagnostics.period_s', value=0.2)])
    ros.append(node)
    probe = Probe(ros, flavour)
    spinner = Spinner(node, probe.node).start()
    ros.append(spinner)
    assert _state(node) == 'unconfigured' and probe.node.count_publishers('response') == 0
    assert probe.audio_pub.get_subscription_count() == 0

    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and _state(node) == 'inactive'
    wait_for(lambda: probe.node.count_publishers('response') == 1, 10, 'response publisher', spinner)
    wait_for(lambda: any(_value(_status(d, 'audio input'), 'state') == 'inactive' for d in probe.diagnostics),
             5, 'diagnostics while inactive', spinner)
    assert probe.audio_pub.get_subscription_count() == 0  # inactive: not listening

    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS and _state(node) == 'active'
    wait_for(lambda: probe.audio_pub.get_subscription_count() > 0, 10, 'audio subscriber', spinner)
    probe.send(ros_env.speech_like(0.5))
    wait_for(lambda: len(probe.responses) == 1, 10, 'answer while active', spinner)

    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS and _state(node) == 'inactive'
    wait_for(lambda: probe.audio_pub.get_subscription_count() == 0, 10, 'audio unsubscribed', spinner)
    probe.send(ros_env.speech_like(0.5))
    time.sleep(0.5)
    assert len(probe.responses) == 1 and node.pipeline is fake  # silent, models still loaded

    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    wait_for(lambda: probe.audio_pub.get_subscription_count() > 0, 10, 'audio subscriber again', spinner)
    probe.send(ros_env.speech_like(0.6))
    wait_for(lambda: len(probe.responses) == 2, 10, 'answer after reactivation', spinner)

    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    worker = node._worker
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS and _state(node) == 'unconfigured'
    assert not worker.is_alive()
    wait_for(lambda: probe.node.count_publishers('response') == 0, 10, 'publishers destroyed', spinner)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node._worker.is_alive()
    assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS and _state(node) == 'finalized'
    assert not node._worker.is_alive()


def test_lifecycle_configure_failure_leaves_the_node_unconfigured(ros: list[Any]) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn
    from tinyalign_ros.nodes.assistant_node import AssistantNode

    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    other = 'mgonzs13' if flavour == 'ros-drivers' else 'ros-drivers'
    node = AssistantNode(pipeline=FakePipeline(), parameter_overrides=[
        Parameter('autostart', value=False), Parameter('audio.flavour', value=other)])
    ros.append(node)
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert _state(node) == 'unconfigured' and 'flavour' in str(node._configure_error)
    assert node.count_publishers('response') == 0 and node.count_publishers('/diagnostics') == 0


def test_inactive_assistant_rejects_goals(ros: list[Any], tmp_path: Path) -> None:
    from rclpy.action import GoalResponse
    from tinyalign_msgs.action import Personalize
    from tinyalign_ros.nodes.assistant_node import AssistantNode

    flavour = ros_env.available_flavours()[0]
    ros_env.use_flavour(flavour)
    store = FakeStore()
    node = AssistantNode(pipeline=FakePipeline(), job=ros_env.FakeJob(store, ''), store=store,
                         parameter_overrides=[Parameter('autostart', value=False)])
    ros.append(node)
    node.trigger_configure()
    goal = Personalize.Goal(operator_id='dave', source=Personalize.Goal.SOURCE_RECORD)
    assert node.personalize_server.goal_callback(goal) == GoalResponse.REJECT
    node.trigger_activate()
    assert node.personalize_server.goal_callback(goal) == GoalResponse.ACCEPT
