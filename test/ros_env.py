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
The one switch between the real rclpy and the stand-in, plus helpers shared by the ROS tests.

Importing this module makes ``import rclpy`` work: the real one when ROS 2 is sourced, otherwise
test/rclpy_standin. Test code uses only the real rclpy API; the few things that only the stand-in
can do (switch the audio_common_msgs flavour, look at log records) go through functions here that
say so.
"""

from __future__ import annotations

from contextlib import contextmanager
import importlib
import threading
import time
from typing import Any, Callable, Iterator

try:
    import rclpy  # noqa: F401
    REAL_ROS = not getattr(rclpy, 'STANDIN', False)
except ImportError:
    REAL_ROS = False

if not REAL_ROS:
    import rclpy_standin

    rclpy_standin.install()
    import rclpy  # noqa: F811  (the stand-in now)

from rclpy.executors import MultiThreadedExecutor  # noqa: E402

FLAVOURS = ('ros-drivers', 'mgonzs13')


def installed_flavour() -> str:
    """Which audio_common_msgs flavour is importable now."""
    msg = importlib.import_module('audio_common_msgs.msg')
    return 'mgonzs13' if hasattr(msg, 'AudioStamped') else 'ros-drivers'


def available_flavours() -> list[str]:
    """Both with the stand-in; with real ROS only the one that is installed."""
    return list(FLAVOURS) if not REAL_ROS else [installed_flavour()]


def use_flavour(flavour: str) -> None:
    """Make ``flavour`` the importable audio_common_msgs (stand-in only; real ROS has one)."""
    if REAL_ROS:
        if installed_flavour() != flavour:
            raise RuntimeError(f'real ROS has the {installed_flavour()} audio_common_msgs installed')
        return
    rclpy_standin.set_audio_flavour(flavour)


def log_records() -> list[tuple[str, str, str]]:
    """(logger, severity, message) logged so far (stand-in only; empty list on real ROS)."""
    if REAL_ROS:
        return []
    from rclpy.logging import RECORDS
    return list(RECORDS)


class Spinner:
    """A MultiThreadedExecutor spinning some nodes in a background thread."""

    def __init__(self, *nodes: Any, num_threads: int = 4) -> None:
        self.executor = MultiThreadedExecutor(num_threads=num_threads)
        for node in nodes:
            self.executor.add_node(node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self.error: BaseException | None = None

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except BaseException as exc:  # noqa: BLE001 - reported by the test through .error
            self.error = exc

    def add(self, node: Any) -> None:
        self.executor.add_node(node)

    def start(self) -> Spinner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.executor.shutdown()
        self._thread.join(timeout=5)


@contextmanager
def ros_context() -> Iterator[None]:
    rclpy.init()
    try:
        yield
    finally:
        rclpy.try_shutdown()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = 'condition',
             spinner: Spinner | None = None) -> Any:
    """Poll ``predicate`` until truthy; fail with ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if spinner is not None and spinner.error is not None:
            raise AssertionError(f'executor failed while waiting for {what}') from spinner.error
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


def wait_future(future: Any, timeout: float = 10.0, what: str = 'future', spinner: Spinner | None = None) -> Any:
    wait_for(future.done, timeout, what, spinner)
    return future.result()


# -- fakes shared by the node tests -----------------------------------------------------------------
class FakePipeline:
    """
    Implements Pipeline.respond/set_adapter instantly; records what it was asked.

    The answer names the audio length and the adapter, so tests can tell which adapter answered.
    ``gate`` (set by default) lets a test hold the worker to fill the queue.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self.projector: Any = 'base-projector'
        self.adapter_id: str | None = 'base'
        self.delay_s = delay_s
        self.calls: list[dict[str, Any]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # set when respond() starts (before waiting on the gate)
        self.fail_next = False
        self._lock = threading.Lock()

    def set_adapter(self, projector: Any, adapter_id: str | None) -> None:
        with self._lock:
            self.projector, self.adapter_id = projector, adapter_id

    def respond(self, audio: Any, mode: str = 'aligned', on_token: Callable[[str], None] | None = None,
                prompt: Any = None, generation: Any = None) -> Any:
        from tinyalign_ros.pipeline import Response

        self.entered.set()
        self.gate.wait()
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            adapter_id = self.adapter_id
            self.calls.append({'n': len(audio), 'mode': mode, 'adapter_id': adapter_id,
                               'instruction': getattr(prompt, 'instruction', None),
                               'max_new_tokens': getattr(generation, 'max_new_tokens', None)})
            if self.fail_next:
                self.fail_next = False
                raise RuntimeError('fake pipeline failure')
        seconds = len(audio) / 16000.0
        words = ['heard', f'{seconds:.2f}', 's', 'with', str(adapter_id if mode == 'aligned' else 'cascade')]
        for word in words:
            if on_token is not None:
                on_token(word + ' ')
        return Response(text=' '.join(words), mode=mode, audio_s=seconds,
                        latency_ms={'encode': 1.0, 'project': 0.5, 'first_token': 2.0, 'total': 3.0},
                        truncated=False, adapter_id=adapter_id if mode == 'aligned' else None,
                        transcript='fake transcript' if mode == 'cascade' else None)


class FakeStore:
    """An in-memory AdapterStore (the protocol of tinyalign_ros.personalization.api)."""

    def __init__(self) -> None:
        from tinyalign_ros.personalization.api import AdapterVersion

        self._version = AdapterVersion
        self._versions: dict[str, list[Any]] = {}
        self._history: dict[str, list[str]] = {}
        self._modes: dict[str, str] = {}

    def add(self, operator_id: str, adapter_id: str, path: str, activate: bool = True,
            metrics: dict[str, float] | None = None) -> None:
        version = self._version(adapter_id=adapter_id, operator_id=operator_id, path=str(path),
                                created='2024-01-01T00:00:00', metrics=dict(metrics or {}))
        self._versions.setdefault(operator_id, []).append(version)
        if activate:
            self.activate(operator_id, adapter_id)

    def set_mode(self, operator_id: str, mode: str) -> None:
        self._modes[operator_id] = mode

    def operators(self) -> list[str]:
        return sorted(self._versions)

    def versions(self, operator_id: str) -> list[Any]:
        active = self._history.get(operator_id, [])
        current = active[-1] if active else None
        for version in self._versions.get(operator_id, []):
            version.active = version.adapter_id == current
        return list(self._versions.get(operator_id, []))

    def active(self, operator_id: str) -> Any:
        history = self._history.get(operator_id, [])
        if not history:
            return None
        return next(v for v in self._versions[operator_id] if v.adapter_id == history[-1])

    def activate(self, operator_id: str, adapter_id: str) -> Any:
        if not any(v.adapter_id == adapter_id for v in self._versions.get(operator_id, [])):
            raise KeyError(f'{operator_id} has no adapter {adapter_id}')
        self._history.setdefault(operator_id, []).append(adapter_id)
        return self.active(operator_id)

    def rollback(self, operator_id: str) -> Any:
        history = self._history.get(operator_id, [])
        if history:
            history.pop()
        return self.active(operator_id)

    def mode(self, operator_id: str) -> str:
        return self._modes.get(operator_id, 'aligned')


class FakeJob:
    """
    A PersonalizeJob that 'trains' for ``steps`` short steps, reporting progress and honouring cancel.

    On success it registers ``adapter_path`` in ``store`` as a new active version (as the real job does
    when its quality gate accepts the adapter).
    """

    def __init__(self, store: FakeStore, adapter_path: str, steps: int = 5, step_s: float = 0.05,
                 accept: bool = True, fail: bool = False, linger_after_save_s: float = 0.0) -> None:
        self.store = store
        self.linger_after_save_s = linger_after_save_s  # time after the store switched, for late cancels
        self.saved = threading.Event()
        self.adapter_path = adapter_path
        self.steps = steps
        self.step_s = step_s
        self.accept = accept
        self.fail = fail
        self.requests: list[Any] = []
        self.started = threading.Event()
        self.cancelled = threading.Event()

    def run(self, request: Any, on_progress: Callable[[Any], None], cancel: threading.Event) -> Any:
        from tinyalign_ros.personalization.api import PersonalizeResult, Progress

        self.requests.append(request)
        self.started.set()
        if self.fail:
            raise RuntimeError('fake job exploded')
        for step in range(1, self.steps + 1):
            if cancel.is_set():
                self.cancelled.set()
                return PersonalizeResult(success=False, message='cancelled at step %d' % step)
            on_progress(Progress('training', progress=step / self.steps, step=step, loss=1.0 / step,
                                 eta_s=(self.steps - step) * self.step_s, message=f'step {step}'))
            time.sleep(self.step_s)
        adapter_id = f'{request.operator_id}-v{len(self.requests)}'
        if self.accept:
            self.store.add(request.operator_id, adapter_id, self.adapter_path, activate=True)
        self.saved.set()
        time.sleep(self.linger_after_save_s)
        return PersonalizeResult(success=True, accepted=self.accept, cancel_too_late=cancel.is_set(),
                                 message='accepted' if self.accept else 'rejected by the gate',
                                 adapter_id=adapter_id if self.accept else '',
                                 adapter_path=self.adapter_path if self.accept else '',
                                 metrics_before={'wer_nearest': 0.5}, metrics_after={'wer_nearest': 0.2},
                                 durations={'train': self.steps * self.step_s}, n_train=4, n_holdout=1)


def save_tiny_adapter(path: Any, adapter_id: str) -> str:
    """Save a real adapter folder (tiny projector) so the node's default loader is exercised."""
    from tinyalign_ros.adapter import save_adapter
    from tinyalign_ros.projector import ProjectorConfig, build_projector

    projector = build_projector(ProjectorConfig(encoder_dim=8, llm_dim=8, d_model=8, n_layers=1, n_heads=2,
                                                ff_dim=16, reduce_factor=2))
    save_adapter(path, projector, {'adapter_id': adapter_id})
    return str(path)


def speech_like(seconds: float, rate: int = 16000, freq: float = 220.0) -> Any:
    """Return a float32 tone (not speech: for 'message' segmentation tests that need no VAD)."""
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
