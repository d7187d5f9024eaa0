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
The assistant's ``personalize`` action server: one goal at a time, enrollment, and the job's thread.

A personalization run is long (recording prompts, then training) and must neither block the
assistant nor be left half-done by a cancel or a newer goal, so its bookkeeping is a concept of its
own: which goal runs or waits (single-goal server, as in ros2/examples' server_single_goal:
``personalize.on_new_goal`` rejects or preempts), the enrollment that publishes prompts and takes
the next utterances as answers, the job thread that reports feedback at least once a period, and
the translation of the job's outcome into the action's result and terminal state.

:class:`PersonalizeServer` is owned by the node (composition): the node passes itself (parameters,
logger, executor and the action server's home) and the few things only it decides: the job,
whether it is active, the prompt publisher, and how an accepted adapter is adopted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from pathlib import Path
import queue
import re
import threading
import time
from typing import Any, Callable

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import CallbackGroup
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String
from tinyalign_msgs.action import Personalize

from tinyalign_ros.nodes import diagnostics as diag
from tinyalign_ros.nodes.messages import metrics_to_msgs, NOT_MEASURED
from tinyalign_ros.nodes.parameters import clip, NodeConfigError, operator_id_problem, valid_topic_name
from tinyalign_ros.nodes.ros_audio import finite_or
from tinyalign_ros.personalization.api import (GOAL_CANCELED, goal_status, GOAL_SUCCEEDED, Limits, PersonalizeJob,
                                               PersonalizeRequest, PersonalizeResult, PHASE_RECORDING, Progress,
                                               run_in_thread, SOURCE_FOLDER, SOURCE_RECORD, SOURCE_ROSBAG,
                                               TrainingOptions)
from tinyalign_ros.personalization.config import METHODS
from tinyalign_ros.rosbag import is_rosbag
from tinyalign_ros.segmenter import Utterance

SOURCES_BY_CODE = {Personalize.Goal.SOURCE_RECORD: SOURCE_RECORD,
                   Personalize.Goal.SOURCE_FOLDER: SOURCE_FOLDER,
                   Personalize.Goal.SOURCE_ROSBAG: SOURCE_ROSBAG}
OBJECTIVE_NAME = re.compile(r'[a-z0-9_]{0,64}')
UTTERANCE_ID = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,127}')
MAX_UTTERANCES = 10000
MAX_STEPS = 10_000_000
MAX_SECONDS = 24 * 3600.0

# Read aloud during enrollment when no prompts file is given: short, varied, robot-flavoured.
DEFAULT_PROMPTS = (
    'Please bring me the red toolbox from the workshop.',
    'What is the battery level right now?',
    'Turn left at the next corridor and stop by the door.',
    'Could you check whether the kitchen window is closed?',
    'Move forward slowly, then wait for my signal.',
    'How far is the charging station from here?',
    'Pick up the blue cup and put it on the shelf.',
    'Remind me to water the plants at six tonight.',
    'Which rooms did you clean this morning?',
    'Go back to the lobby and greet the visitors.',
    'Is anybody waiting at the front entrance?',
    'Follow me to the garage, but keep your distance.',
    'Tell me the temperature in the server room.',
    'Lower the arm a little and open the gripper.',
    'What was the last thing I asked you to do?',
    'Switch off the lights in the meeting room.',
    'Count the boxes on the third pallet, please.',
    'Find my keys; I think they are near the sofa.',
    'Drive to the loading dock and wait there.',
    'Thank you, that will be all for today.',
)


def load_prompts(path: str) -> list[str]:
    """Enrollment sentences from a file (one per line, # comments), or the built-in list."""
    if not path:
        return list(DEFAULT_PROMPTS)
    file = Path(path).expanduser()
    if not file.is_file():
        raise NodeConfigError(f'personalize.prompts_file {file} does not exist')
    lines = [line.strip() for line in file.read_text(encoding='utf-8').splitlines()]
    prompts = [line for line in lines if line and not line.startswith('#')]
    if not prompts:
        raise NodeConfigError(f'personalize.prompts_file {file} holds no sentences')
    return prompts


def dataset_exists(path: Path) -> bool:
    return path.is_dir() and ((path / 'manifest.jsonl').is_file() or (path / 'metadata.csv').is_file())


@dataclass
class _GoalState:
    """The goal being executed."""

    handle: Any
    operator_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    preempted: bool = False
    progress: Progress = field(default_factory=lambda: Progress(PHASE_RECORDING))
    prompt: str = ''
    recorded: int = 0


class PersonalizeServer:
    """
    The ``personalize`` action of ``node``, created on configure and destroyed on cleanup.

    ``job`` runs the personalization (None: goals are rejected with ``unavailable`` as the reason);
    ``is_active`` says whether the node answers (goals are only accepted then); enrollment prompts
    go out on ``prompt_publisher``; ``adopt(goal, outcome)`` makes an accepted adapter answer.
    Audio reaches enrollment through :meth:`take`, which the node calls for every utterance.
    """

    def __init__(self, node: Node, *, job: PersonalizeJob | None, unavailable: str, prompt_publisher: Any,
                 is_active: Callable[[], bool], adopt: Callable[[Any, PersonalizeResult], None]) -> None:
        self._node = node
        self.job = job
        self._unavailable = unavailable
        self._prompt_publisher = prompt_publisher
        self._is_active = is_active
        self._adopt = adopt
        self._prompts = load_prompts(self._param('personalize.prompts_file'))
        self.action_server: ActionServer | None = None
        self.goal: _GoalState | None = None  # the goal being executed
        self._current_handle: Any = None  # the goal that runs or waits to run (single-goal server)
        self._preempted: set[int] = set()  # ids of handles aborted by a newer goal
        self._refused: set[int] = set()  # ids of handles that lost the accept race in reject mode
        self._goal_lock = threading.Lock()
        self._job_lock = threading.Lock()
        self._lock = threading.Lock()  # guards the recording flag and the enrollment count
        self._inbox: queue.Queue[Utterance | np.ndarray] = queue.Queue()
        self._recording = False
        self.enrollment_utterances = 0
        self.last_result = ''

    def start(self, callback_group: CallbackGroup) -> None:
        """Offer the action (``callback_group`` reentrant: a cancel is served while a goal runs)."""
        self.action_server = ActionServer(
            self._node, Personalize, 'personalize', execute_callback=self.execute_callback,
            goal_callback=self.goal_callback, handle_accepted_callback=self.handle_accepted_callback,
            cancel_callback=self.cancel_callback, callback_group=callback_group)

    def destroy(self) -> None:
        if self.action_server is not None:
            self.action_server.destroy()
            self.action_server = None

    def cancel(self) -> None:
        """Ask the running goal, if any, to stop (deactivation and shutdown)."""
        goal = self.goal
        if goal is not None:
            goal.cancel.set()

    def take(self, utterance: Utterance) -> bool:
        """Keep ``utterance`` as an enrollment answer while recording (True); otherwise it is not ours."""
        with self._lock:
            recording = self._recording
        if recording:
            self._inbox.put(utterance)
        return recording

    def _param(self, name: str) -> Any:
        return self._node.get_parameter(name).value

    def validate_goal(self, goal: Any) -> str | None:
        """Why ``goal`` must be rejected (None: acceptable). Also used by tests."""
        if self.job is None:
            return self._unavailable or 'no personalization job available'
        problem = operator_id_problem(goal.operator_id)
        if problem:
            return problem
        source = SOURCES_BY_CODE.get(goal.source)
        if source is None:
            return f'unknown source {goal.source}: use SOURCE_RECORD (0), SOURCE_FOLDER (1) or SOURCE_ROSBAG (2)'
        if source == SOURCE_FOLDER:
            if not goal.path or not dataset_exists(Path(goal.path).expanduser()):
                return f'folder {clip(goal.path)!r} does not exist or has no manifest.jsonl / metadata.csv'
        if source == SOURCE_ROSBAG:
            if not goal.path or not is_rosbag(Path(goal.path).expanduser()):
                return f'rosbag {clip(goal.path)!r} does not exist (need a rosbag2 folder or a .db3/.mcap file)'
            if goal.topics and (len(goal.topics) != 2 or not all(valid_topic_name(t) for t in goal.topics)):
                return f'topics must be [audio topic, transcript topic], got {clip(list(goal.topics))}'
        for name in ('max_record_s', 'max_train_s'):
            value = getattr(goal, name)
            if not math.isfinite(value) or value < 0 or value > MAX_SECONDS:
                return f'{name} must be 0 (default) or a number of seconds up to {MAX_SECONDS:g}, got {value}'
        if goal.max_utterances > MAX_UTTERANCES:
            return f'max_utterances must be at most {MAX_UTTERANCES}, got {goal.max_utterances}'
        if goal.max_steps > MAX_STEPS:
            return f'max_steps must be at most {MAX_STEPS}, got {goal.max_steps}'
        max_utts = goal.max_utterances or (self._param('personalize.max_utterances') if source == SOURCE_RECORD else 0)
        if goal.holdout and max_utts and goal.holdout >= max_utts:
            return f'holdout ({goal.holdout}) must be smaller than the number of utterances ({max_utts})'
        if not math.isfinite(goal.gate_margin) or not 0.0 <= goal.gate_margin < 1.0:
            return f'gate_margin must be in [0, 1), got {goal.gate_margin}'
        if goal.method and goal.method not in METHODS:
            return f'method must be "" or one of {", ".join(METHODS)}, got {clip(goal.method)!r}'
        if not OBJECTIVE_NAME.fullmatch(goal.objective):
            return f'objective {clip(goal.objective)!r} is not a valid name (lowercase letters, digits, _)'
        bad_ids = [i for i in goal.holdout_ids if not UTTERANCE_ID.fullmatch(i)]
        if bad_ids:
            return f'holdout_ids must be plain utterance ids, got {clip(bad_ids[:3])}'
        if goal.holdout_ids and source == SOURCE_RECORD:
            return 'holdout_ids only apply to folder and rosbag sources'
        return None

    def goal_callback(self, goal: Any) -> GoalResponse:
        """Accept or reject a goal request; reserves nothing (rclpy may still fail to create its handle)."""
        reason = self.validate_goal(goal)
        if reason is None and not self._is_active():
            reason = 'the assistant is not active (activate it through its lifecycle first)'
        if reason is None and self._param('personalize.on_new_goal') == 'reject':
            with self._goal_lock:
                current = self._current_handle
                if current is not None and current.is_active:
                    running = self.goal.operator_id if self.goal else '?'
                    reason = (f'busy personalizing {clip(running)!r}; cancel it first or set '
                              'personalize.on_new_goal=preempt')
        if reason is not None:
            self._node.get_logger().warning(f'personalize goal rejected: {clip(reason, 400)}')
            return GoalResponse.REJECT
        self._node.get_logger().info(f'personalize goal accepted for operator {goal.operator_id!r}')
        return GoalResponse.ACCEPT

    def handle_accepted_callback(self, goal_handle: Any) -> None:
        """
        Track the one goal that runs or will run next, as ros2/examples' single-goal server does.

        preempt: the previous goal is aborted whether it is running or still waiting for the job
        lock. reject: a goal that won the accept race against another is refused in its execute
        callback (rclpy runs goal requests of a reentrant group concurrently).
        """
        with self._goal_lock:
            previous = self._current_handle
            if previous is not None and previous.is_active:
                if self._param('personalize.on_new_goal') == 'preempt':
                    state = self.goal if self.goal is not None and self.goal.handle is previous else None
                    name = state.operator_id if state else 'a waiting goal'
                    self._node.get_logger().info(f'preempting the personalize goal of {name!r}')
                    if state is not None:
                        state.preempted = True
                        state.cancel.set()
                    self._preempted.add(id(previous))
                    try:
                        previous.abort()
                    except RuntimeError:  # it reached a terminal state meanwhile
                        pass
                    self._current_handle = goal_handle
                else:
                    self._refused.add(id(goal_handle))
            else:
                self._current_handle = goal_handle
        goal_handle.execute()

    def cancel_callback(self, goal_handle: Any) -> CancelResponse:
        """
        Accept, and tell the running job at once.

        The job decides under the store's lock whether the cancel still prevents the switch to the
        new adapter; waiting for the next feedback tick let the switch win the race.
        """
        self._node.get_logger().info('personalize goal cancel requested')
        with self._goal_lock:
            current = self.goal
        if current is not None and current.handle is goal_handle:
            current.cancel.set()
        return CancelResponse.ACCEPT

    def execute_callback(self, goal_handle: Any) -> Any:
        started = time.monotonic()
        goal = goal_handle.request
        state = _GoalState(goal_handle, goal.operator_id)
        result = Personalize.Result()
        with self._goal_lock:
            refused = id(goal_handle) in self._refused
            self._refused.discard(id(goal_handle))
        if refused:
            result.message = ('busy personalizing another operator; cancel it first or set '
                              'personalize.on_new_goal=preempt')
            self._finish_goal(state, result, PersonalizeResult(success=False, message=result.message))
            return result
        with self._job_lock:  # a preempted goal's job must have finished before the next starts
            with self._goal_lock:
                waited_out = not goal_handle.is_active or id(goal_handle) in self._preempted
                if not waited_out:
                    self.goal = state
            if waited_out:  # preempted while it waited for the lock: it never runs
                state.preempted = True
                outcome, record_s = PersonalizeResult(success=False, message='never started'), 0.0
            else:
                try:
                    outcome, record_s = self._run_goal(state, goal)
                except Exception as exc:  # noqa: BLE001 - reported in the result, node keeps running
                    outcome = PersonalizeResult(success=False, message=f'{type(exc).__name__}: {exc}')
                    record_s = 0.0
                finally:
                    with self._lock:
                        self._recording = False
                    with self._goal_lock:
                        if self.goal is state:
                            self.goal = None
        self._fill_result(result, outcome, record_s, time.monotonic() - started)
        self._finish_goal(state, result, outcome)
        with self._goal_lock:
            self._preempted.discard(id(goal_handle))
            if self._current_handle is goal_handle:
                self._current_handle = None
        self.last_result = clip(f'{goal.operator_id}: {result.message}', 400)
        return result

    def _finish_goal(self, state: _GoalState, result: Any, outcome: PersonalizeResult) -> None:
        """Set the terminal state; a goal preempted meanwhile is already aborted."""
        handle = state.handle
        try:
            if state.preempted or not handle.is_active:
                result.success = False
                result.message = 'preempted by a newer goal' + (f' ({outcome.message})' if outcome.message else '')
            else:
                # The job's outcome decides: a cancel that came after the store switched is too late.
                status, message = goal_status(outcome, handle.is_cancel_requested or state.cancel.is_set())
                result.message = message
                if status == GOAL_CANCELED:
                    result.success = False
                    result.message = f'canceled: {message}' if message else 'canceled'
                    handle.canceled()
                elif status == GOAL_SUCCEEDED:
                    handle.succeed()
                else:
                    handle.abort()
        except RuntimeError as exc:  # a concurrent preemption won the race
            self._node.get_logger().warning(f'personalize goal ended concurrently: {exc}')
        self._node.get_logger().info(f'personalize goal for {state.operator_id!r} finished: {result.message}')

    def _fill_result(self, result: Any, outcome: PersonalizeResult, record_s: float, total_s: float) -> None:
        result.success = bool(outcome.success)
        result.accepted = bool(outcome.accepted)
        result.message = str(outcome.message)
        result.adapter_id = str(outcome.adapter_id or '')
        result.adapter_path = str(outcome.adapter_path or '')
        result.mode = str(outcome.mode or '')
        result.metrics_before = metrics_to_msgs(outcome.metrics_before)
        result.metrics_after = metrics_to_msgs(outcome.metrics_after)
        result.n_train = max(0, int(outcome.n_train))
        result.n_holdout = max(0, int(outcome.n_holdout))
        result.record_s = finite_or(record_s)
        result.train_s = finite_or(outcome.durations.get('train', 0.0))
        result.total_s = finite_or(total_s)

    def _run_goal(self, state: _GoalState, goal: Any) -> tuple[PersonalizeResult, float]:
        source = SOURCES_BY_CODE[goal.source]
        default_utts = self._param('personalize.max_utterances') if source == SOURCE_RECORD else None
        limits = Limits(
            max_utterances=goal.max_utterances or default_utts,
            max_record_s=goal.max_record_s or (self._param('personalize.max_record_s') if source == SOURCE_RECORD
                                               else None),
            max_train_s=goal.max_train_s or None, max_steps=goal.max_steps or None)
        options = TrainingOptions(holdout=goal.holdout or None, holdout_ids=list(goal.holdout_ids),
                                  objective=goal.objective, method=goal.method, pseudo_label=goal.pseudo_label,
                                  gate_margin=goal.gate_margin or None)
        utterances: list[tuple[np.ndarray, str]] = []
        record_s = 0.0
        if source == SOURCE_RECORD:
            problem = self._enrollment_problem()
            if problem:
                return PersonalizeResult(success=False, message=problem), 0.0
            started = time.monotonic()
            utterances = self._record(state, limits)
            record_s = time.monotonic() - started
            if self._stopped(state):
                return PersonalizeResult(success=False, message='canceled while recording'), record_s
            if not utterances:
                return PersonalizeResult(success=False, message='no answers were recorded: is the audio topic '
                                         'publishing, and did the operator answer the prompts?'), record_s
        topics = list(goal.topics)
        if source == SOURCE_ROSBAG and not topics:
            resolve = self._node.resolve_topic_name
            topics = [resolve(self._param('audio.topic')), resolve('personalize/prompt')]
        request = PersonalizeRequest(operator_id=goal.operator_id, source=source, path=goal.path, topics=topics,
                                     utterances=utterances, limits=limits, options=options)
        outcome = self._run_job(state, request)
        if outcome.success and outcome.accepted:
            self._adopt(goal, outcome)  # also after a too-late cancel or a preemption: the store has switched
        return outcome, record_s

    def _enrollment_problem(self) -> str | None:
        """
        Why enrollment cannot work under the executor spinning this node (None: it can).

        Enrollment blocks the execute callback while audio callbacks deliver the answers, so the
        executor must run at least two callbacks at once; a single-threaded one would stall until
        every prompt timed out.
        """
        executor = self._node.executor
        if executor is None:
            return None
        threads = getattr(executor, '_num_threads', None)
        if threads is None:
            threads = getattr(getattr(executor, '_executor', None), '_max_workers', None)
        if isinstance(executor, SingleThreadedExecutor) or (threads is not None and threads < 2):
            return (f'recording needs a MultiThreadedExecutor with at least 2 threads, but this node is spun by '
                    f'a {type(executor).__name__}: audio callbacks could not deliver the answers while the goal '
                    'waits for them (run the node with its main() or the launch file)')
        return None

    def _stopped(self, state: _GoalState) -> bool:
        return state.cancel.is_set() or state.handle.is_cancel_requested or not state.handle.is_active

    def _feedback(self, state: _GoalState) -> None:
        progress = state.progress
        fb = Personalize.Feedback()
        fb.phase = progress.phase
        fb.progress = finite_or(min(max(progress.progress, 0.0), 1.0))
        fb.step = max(0, int(progress.step))
        fb.loss = finite_or(progress.loss, NOT_MEASURED)
        fb.eta_s = finite_or(progress.eta_s, -1.0)
        fb.prompt = state.prompt
        fb.utterances_recorded = state.recorded
        fb.message = progress.message
        if state.handle.is_active:
            state.handle.publish_feedback(fb)

    def _record(self, state: _GoalState, limits: Limits) -> list[tuple[np.ndarray, str]]:
        """Enrollment: publish each prompt, record the next utterance as its answer."""
        period = self._param('personalize.feedback_period_s')
        timeout = self._param('personalize.answer_timeout_s')
        max_utts = limits.max_utterances or len(self._prompts)
        deadline = time.monotonic() + (limits.max_record_s or math.inf)
        recorded: list[tuple[np.ndarray, str]] = []
        misses = 0
        with self._lock:
            self._recording = True
        try:
            for index in range(max_utts):
                if self._stopped(state) or time.monotonic() >= deadline or misses >= 3:
                    break
                prompt = self._prompts[index % len(self._prompts)]
                self._drain_enrollment()
                state.prompt = prompt
                state.progress = Progress(PHASE_RECORDING, progress=0.3 * len(recorded) / max_utts,
                                          message=f'please read prompt {index + 1} of {max_utts}')
                self._prompt_publisher.publish(String(data=prompt))
                answer = self._wait_answer(state, min(deadline, time.monotonic() + timeout), period)
                if answer is None:
                    misses += 1
                    continue
                misses = 0
                recorded.append((answer.audio, prompt))
                state.recorded = len(recorded)
                with self._lock:
                    self.enrollment_utterances += 1
        finally:
            with self._lock:
                self._recording = False
            state.prompt = ''
        state.progress = Progress(PHASE_RECORDING, progress=0.3, message=f'recorded {len(recorded)} answers')
        return recorded

    def _drain_enrollment(self) -> None:
        while True:
            try:
                self._inbox.get_nowait()
            except queue.Empty:
                return

    def _wait_answer(self, state: _GoalState, until: float, period: float) -> Utterance | None:
        while not self._stopped(state):
            now = time.monotonic()
            if now >= until:
                return None
            self._feedback(state)
            try:
                return self._inbox.get(timeout=min(period, until - now))
            except queue.Empty:
                continue
        return None

    def _run_job(self, state: _GoalState, request: PersonalizeRequest) -> PersonalizeResult:
        """Run the job in a thread; report feedback every period; forward cancel requests."""
        def on_progress(progress: Progress) -> None:
            state.progress = progress

        def on_poll() -> None:
            if self._stopped(state):
                state.cancel.set()
            self._feedback(state)

        return run_in_thread(self.job, request, on_progress, state.cancel,
                             poll_s=self._param('personalize.feedback_period_s'), on_poll=on_poll)

    def diagnostic_status(self, name: str) -> diag.Status:
        """Return the personalization status for ``/diagnostics`` (``name``: the node's name)."""
        goal = self.goal
        personalize = diag.Status(f'{name}: personalization', values={
            'available': self.job is not None, 'state': 'idle' if goal is None else goal.progress.phase,
            'operator': goal.operator_id if goal else '', 'progress': goal.progress.progress if goal else 0.0,
            'step': goal.progress.step if goal else 0, 'loss': goal.progress.loss if goal else math.nan,
            'utterances recorded': goal.recorded if goal else 0, 'last result': self.last_result})
        if self.job is None and self._param('personalize.enabled'):
            personalize.escalate(diag.WARN, self._unavailable or 'no personalization job')
        elif goal is not None:
            personalize.message = f'{goal.progress.phase} for {goal.operator_id}'
        return personalize
