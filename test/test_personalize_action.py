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
The personalize action server: goal validation, feedback, cancel, result, enrollment, hot swap.

A fake job implementing the PersonalizeJob protocol stands in for training; everything else is the
real node over rclpy (or the stand-in). The last test checks the action goal state machine itself
against rcl_action's rules with a minimal server, so the stand-in cannot drift from rclpy.
"""

from __future__ import annotations

import math
from pathlib import Path
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

import ros_env
from ros_env import FakeJob, FakePipeline, FakeStore, Spinner, wait_for, wait_future
from tinyalign_ros.personalization.config import METHODS

import rclpy  # noqa: E402, I100
from action_msgs.msg import GoalStatus  # noqa: E402, I100
from rclpy.action import ActionClient, ActionServer  # noqa: E402, I100
from rclpy.callback_groups import ReentrantCallbackGroup  # noqa: E402, I100
from rclpy.node import Node  # noqa: E402, I100
from rclpy.parameter import Parameter  # noqa: E402, I100
from rclpy.qos import QoSProfile  # noqa: E402, I100


@pytest.fixture
def ros():
    ros_env.use_flavour(ros_env.available_flavours()[0])
    rclpy.init()
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        if isinstance(thing, Spinner):
            thing.stop()
        else:
            thing.destroy_node()
    rclpy.try_shutdown()


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / 'speaker'
    (folder / 'wavs').mkdir(parents=True)
    (folder / 'metadata.csv').write_text('a|hello there\n')
    return folder


class Setup:
    def __init__(self, ros: list[Any], tmp_path: Path, params: dict[str, Any] | None = None, **job_kwargs: Any) -> None:
        from tinyalign_msgs.action import Personalize
        from tinyalign_msgs.msg import AssistantResponse
        from tinyalign_ros.nodes import ros_audio
        from tinyalign_ros.nodes.assistant_node import AssistantNode
        from std_msgs.msg import String

        self.Personalize = Personalize
        self.ros_audio = ros_audio
        self.store = FakeStore()
        self.adapter = ros_env.save_tiny_adapter(tmp_path / 'trained', 'trained')
        self.job = FakeJob(self.store, self.adapter, **job_kwargs)
        self.pipeline = FakePipeline()
        settings = {'segmentation': 'message', 'personalize.feedback_period_s': 0.2,
                    'diagnostics.period_s': 0.2}
        settings.update(params or {})
        self.node = AssistantNode(pipeline=self.pipeline, job=self.job, store=self.store,
                                  parameter_overrides=[Parameter(k, value=v) for k, v in settings.items()])
        ros.append(self.node)
        self.probe = Node('probe')
        ros.append(self.probe)
        self.client = ActionClient(self.probe, Personalize, 'personalize')
        self.responses: list[Any] = []
        self.prompts: list[str] = []
        self.probe.create_subscription(AssistantResponse, 'response', self.responses.append, QoSProfile(depth=50))
        self.probe.create_subscription(String, 'personalize/prompt', self._on_prompt, QoSProfile(depth=50))
        self.audio_pub = self.probe.create_publisher(ros_audio.message_class(ros_audio.detect_flavour()), 'audio',
                                                     QoSProfile(depth=50))
        self.answers: list[float] = []  # seconds of audio to answer each prompt with
        self.spinner = Spinner(self.node, self.probe).start()
        ros.append(self.spinner)
        assert self.client.wait_for_server(timeout_sec=10)
        wait_for(lambda: self.audio_pub.get_subscription_count() > 0, 10, 'audio subscriber', self.spinner)

    def _on_prompt(self, msg: Any) -> None:
        self.prompts.append(msg.data)
        if len(self.prompts) <= len(self.answers):
            self.say(self.answers[len(self.prompts) - 1])

    def say(self, seconds: float) -> None:
        samples = ros_env.speech_like(seconds)
        self.audio_pub.publish(self.ros_audio.encode(samples, self.ros_audio.detect_flavour(),
                                                     self.ros_audio.AudioFormat()))

    def goal(self, **fields: Any) -> Any:
        goal = self.Personalize.Goal()
        goal.operator_id = 'dave'
        for key, value in fields.items():
            setattr(goal, key, value)
        return goal

    def send(self, goal: Any) -> tuple[Any, list[Any], list[float]]:
        feedback: list[Any] = []
        times: list[float] = []

        def on_feedback(msg: Any) -> None:
            feedback.append(msg.feedback)
            times.append(time.monotonic())
        handle = wait_future(self.client.send_goal_async(goal, feedback_callback=on_feedback), 10, 'goal response',
                             self.spinner)
        return handle, feedback, times

    def result(self, handle: Any, timeout: float = 15.0) -> Any:
        return wait_future(handle.get_result_async(), timeout, 'result', self.spinner)


def test_goal_validation_reasons(ros: list[Any], tmp_path: Path, dataset: Path) -> None:
    s = Setup(ros, tmp_path)
    P = s.Personalize.Goal
    bag = tmp_path / 'bag'
    bag.mkdir()
    (bag / 'metadata.yaml').write_text('rosbag2_bagfile_information: {}\n')
    cases = {
        'operator id': s.goal(operator_id='../../etc'),
        'not allowed': s.goal(operator_id='a/b'),
        "'.hidden'": s.goal(operator_id='.hidden'),
        "''": s.goal(operator_id=''),
        "'a b'": s.goal(operator_id='a b'),
        'unknown source': s.goal(source=7),
        'does not exist or has no manifest': s.goal(source=P.SOURCE_FOLDER, path=str(tmp_path / 'missing')),
        'rosbag': s.goal(source=P.SOURCE_ROSBAG, path=str(tmp_path / 'nobag')),
        'topics must be': s.goal(source=P.SOURCE_ROSBAG, path=str(bag), topics=['/audio']),
        'max_record_s': s.goal(max_record_s=float('nan')),
        'max_train_s': s.goal(max_train_s=-1.0),
        'max_utterances': s.goal(max_utterances=10**6),
        'max_steps': s.goal(max_steps=10**9),
        'holdout (5) must be smaller': s.goal(max_utterances=5, holdout=5),
        'gate_margin': s.goal(gate_margin=float('inf')),
        'method': s.goal(method='full_finetune'),
        'objective': s.goal(objective='../x'),
        'holdout_ids must be plain': s.goal(source=P.SOURCE_FOLDER, path=str(dataset), holdout_ids=['../a']),
        'only apply to folder': s.goal(holdout_ids=['LJ001-0001']),
    }
    validate_goal = s.node.personalize_server.validate_goal
    for expected, goal in cases.items():
        reason = validate_goal(goal)
        assert reason is not None and expected in reason, (expected, reason)
    assert validate_goal(s.goal()) is None
    # The interface names every training method the engine has, and the server takes each of them.
    constants = {name: getattr(P, name) for name in dir(P) if name.startswith('METHOD_')}
    assert sorted(constants.values()) == sorted(METHODS)
    for name, method in constants.items():
        assert validate_goal(s.goal(method=method)) is None, name
    assert validate_goal(s.goal(source=P.SOURCE_FOLDER, path=str(dataset), holdout=2)) is None
    assert validate_goal(s.goal(source=P.SOURCE_ROSBAG, path=str(bag), topics=['/audio', '/text'])) is None
    # Through the action interface: rejected goals are not accepted, and no job runs.
    for goal in (cases['operator id'], cases['does not exist or has no manifest'], cases['max_record_s']):
        handle, _fb, _t = s.send(goal)
        assert not handle.accepted
    assert not s.job.requests


def test_folder_goal_reports_feedback_and_hot_swaps(ros: list[Any], tmp_path: Path, dataset: Path) -> None:
    s = Setup(ros, tmp_path, steps=10, step_s=0.1)
    P = s.Personalize.Goal
    handle, feedback, times = s.send(s.goal(source=P.SOURCE_FOLDER, path=str(dataset), max_train_s=60.0,
                                            max_steps=500, holdout=2, objective='embedlink', method='lora',
                                            activate=True))
    assert handle.accepted
    response = s.result(handle)
    assert response.status == GoalStatus.STATUS_SUCCEEDED
    result = response.result
    assert result.success and result.accepted and result.adapter_id == 'dave-v1' and result.adapter_path == s.adapter
    assert [(m.name, m.value) for m in result.metrics_before] == [('wer_nearest', 0.5)]
    assert [(m.name, m.value) for m in result.metrics_after] == [('wer_nearest', 0.2)]
    assert (result.n_train, result.n_holdout) == (4, 1) and result.total_s >= 1.0
    assert math.isclose(result.train_s, 1.0, rel_tol=1e-5) and result.record_s == 0.0
    # Feedback at least once a second (here every 0.2 s) with the job's progress.
    assert len(feedback) >= 4
    assert max(b - a for a, b in zip(times, times[1:])) < 1.0
    trained = [f for f in feedback if f.phase == 'training']
    assert trained and all(0.0 <= f.progress <= 1.0 for f in trained) and trained[-1].step >= 8
    assert trained[-1].loss == pytest.approx(1.0 / trained[-1].step, rel=1e-5)
    # The job got a ROS-free request.
    request = s.job.requests[0]
    assert (request.operator_id, request.source, request.path) == ('dave', 'folder', str(dataset))
    assert request.limits.max_train_s == 60.0 and request.limits.max_steps == 500
    options = request.options
    assert (options.holdout, options.objective, options.method) == (2, 'embedlink', 'lora')
    # Accepted with activate=True: the assistant now answers as dave with the new adapter.
    assert s.node.get_parameter('operator').value == 'dave'
    assert s.pipeline.adapter_id == 'dave-v1'
    s.say(0.5)
    wait_for(lambda: s.responses, 10, 'answer with the new adapter', s.spinner)
    assert s.responses[-1].adapter_id == 'dave-v1'


def test_rejected_by_gate_keeps_the_old_adapter(ros: list[Any], tmp_path: Path, dataset: Path) -> None:
    s = Setup(ros, tmp_path, steps=2, step_s=0.01, accept=False)
    handle, _fb, _t = s.send(s.goal(source=s.Personalize.Goal.SOURCE_FOLDER, path=str(dataset), activate=True))
    response = s.result(handle)
    assert response.status == GoalStatus.STATUS_SUCCEEDED
    assert response.result.success and not response.result.accepted
    assert s.pipeline.adapter_id == 'base' and s.node.get_parameter('operator').value == ''


def test_cancel_stops_the_job(ros: list[Any], tmp_path: Path, dataset: Path) -> None:
    s = Setup(ros, tmp_path, steps=400, step_s=0.02)
    handle, feedback, _t = s.send(s.goal(source=s.Personalize.Goal.SOURCE_FOLDER, path=str(dataset)))
    assert handle.accepted
    assert s.job.started.wait(5)
    wait_for(lambda: feedback, 5, 'first feedback', s.spinner)
    cancel = wait_future(handle.cancel_goal_async(), 10, 'cancel response', s.spinner)
    assert len(cancel.goals_canceling) == 1
    response = s.result(handle)
    assert response.status == GoalStatus.STATUS_CANCELED
    assert not response.result.success and response.result.message.startswith('canceled')
    assert s.job.cancelled.is_set()
    assert s.store.operators() == [] and s.pipeline.adapter_id == 'base'
    # The server is free again.
    s.job.steps = 1
    handle, _fb, _t = s.send(s.goal(source=s.Personalize.Goal.SOURCE_FOLDER, path=str(dataset)))
    assert handle.accepted and s.result(handle).status == GoalStatus.STATUS_SUCCEEDED


def test_a_cancel_after_the_store_switched_succeeds_and_the_node_adopts(ros: list[Any], tmp_path: Path,
                                                                        dataset: Path) -> None:
    """
    The job already switched the store when the cancel came.

    The goal succeeds, says the cancel came too late, and the node answers with the new adapter (store, node
    and result agree).
    """
    s = Setup(ros, tmp_path, steps=1, step_s=0.01, linger_after_save_s=1.0)
    handle, _fb, _t = s.send(s.goal(source=s.Personalize.Goal.SOURCE_FOLDER, path=str(dataset), activate=True))
    assert s.job.saved.wait(10)
    wait_future(handle.cancel_goal_async(), 10, 'cancel response', s.spinner)
    response = s.result(handle)
    assert response.status == GoalStatus.STATUS_SUCCEEDED
    assert response.result.success and 'too late' in response.result.message
    assert s.store.active('dave') is not None and s.pipeline.adapter_id == 'dave-v1'


def test_second_goal_is_rejected_while_busy(ros: list[Any], tmp_path: Path, dataset: Path) -> None:
    s = Setup(ros, tmp_path, steps=400, step_s=0.02)
    goal = s.goal(source=s.Personalize.Goal.SOURCE_FOLDER, path=str(dataset))
    first, _fb, _t = s.send(goal)
    assert first.accepted and s.job.started.wait(5)
    second, _fb, _t = s.send(goal)
    assert not second.accepted
    assert 'busy' in (s.node.personalize_server.validate_goal(goal) or 'busy') and len(s.job.requests) == 1
    wait_future(first.cancel_goal_async(), 10, 'cancel', s.spinner)
    assert s.result(first).status == GoalStatus.STATUS_CANCELED


def test_preempt_policy_aborts_the_running_goal(ros: list[Any], tmp_path: Path, dataset: Path) -> None:
    s = Setup(ros, tmp_path, params={'personalize.on_new_goal': 'preempt'}, steps=100, step_s=0.02)
    goal = s.goal(source=s.Personalize.Goal.SOURCE_FOLDER, path=str(dataset))
    first, _fb, _t = s.send(goal)
    assert first.accepted and s.job.started.wait(5)
    s.job.started.clear()
    second, _fb, _t = s.send(goal)
    assert second.accepted
    first_result = s.result(first)
    assert first_result.status == GoalStatus.STATUS_ABORTED
    assert not first_result.result.success and 'preempted' in first_result.result.message
    assert s.job.cancelled.is_set()
    assert s.result(second, timeout=20).status == GoalStatus.STATUS_SUCCEEDED


def test_job_failure_aborts_with_the_reason(ros: list[Any], tmp_path: Path, dataset: Path) -> None:
    s = Setup(ros, tmp_path, fail=True)
    handle, _fb, _t = s.send(s.goal(source=s.Personalize.Goal.SOURCE_FOLDER, path=str(dataset)))
    response = s.result(handle)
    assert response.status == GoalStatus.STATUS_ABORTED
    assert 'fake job exploded' in response.result.message and not response.result.success


def test_enrollment_records_answers_to_prompts(ros: list[Any], tmp_path: Path) -> None:
    prompts = tmp_path / 'prompts.txt'
    prompts.write_text('# enrollment\nFirst sentence to read.\n\nSecond sentence to read.\nThird one.\n')
    s = Setup(ros, tmp_path, params={'personalize.prompts_file': str(prompts)}, steps=2, step_s=0.01)
    s.answers = [0.5, 0.6, 0.7]
    handle, feedback, _t = s.send(s.goal(source=s.Personalize.Goal.SOURCE_RECORD, max_utterances=3))
    response = s.result(handle)
    assert response.status == GoalStatus.STATUS_SUCCEEDED, response.result.message
    assert s.prompts == ['First sentence to read.', 'Second sentence to read.', 'Third one.']
    request = s.job.requests[0]
    assert request.source == 'record'
    assert [text for _audio, text in request.utterances] == s.prompts
    assert [round(audio.size / 16000, 2) for audio, _text in request.utterances] == [0.5, 0.6, 0.7]
    assert response.result.record_s > 0.0
    recording = [f for f in feedback if f.phase == 'recording']
    assert {f.prompt for f in recording} - {''} <= set(s.prompts) and recording
    assert max(f.utterances_recorded for f in feedback) == 3
    # Enrollment answers are not questions: the assistant did not answer them.
    assert s.responses == [] and s.node.statistics()['enrollment_utterances'] == 3


def test_enrollment_without_answers_fails_clearly(ros: list[Any], tmp_path: Path) -> None:
    s = Setup(ros, tmp_path, params={'personalize.answer_timeout_s': 1.0})
    handle, _fb, _t = s.send(s.goal(source=s.Personalize.Goal.SOURCE_RECORD, max_utterances=5))
    response = s.result(handle, timeout=20)
    assert response.status == GoalStatus.STATUS_ABORTED
    assert 'no answers were recorded' in response.result.message
    assert len(s.prompts) == 3 and not s.job.requests  # gives up after three unanswered prompts


def test_assistant_keeps_answering_while_training(ros: list[Any], tmp_path: Path, dataset: Path) -> None:
    s = Setup(ros, tmp_path, steps=200, step_s=0.02)
    handle, _fb, _t = s.send(s.goal(source=s.Personalize.Goal.SOURCE_FOLDER, path=str(dataset)))
    assert s.job.started.wait(5)
    s.say(0.8)
    wait_for(lambda: s.responses, 10, 'answer during training', s.spinner)
    assert handle.status in (GoalStatus.STATUS_EXECUTING, GoalStatus.STATUS_ACCEPTED)
    wait_future(handle.cancel_goal_async(), 10, 'cancel', s.spinner)
    assert s.result(handle).status == GoalStatus.STATUS_CANCELED


def test_goal_state_machine_matches_rcl_action(ros: list[Any]) -> None:
    """Illegal transitions raise, the default cancel policy rejects, an unfinished goal is aborted."""
    from tinyalign_msgs.action import Personalize

    seen: dict[str, Any] = {}
    release = threading.Event()

    def execute(goal_handle: Any) -> Any:
        if goal_handle.request.operator_id == 'unfinished':
            return Personalize.Result(message='no terminal state set')
        try:
            goal_handle.canceled()  # only legal from CANCELING
        except RuntimeError as exc:
            seen['canceled_from_executing'] = exc
        try:
            goal_handle.publish_feedback(Personalize.Result())
        except TypeError as exc:
            seen['wrong_feedback_type'] = exc
        goal_handle.publish_feedback(Personalize.Feedback(phase='training'))
        release.wait(10)
        seen['cancel_requested'] = goal_handle.is_cancel_requested
        goal_handle.succeed()
        try:
            goal_handle.abort()  # no transition out of a terminal state
        except RuntimeError as exc:
            seen['abort_after_succeed'] = exc
        return Personalize.Result(success=True, message='done')

    server_node = Node('state_machine_server')
    ros.append(server_node)
    server = ActionServer(server_node, Personalize, 'sm', execute, callback_group=ReentrantCallbackGroup())
    client_node = Node('state_machine_client')
    ros.append(client_node)
    client = ActionClient(client_node, Personalize, 'sm')
    spinner = Spinner(server_node, client_node).start()
    ros.append(spinner)
    assert client.wait_for_server(timeout_sec=10)
    feedback: list[Any] = []
    handle = wait_future(client.send_goal_async(Personalize.Goal(operator_id='x'),
                                                feedback_callback=feedback.append), 10, 'goal', spinner)
    assert handle.accepted
    wait_for(lambda: feedback, 10, 'feedback', spinner)
    cancel = wait_future(handle.cancel_goal_async(), 10, 'cancel', spinner)
    assert list(cancel.goals_canceling) == []  # default cancel callback: REJECT
    release.set()
    response = wait_future(handle.get_result_async(), 10, 'result', spinner)
    assert response.status == GoalStatus.STATUS_SUCCEEDED and response.result.message == 'done'
    assert set(seen) == {'canceled_from_executing', 'wrong_feedback_type', 'cancel_requested', 'abort_after_succeed'}
    assert seen['cancel_requested'] is False
    unfinished = wait_future(client.send_goal_async(Personalize.Goal(operator_id='unfinished')), 10, 'goal', spinner)
    response = wait_future(unfinished.get_result_async(), 10, 'result', spinner)
    assert response.status == GoalStatus.STATUS_ABORTED and response.result.message == 'no terminal state set'
    server.destroy()


def test_job_interface_types() -> None:
    """The Protocol the engine's personalization job must satisfy, and its input checks."""
    from tinyalign_ros.personalization import api as ji

    store, job = FakeStore(), FakeJob(FakeStore(), '')
    assert isinstance(store, ji.AdapterStore) and isinstance(job, ji.PersonalizeJob)
    assert not isinstance(SimpleNamespace(run=None), ji.AdapterStore)
    for bad in ('../x', 'a/b', 'a\\b', '.x', '', 'x' * 65, 'a b', 'ü'):
        with pytest.raises(ji.OperatorIdError):
            ji.validate_operator_id(bad)
    assert ji.validate_operator_id('Op_1-a') == 'Op_1-a'
    with pytest.raises(ValueError):
        ji.PersonalizeRequest(operator_id='ok', source='tape')
    with pytest.raises(ValueError):
        ji.Limits(max_record_s=float('nan'))
    with pytest.raises(ValueError):
        ji.Limits(max_steps=0)
    with pytest.raises(ji.BackendError, match='module:factory'):
        ji.load_backend('no_colon', ji.BackendContext(pipeline=None, store_dir=Path('.'), work_dir=Path('.')))


def test_preempt_aborts_a_goal_still_waiting_for_the_job(ros: list[Any], tmp_path: Path, dataset: Path) -> None:
    """A, then B (preempts A, waits for A's job to stop), then C: B must never run; only A and C do."""
    s = Setup(ros, tmp_path, params={'personalize.on_new_goal': 'preempt'}, steps=40, step_s=0.3)
    folder = {'source': s.Personalize.Goal.SOURCE_FOLDER, 'path': str(dataset)}
    first, _fb, _t = s.send(s.goal(operator_id='a', **folder))
    assert first.accepted and s.job.started.wait(5)
    second, _fb, _t = s.send(s.goal(operator_id='b', **folder))
    third, _fb, _t = s.send(s.goal(operator_id='c', **folder))
    assert second.accepted and third.accepted
    second_result = s.result(second)
    assert second_result.status == GoalStatus.STATUS_ABORTED
    assert 'preempted' in second_result.result.message
    wait_for(lambda: len(s.job.requests) >= 2, 10, 'the third goal to start', s.spinner)
    assert [r.operator_id for r in s.job.requests] == ['a', 'c']
    assert s.result(first).status == GoalStatus.STATUS_ABORTED
    wait_future(third.cancel_goal_async(), 10, 'cancel', s.spinner)
    assert s.result(third).status == GoalStatus.STATUS_CANCELED
    assert [r.operator_id for r in s.job.requests] == ['a', 'c']


def test_accepted_goal_whose_handle_was_never_created_reserves_nothing(ros: list[Any], tmp_path: Path,
                                                                       dataset: Path) -> None:
    """Run the next goal after one whose handle rclpy could not create after ACCEPT (it drops those)."""
    from rclpy.action import GoalResponse

    s = Setup(ros, tmp_path, steps=2, step_s=0.01)
    goal = s.goal(source=s.Personalize.Goal.SOURCE_FOLDER, path=str(dataset))
    # No handle, so no accepted callback follows.
    assert s.node.personalize_server.goal_callback(goal) == GoalResponse.ACCEPT
    handle, _fb, _t = s.send(goal)
    assert handle.accepted
    assert s.result(handle).status == GoalStatus.STATUS_SUCCEEDED


def test_reject_mode_refuses_a_goal_that_won_the_accept_race(ros: list[Any], tmp_path: Path,
                                                             dataset: Path) -> None:
    """Two goals accepted concurrently in reject mode: the second is aborted unrun, the first runs."""
    s = Setup(ros, tmp_path, steps=200, step_s=0.02)
    goal = s.goal(source=s.Personalize.Goal.SOURCE_FOLDER, path=str(dataset))
    first, _fb, _t = s.send(goal)
    assert first.accepted and s.job.started.wait(5)
    from rclpy.action import GoalResponse

    server = s.node.personalize_server.action_server
    server.register_goal_callback(lambda request: GoalResponse.ACCEPT)  # both passed the check at once
    try:
        second, _fb, _t = s.send(goal)
    finally:
        server.register_goal_callback(s.node.personalize_server.goal_callback)
    assert second.accepted
    response = s.result(second)
    assert response.status == GoalStatus.STATUS_ABORTED and 'busy' in response.result.message
    assert len(s.job.requests) == 1
    wait_future(first.cancel_goal_async(), 10, 'cancel', s.spinner)
    assert s.result(first).status == GoalStatus.STATUS_CANCELED


def test_enrollment_fails_clearly_under_a_single_threaded_executor(ros: list[Any], tmp_path: Path) -> None:
    """
    Fail enrollment at once under a single-threaded executor, with the reason, instead of stalling.

    Enrollment waits in the execute callback for audio callbacks, which a single-threaded executor
    cannot run meanwhile.
    """
    from rclpy.executors import SingleThreadedExecutor
    from tinyalign_msgs.action import Personalize
    from tinyalign_ros.nodes.assistant_node import AssistantNode

    store = FakeStore()
    job = FakeJob(store, ros_env.save_tiny_adapter(tmp_path / 'trained', 'trained'), steps=1, step_s=0.01)
    node = AssistantNode(pipeline=FakePipeline(), job=job, store=store, parameter_overrides=[
        Parameter('segmentation', value='message'), Parameter('personalize.answer_timeout_s', value=5.0)])
    ros.append(node)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    probe = Node('probe')
    ros.append(probe)
    client = ActionClient(probe, Personalize, 'personalize')
    spinner = Spinner(probe).start()
    ros.append(spinner)
    try:
        assert client.wait_for_server(timeout_sec=10)
        goal = Personalize.Goal(operator_id='dave', source=Personalize.Goal.SOURCE_RECORD, max_utterances=3)
        started = time.monotonic()
        handle = wait_future(client.send_goal_async(goal), 10, 'goal response', spinner)
        response = wait_future(handle.get_result_async(), 10, 'result', spinner)
        assert time.monotonic() - started < 4.0  # one answer timeout is 5 s: it did not wait for prompts
        assert response.status == GoalStatus.STATUS_ABORTED
        assert 'MultiThreadedExecutor' in response.result.message and not job.requests
    finally:
        executor.shutdown()
        thread.join(timeout=5)
