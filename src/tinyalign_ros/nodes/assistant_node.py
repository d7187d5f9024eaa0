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
The assistant node: audio topic in, answers out, plus the personalize action server.

Everything heavy happens in the engine (:mod:`tinyalign_ros.pipeline`, :mod:`.segmenter`); this
node only translates. Its threads:

- the executor (a ``MultiThreadedExecutor``) runs the audio callbacks in their own mutually
  exclusive group (chunks stay in order; the segmenter is not thread-safe), the action server and
  the adapter services in a reentrant group (a long personalization never blocks a cancel request
  or a service call), and timers in the default group;
- one worker thread runs the pipeline. Utterances wait in a bounded queue; when it is full the
  oldest one is dropped and counted (an answer to a stale question is worse than none);
- a personalization job runs in its own thread while the execute callback reports feedback at
  least once a second; the assistant keeps answering meanwhile (diagnostics report its latency
  while training separately).

Topics (relative names, so a namespace applies): subscribes ``audio`` and ``audio_info``;
publishes ``response`` (tinyalign_msgs/AssistantResponse), ``response/text`` (std_msgs/String),
``response/partial`` (std_msgs/String: the answer so far, while it is generated),
``latency/{encode,project,first_token,total,queue}_ms`` (std_msgs/Float32 for rqt_plot),
``personalize/prompt`` (std_msgs/String: the sentence the operator should read) and
``/diagnostics``. Services ``list_adapters`` and ``activate_adapter``; action ``personalize``.

This module is the node itself: its lifecycle, the pipeline worker and the answer topics. The parts
it owns live in modules named after them: :mod:`.parameters` (declarations and checks),
:mod:`.audio_input` (audio in, utterances out), :mod:`.adapter_manager` (which operator's adapter
answers; the adapter services), :mod:`.personalize_server` (the action) and :mod:`.diagnostics`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
import math
from pathlib import Path
import threading
import time
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from std_msgs.msg import Float32, String
from tinyalign_msgs.msg import AssistantResponse

from tinyalign_ros.llm import GenerationConfig, PromptConfig
from tinyalign_ros.nodes import diagnostics as diag
from tinyalign_ros.nodes.adapter_manager import AdapterLoader, AdapterManager
from tinyalign_ros.nodes.audio_input import AudioInput
from tinyalign_ros.nodes.messages import NOT_MEASURED
from tinyalign_ros.nodes.parameters import BACKEND_SPEC, check_parameter, clip, DEVICE_BACKENDS, NodeConfigError, PARAMS
from tinyalign_ros.nodes.personalize_server import PersonalizeServer
from tinyalign_ros.nodes.ros_audio import finite_or
from tinyalign_ros.personalization.api import AdapterStore, BackendContext, load_backend, PersonalizeJob
from tinyalign_ros.pipeline import MODES
from tinyalign_ros.segmenter import Utterance

try:  # Humble and Jazzy have it; keep main() working on older rclpy too
    from rclpy.executors import ExternalShutdownException
except ImportError:  # pragma: no cover
    class ExternalShutdownException(Exception):  # type: ignore[no-redef]
        pass

NODE_NAME = 'tinyalign_assistant'
LATENCY_KINDS = ('encode', 'project', 'first_token', 'total', 'queue')


def default_store_dir() -> Path:
    """Return the engine's default adapter store, so the CLI and the node share operators' adapters."""
    from tinyalign_ros.personalization.store import default_store_root

    return default_store_root()


@dataclass
class _Job:
    """One utterance waiting for the pipeline."""

    utterance_id: int
    audio: np.ndarray
    audio_truncated: bool
    enqueued: float
    frame_id: str
    stamp_ns: int = 0  # ROS time of the end of the utterance


@dataclass
class _Counters:
    """What the pipeline diagnostics report; updated from several threads under the node's lock."""

    dropped: int = 0
    dropped_reported: int = 0
    answered: int = 0
    pipeline_errors: int = 0
    last_pipeline_error: str = ''
    last_pipeline_failed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class AssistantNode(LifecycleNode):
    """
    Listens, answers, and personalizes. See the module docstring for topics and threads.

    ``pipeline``, ``job``, ``store`` and ``adapter_loader`` can be injected (tests use fakes);
    otherwise they are built from the parameters. ``adapter_loader(path) -> (projector, metadata)``
    defaults to :func:`tinyalign_ros.adapter.load_adapter` checked against the loaded models.
    """

    def __init__(self, *, pipeline: Any = None, job: PersonalizeJob | None = None,
                 store: AdapterStore | None = None,
                 adapter_loader: AdapterLoader | None = None,
                 node_name: str = NODE_NAME, **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self._injected = (pipeline, job, store, adapter_loader)
        self._lock = threading.Lock()
        self._ready = False  # configured: runtime parameter changes apply
        self._active = False  # active: audio is answered and goals are accepted
        self._stop = threading.Event()
        self._publish_lock = threading.Lock()  # held by the worker while it publishes; stop() waits for it
        self._configure_error: Exception | None = None
        self._worker: threading.Thread | None = None
        self._audio_input: AudioInput | None = None
        self._diag_timer: Any = None
        self._adapters: AdapterManager | None = None
        self.personalize_server: PersonalizeServer | None = None
        self._queue_cv = threading.Condition()
        self._queue: deque[_Job] = deque()
        # Validate runtime-changeable parameters at declaration too (YAML/launch overrides).
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for spec in PARAMS:
            try:
                self.declare_parameter(spec.name, spec.default, spec.descriptor())
            except InvalidParameterValueException as exc:
                if spec.name not in DEVICE_BACKENDS:
                    raise
                # A robot's launch file asking for a GPU this machine lacks: say so, keep the default.
                self.get_logger().error(f'{spec.name} refused, using {spec.default!r}: {exc}')
                self.declare_parameter(spec.name, spec.default, spec.descriptor(), ignore_override=True)
        if self._param('autostart'):
            # What `ros2 launch` relies on; a lifecycle manager sets autostart to false and drives
            # the transitions itself.
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise self._configure_error or NodeConfigError('configuring the assistant failed')
            self.trigger_activate()

    # -- lifecycle transitions ---------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the models and the personalization backend; create publishers, services, action."""
        try:
            self._configure()
        except Exception as exc:  # noqa: BLE001 - a failed configure leaves the node unconfigured
            self._configure_error = exc
            self.get_logger().error(f'configure failed: {type(exc).__name__}: {exc}')
            self._teardown()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to audio and start answering; the lifecycle publishers come alive."""
        audio = self._audio_input
        audio.subscribe()
        self._active = True
        self.get_logger().info(
            f'listening on {audio.topic} ({audio.flavour} {audio.message_type.__name__}, '
            f'segmentation={self._param("segmentation")}); mode={self._mode}')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop answering (audio unsubscribed, waiting utterances dropped); models stay loaded."""
        self._active = False
        if self._audio_input is not None:
            self._audio_input.unsubscribe()
        with self._queue_cv:
            self._queue.clear()
        if self.personalize_server is not None:
            self.personalize_server.cancel()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unload: stop the threads, destroy what configure created, drop the models."""
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        pipeline, job, store, adapter_loader = self._injected
        p = self._param
        self._stop = threading.Event()
        self._configure_error = None
        self._prompt = PromptConfig(instruction=p('prompt.instruction'), placement=p('prompt.placement'),
                                    system=p('prompt.system') or None,
                                    examples=tuple(t for t in p('prompt.examples') if t))
        self._generation = GenerationConfig(
            max_new_tokens=p('generation.max_new_tokens'), do_sample=p('generation.do_sample'),
            temperature=p('generation.temperature'), top_p=p('generation.top_p'),
            seed=None if p('generation.seed') < 0 else p('generation.seed'))
        self._mode = p('mode')
        self._counters = _Counters()
        self._latency = diag.LatencyWindow(p('diagnostics.latency_window'))
        self._latency_training = diag.LatencyWindow(p('diagnostics.latency_window'))
        self._utterance_ids = 0
        self._queue = deque()
        self._queue_size = p('queue.size')
        self._busy = False
        self._worker = threading.Thread(target=self._work_loop, name='tinyalign_pipeline', daemon=True)

        # Audio input (subscribed on activate).
        self._audio_input = AudioInput(self, self._route)

        # Engine.
        self.pipeline = pipeline if pipeline is not None else self._build_pipeline()

        # Personalization backend.
        self.job, self.store = job, store
        self._backend_error = ''
        if p('personalize.enabled') and (job is None or store is None):
            self._load_backend()
        if not p('personalize.enabled'):
            self._backend_error = 'personalization is disabled (personalize.enabled is false)'
        self._adapters = AdapterManager(self, pipeline=self.pipeline, store=self.store, unavailable=self._backend_error,
                                        loader=adapter_loader)

        # Outputs (reliable: launch_testing's WaitForTopics and most tools subscribe reliable). The
        # answer topics are lifecycle publishers: silent unless the node is active. Diagnostics
        # keep reporting while inactive.
        reliable = QoSProfile(depth=10)
        self._response_pub = self.create_lifecycle_publisher(AssistantResponse, 'response', reliable)
        self._text_pub = self.create_lifecycle_publisher(String, 'response/text', reliable)
        self._partial_pub = self.create_lifecycle_publisher(String, 'response/partial', reliable)
        self._prompt_pub = self.create_lifecycle_publisher(String, 'personalize/prompt', reliable)
        self._latency_pubs = {k: self.create_lifecycle_publisher(Float32, f'latency/{k}_ms', reliable)
                              for k in LATENCY_KINDS}
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', reliable)

        # Personalization and adapters: reentrant so cancel and services are served during a goal.
        self._action_group = ReentrantCallbackGroup()
        self.personalize_server = PersonalizeServer(
            self, job=self.job, unavailable=self._backend_error, prompt_publisher=self._prompt_pub,
            is_active=lambda: self._active, adopt=self._adapters.adopt)
        if p('personalize.enabled'):
            self.personalize_server.start(self._action_group)
            self._adapters.offer_services(self._action_group)

        self._diag_timer = self.create_timer(p('diagnostics.period_s'), self._publish_diagnostics)
        self._last_report = time.monotonic()
        self._worker.start()

        initial_operator = p('operator')
        self._adapters.start(initial_operator)
        self._ready = True
        if self._adapters.operator != initial_operator:  # the parameter says who answers
            self.set_parameters([Parameter('operator', value=self._adapters.operator)])

    def _teardown(self) -> None:
        """Undo configure: threads stopped, publishers, services, action and timer destroyed."""
        self.stop()
        self._ready = False
        self._active = False
        if self._audio_input is not None:
            self._audio_input.unsubscribe()
        if self.personalize_server is not None:
            self.personalize_server.destroy()
        if self._adapters is not None:
            self._adapters.destroy_services()
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        destroy_managed = getattr(self, 'destroy_lifecycle_publisher', self.destroy_publisher)
        for name in ('_response_pub', '_text_pub', '_partial_pub', '_prompt_pub'):
            publisher = self.__dict__.pop(name, None)
            if publisher is not None:
                destroy_managed(publisher)
        for publisher in self.__dict__.pop('_latency_pubs', {}).values():
            destroy_managed(publisher)
        diag_pub = self.__dict__.pop('_diag_pub', None)
        if diag_pub is not None:
            self.destroy_publisher(diag_pub)
        self.pipeline = self._injected[0]
        self.job, self.store = self._injected[1], self._injected[2]

    # -- the engine and the personalization backend ------------------------------------------------
    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _build_pipeline(self) -> Any:
        """Load the models named by the parameters (what main() does; tests inject a fake)."""
        from tinyalign_ros.config import ConfigError, load_config
        from tinyalign_ros.pipeline import Pipeline

        p = self._param
        overrides = {
            'encoder.model': p('encoder.model') or None, 'encoder.device': p('encoder.device'),
            'encoder.compute_type': p('encoder.compute_type'), 'encoder.cpu_threads': p('encoder.cpu_threads'),
            'encoder.cache_dir': p('encoder.cache_dir') or None,
            'llm.model': p('llm.model') or None, 'llm.threads': p('llm.threads') or None,
            'llm.device': p('llm.device'), 'llm.dtype': p('llm.dtype'),
            'adapter': p('adapter') or None, 'mode': p('mode'),
            'prompt.instruction': p('prompt.instruction'), 'prompt.placement': p('prompt.placement'),
            'prompt.system': p('prompt.system') or None,
            'generation.max_new_tokens': p('generation.max_new_tokens'),
            'generation.do_sample': p('generation.do_sample'), 'generation.temperature': p('generation.temperature'),
            'generation.top_p': p('generation.top_p'),
            'generation.seed': None if p('generation.seed') < 0 else p('generation.seed'),
            'fusion.weight': p('fusion.weight'), 'fusion.search': p('fusion.search'),
            'fusion.candidates': p('fusion.candidates'), 'fusion.beam': p('fusion.beam'),
            'fusion.punctuation_weight': p('fusion.punctuation_weight'),
            'fusion.insertion_bonus': p('fusion.insertion_bonus'),
            'fusion.llm_candidates': p('fusion.llm_candidates'), 'fusion.llm_floor': p('fusion.llm_floor'),
            'max_utterance_s': p('segmenter.max_utterance_s'),
        }
        try:
            config = load_config(None, overrides)
        except ConfigError as exc:
            raise NodeConfigError(f'invalid engine settings: {exc}') from exc
        started = time.monotonic()
        pipeline = Pipeline.from_config(config)
        self.get_logger().info(f'models loaded in {time.monotonic() - started:.1f} s '
                               f'(adapter {pipeline.adapter_id})')
        return pipeline

    def _load_backend(self) -> None:
        p = self._param
        store_dir = Path(p('personalize.store_dir')).expanduser() if p('personalize.store_dir') else default_store_dir()
        work_dir = Path(p('personalize.work_dir')).expanduser() if p('personalize.work_dir') \
            else store_dir / '.work'
        context = BackendContext(pipeline=self.pipeline, store_dir=store_dir, work_dir=work_dir,
                                 log=self.get_logger().info)
        spec = p('personalize.backend')
        if not BACKEND_SPEC.fullmatch(spec):
            self._backend_error = (f'personalize.backend {clip(spec)!r} is not allowed: only factories inside '
                                   'the tinyalign_ros package ("tinyalign_ros.module:factory") are loaded')
            self.get_logger().warning(self._backend_error)
            return
        try:
            backend = load_backend(p('personalize.backend'), context)
        except Exception as exc:  # noqa: BLE001 - any failure only disables personalization
            self._backend_error = f'personalization backend unavailable: {exc}'
            self.get_logger().warning(self._backend_error)
            return
        self.job = self.job or backend.job
        self.store = self.store or backend.store

    # -- parameters at run time --------------------------------------------------------------------
    def _on_set_parameters(self, parameters: list[Any]) -> SetParametersResult:
        """Validate (always) and apply (once the node is running) runtime-changeable parameters."""
        for parameter in parameters:
            reason = check_parameter(parameter.name, parameter.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        if not getattr(self, '_ready', False):
            return SetParametersResult(successful=True)
        values = {p.name: p.value for p in parameters}
        if 'operator' in values:
            # The adapter itself loads in the adapter thread; only fast checks delay the answer.
            reason = self._adapters.request(values['operator'])
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        if 'mode' in values:
            self._mode = values['mode']
        if 'prompt.instruction' in values:
            self._prompt = replace(self._prompt, instruction=values['prompt.instruction'])
        if 'generation.max_new_tokens' in values:
            self._generation = replace(self._generation, max_new_tokens=values['generation.max_new_tokens'])
        return SetParametersResult(successful=True)

    @property
    def effective_mode(self) -> str:
        """Return the mode asked for, or cascade when the store says the operator is better served by it."""
        operator_mode = self._adapters.operator_mode if self._adapters is not None else 'aligned'
        return 'cascade' if operator_mode == 'cascade' and 'cascade' in MODES else self._mode

    @property
    def operator(self) -> str:
        """Return the operator whose adapter answers ('' = the base adapter)."""
        return self._adapters.operator if self._adapters is not None else ''

    def wait_for_adapter(self, timeout: float = 10.0) -> bool:
        """Wait until no operator switch is pending (for tests and tools); False on timeout."""
        return self._adapters.wait(timeout) if self._adapters is not None else True

    def statistics(self) -> dict[str, Any]:
        """Return a snapshot of the counters diagnostics report (for tests and debugging)."""
        with self._lock:
            c = replace(self._counters)
        with self._queue_cv:
            depth = len(self._queue)
        enrolled = self.personalize_server.enrollment_utterances if self.personalize_server is not None else 0
        audio = self._audio_input.statistics() if self._audio_input is not None else {}
        return {**audio, 'dropped': c.dropped, 'answered': c.answered, 'pipeline_errors': c.pipeline_errors,
                'queue_depth': depth, 'enrollment_utterances': enrolled}

    # -- utterances to the pipeline ----------------------------------------------------------------
    def _route(self, utterance: Utterance, frame_id: str, stamp_ns: int) -> None:
        """Hand an utterance to enrollment while it records, else to the pipeline."""
        if self.personalize_server is not None and self.personalize_server.take(utterance):
            return
        self.enqueue(utterance.audio, utterance.truncated, frame_id, stamp_ns)

    def enqueue(self, audio: np.ndarray, audio_truncated: bool = False, frame_id: str = '',
                stamp_ns: int | None = None) -> int:
        """
        Queue one utterance for the pipeline (drop-oldest when full); returns its id.

        ``stamp_ns``: ROS time of the end of the utterance (default: now).
        """
        if stamp_ns is None:
            stamp_ns = self.get_clock().now().nanoseconds
        with self._queue_cv:
            self._utterance_ids += 1
            job = _Job(self._utterance_ids, audio, audio_truncated, time.monotonic(), frame_id, stamp_ns)
            if len(self._queue) >= self._queue_size:
                dropped = self._queue.popleft()
                with self._lock:
                    self._counters.dropped += 1
                self.get_logger().warning(
                    f'pipeline busy: dropped utterance {dropped.utterance_id} (queue.size={self._queue_size})',
                    throttle_duration_sec=5.0)
            self._queue.append(job)
            self._queue_cv.notify()
        return job.utterance_id

    # -- the pipeline worker -----------------------------------------------------------------------
    def _work_loop(self) -> None:
        while not self._stop.is_set():
            with self._queue_cv:
                while not self._queue and not self._stop.is_set():
                    self._queue_cv.wait(0.5)
                if self._stop.is_set():
                    return
                job = self._queue.popleft()
                self._busy = True
            try:
                self._answer(job)
            finally:
                with self._queue_cv:
                    self._busy = False

    def _answer(self, job: _Job) -> None:
        queue_ms = (time.monotonic() - job.enqueued) * 1000.0
        mode = self.effective_mode
        pieces: list[str] = []

        def on_token(piece: str) -> None:
            pieces.append(piece)
            with self._publish_lock:
                if not self._stop.is_set():
                    self._partial_pub.publish(String(data=''.join(pieces)))

        try:
            response = self.pipeline.respond(job.audio, mode=mode, on_token=on_token,
                                             prompt=self._prompt, generation=self._generation)
        except Exception as exc:  # noqa: BLE001 - one bad utterance must not stop the assistant
            with self._lock:
                self._counters.pipeline_errors += 1
                self._counters.last_pipeline_error = f'{type(exc).__name__}: {exc}'
                self._counters.last_pipeline_failed = True
            self.get_logger().error(f'pipeline failed on utterance {job.utterance_id}: {exc}',
                                    throttle_duration_sec=5.0)
            return
        with self._publish_lock:
            if self._stop.is_set():  # the node is going away: its publishers may already be destroyed
                return
            self._publish_response(job, response, queue_ms)

    def _publish_response(self, job: _Job, response: Any, queue_ms: float) -> None:
        latency = {k: finite_or(response.latency_ms.get(k, math.nan), math.nan) for k in LATENCY_KINDS[:-1]}
        latency['queue'] = queue_ms
        msg = AssistantResponse()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(max(job.stamp_ns, 0), 1_000_000_000)
        msg.header.frame_id = job.frame_id
        msg.utterance_id = job.utterance_id
        msg.text = str(response.text)
        msg.mode = str(getattr(response, 'path', None) or response.mode)  # the path that answered
        msg.transcript = str(getattr(response, 'transcript', None) or '')
        msg.operator_id = self._adapters.operator
        msg.adapter_id = str(response.adapter_id or '')
        msg.audio_duration_s = finite_or(response.audio_s)
        msg.encode_ms = finite_or(latency['encode'], NOT_MEASURED)
        msg.project_ms = finite_or(latency['project'], NOT_MEASURED)
        msg.first_token_ms = finite_or(latency['first_token'], NOT_MEASURED)
        msg.total_ms = finite_or(latency['total'], NOT_MEASURED)
        msg.queue_ms = float(queue_ms)
        msg.truncated = bool(response.truncated)
        msg.audio_truncated = bool(job.audio_truncated)
        self._response_pub.publish(msg)
        self._text_pub.publish(String(data=msg.text))
        training = self.personalize_server is not None and self.personalize_server.goal is not None
        window = self._latency_training if training else self._latency
        for kind, value in latency.items():
            window.add(kind, value)
            if math.isfinite(value):
                self._latency_pubs[kind].publish(Float32(data=float(value)))
        with self._lock:
            self._counters.answered += 1
            self._counters.last_pipeline_failed = False

    # -- diagnostics -------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        with self._lock:
            c = self._counters
            elapsed = max(now - self._last_report, 1e-6)
            self._last_report = now
            new_drops = c.dropped - c.dropped_reported
            c.dropped_reported = c.dropped
            snapshot = replace(c)
        name = self.get_name()
        audio = self._audio_input.diagnostic_status(name, now, elapsed, self._active)

        with self._queue_cv:
            depth, busy = len(self._queue), self._busy
        adapters = self._adapters
        pipeline = diag.Status(f'{name}: pipeline', values={
            'mode': self._mode, 'effective mode': self.effective_mode, 'operator': adapters.operator or '(base)',
            'operator requested': adapters.requested or '(base)', 'adapter error': adapters.error,
            'adapter': getattr(self.pipeline, 'adapter_id', None) or '', 'queue depth': depth,
            'queue size': self._queue_size, 'busy': busy, 'dropped utterances': snapshot.dropped,
            'answered': snapshot.answered, 'errors': snapshot.pipeline_errors,
            'last error': snapshot.last_pipeline_error,
            'encoder': self._identity('encoder'), 'llm': self._identity('llm')})
        pipeline.values.update(diag.latency_values(self._latency, 'total', 'total'))
        pipeline.values.update(diag.latency_values(self._latency, 'first_token', 'first token'))
        pipeline.values.update(diag.latency_values(self._latency_training, 'total', 'total while training'))
        if new_drops:
            pipeline.escalate(diag.WARN, f'dropped {new_drops} utterance(s): answers are slower than questions')
        if adapters.error:
            pipeline.escalate(diag.WARN, adapters.error)
        if snapshot.last_pipeline_failed:
            pipeline.escalate(diag.ERROR, f'pipeline failed: {snapshot.last_pipeline_error}')

        personalize = self.personalize_server.diagnostic_status(name)
        array = diag.to_message([audio, pipeline, personalize], self.get_clock().now().to_msg(),
                                self._param('diagnostics.hardware_id'))
        self._diag_pub.publish(array)

    def _identity(self, role: str) -> str:
        identity = getattr(getattr(self.pipeline, role, None), 'identity', None) or {}
        return str(identity.get('name', '')) if isinstance(identity, dict) else ''

    # -- lifecycle ---------------------------------------------------------------------------------
    def stop(self, timeout: float = 1.0) -> None:
        """
        Stop answering, loading and personalizing; safe to call more than once.

        An answer still being generated is abandoned (its thread publishes nothing once stopped),
        so shutting down never waits for the LLM and never publishes on destroyed publishers.
        """
        self._stop.set()
        if self.personalize_server is not None:
            self.personalize_server.cancel()
        with self._queue_cv:
            self._queue.clear()
            self._queue_cv.notify_all()
        if self._adapters is not None:
            self._adapters.stop(timeout)
        if self._worker is not None and self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(timeout=timeout)
        with self._publish_lock:  # a publish in progress has finished; later ones see _stop
            pass

    def destroy_node(self) -> None:
        """Stop the threads first, then the action server, then the node's publishers and the rest."""
        self._teardown()
        super().destroy_node()


def main(args: list[str] | None = None, *, node_factory: Callable[[], AssistantNode] | None = None) -> None:
    """
    ``ros2 run tinyalign_ros assistant_node`` (models load once; the action server shares them).

    Ctrl-C (or any shutdown of the context) ends the spin; the node's threads stop, the executor
    shuts down, then the node is destroyed: nothing is published on a destroyed publisher and no
    traceback is printed. ``node_factory`` builds the node (tests inject fakes).
    """
    rclpy.init(args=args)
    node = None
    executor = None
    try:
        node = (node_factory or AssistantNode)()
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.stop()
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
