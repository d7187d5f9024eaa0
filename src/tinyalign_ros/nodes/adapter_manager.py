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
Which operator's adapter answers: switched at run time without a restart, and the adapter services.

An operator's adapter is named by the ``operator`` parameter, set again by a personalization that
activates its result, and changed by ``activate_adapter``; ``list_adapters`` reports the store.
Those three paths and the pipeline's current adapter must agree, and a switch must not stall the
callback that asked for it: the parameter callback only makes the fast checks (the store answers,
the adapter's metadata reads), the weights load in the adapter thread, and a failed load sets the
parameter back. One lock orders every swap of the pipeline's adapter.

:class:`AdapterManager` is owned by the node (composition): the node passes itself (logger,
``set_parameters``, the services' home) with the pipeline and the adapter store it configured.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from tinyalign_msgs.msg import AdapterInfo
from tinyalign_msgs.srv import ActivateAdapter, ListAdapters

from tinyalign_ros.nodes.messages import metrics_to_msgs
from tinyalign_ros.nodes.parameters import clip, operator_id_problem
from tinyalign_ros.personalization.api import AdapterStore, AdapterVersion, OperatorIdError, PersonalizeResult
from tinyalign_ros.pipeline import MODES

AdapterLoader = Callable[[str], tuple[Any, dict[str, Any]]]


def read_adapter_metadata(path: str) -> None:
    """Read the adapter's metadata (cheap): a missing or damaged adapter is refused at once."""
    from tinyalign_ros.adapter import read_metadata

    read_metadata(path)


class AdapterManager:
    """
    The adapter answering in ``pipeline``: the base one, or the active adapter of :attr:`operator`.

    ``store`` holds the operators' adapters (None: only the base adapter, ``unavailable`` says
    why). ``loader(path) -> (projector, metadata)`` loads an adapter; by default
    :func:`tinyalign_ros.adapter.load_adapter` checked against the pipeline's models, and then an
    operator's adapter is also checked (:func:`read_adapter_metadata`) before the switch is accepted.
    """

    def __init__(self, node: Node, *, pipeline: Any, store: AdapterStore | None, unavailable: str,
                 loader: AdapterLoader | None = None) -> None:
        self._node = node
        self.pipeline = pipeline
        self.store = store
        self._unavailable = unavailable
        self._loader = loader or self._load_checked
        self._checker = read_adapter_metadata if loader is None else None
        self._base = (getattr(pipeline, 'projector', None), getattr(pipeline, 'adapter_id', None))
        self._lock = threading.RLock()  # held while the pipeline's adapter changes
        self._cv = threading.Condition()
        self._request: str | None = None  # the operator the adapter thread loads next
        self._loading = False
        self._stop = threading.Event()
        self._services: list[Any] = []
        self.operator = ''  # whose adapter answers ('' = the base adapter)
        self.operator_mode = 'aligned'  # the mode the store recommends for that operator
        self.requested = ''  # the operator last asked for through the parameter
        self.error = ''  # why the last requested switch failed
        self.thread = threading.Thread(target=self._loop, name='tinyalign_adapter', daemon=True)

    def start(self, operator_id: str = '') -> None:
        """Start the adapter thread and answer as ``operator_id`` if it can (else with the base adapter, logged)."""
        self.thread.start()
        if operator_id:
            reason = self.switch(operator_id)
            if reason:
                self._node.get_logger().error(f'cannot start as operator {operator_id!r}: {reason}; '
                                              'answering with the base adapter')
        self.requested = self.operator

    def offer_services(self, callback_group: CallbackGroup) -> None:
        """Create ``list_adapters`` and ``activate_adapter`` (reentrant group: served during a goal)."""
        self._services = [
            self._node.create_service(ListAdapters, 'list_adapters', self.list_adapters_callback,
                                      callback_group=callback_group),
            self._node.create_service(ActivateAdapter, 'activate_adapter', self.activate_adapter_callback,
                                      callback_group=callback_group)]

    def destroy_services(self) -> None:
        for service in self._services:
            self._node.destroy_service(service)
        self._services = []

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the adapter thread (a load in progress finishes first, up to ``timeout``)."""
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=timeout)

    def request(self, operator_id: str) -> str | None:
        """
        Ask for ``operator_id``'s adapter; returns why not (None: it loads in the adapter thread).

        Only fast checks here: this runs in the parameter callback, in the group of the parameter
        services and the diagnostics timer.
        """
        if operator_id == self.requested:
            return None
        reason = self.check(operator_id)
        if reason:
            return reason
        self.requested = operator_id
        with self._cv:
            self._request = operator_id
            self._cv.notify_all()
        return None

    def _load_checked(self, path: str) -> tuple[Any, dict[str, Any]]:
        from tinyalign_ros.adapter import load_adapter

        encoder = getattr(self.pipeline, 'encoder', None)
        llm = getattr(self.pipeline, 'llm', None)
        return load_adapter(path, getattr(encoder, 'identity', None), getattr(llm, 'identity', None),
                            getattr(llm, 'embedding_matrix', None))

    def _swap_to(self, version: AdapterVersion | None) -> None:
        """Make ``version`` (None: the base adapter) answer from the next utterance on."""
        with self._lock:
            if version is None:
                projector, adapter_id = self._base
            else:
                projector, _meta = self._loader(version.path)
                adapter_id = version.adapter_id
            self.pipeline.set_adapter(projector, adapter_id)
        self._node.get_logger().info(f'adapter now {adapter_id!r}')

    def check(self, operator_id: str) -> str | None:
        """Why the node cannot answer as ``operator_id`` (None: it can), without loading weights."""
        if not operator_id:
            return None
        if self.store is None:
            return f'cannot switch operator: {self._unavailable or "no adapter store"}'
        try:
            version = self.store.active(operator_id)
            self.store.mode(operator_id)
        except Exception as exc:  # noqa: BLE001 - reported as the parameter's rejection reason
            return f'adapter store failed for operator {clip(operator_id)!r}: {exc}'
        if version is not None and self._checker is not None:
            try:
                self._checker(version.path)
            except Exception as exc:  # noqa: BLE001 - reported as the parameter's rejection reason
                return f'cannot load adapter {version.adapter_id}: {exc}'
        return None

    def _loop(self) -> None:
        """Load the adapter of the latest requested operator; on failure set the parameter back."""
        while not self._stop.is_set():
            with self._cv:
                while self._request is None and not self._stop.is_set():
                    self._cv.wait(0.5)
                if self._stop.is_set():
                    return
                operator_id, self._request = self._request, None
                self._loading = True
            if operator_id == self.operator:  # e.g. the parameter set back after a failure
                reason = None
            else:
                reason = self.switch(operator_id)
                self.error = reason or ''
            with self._cv:
                self._loading = False
                newer = self._request is not None
                self._cv.notify_all()
            if reason:
                self._node.get_logger().error(f'cannot answer as operator {clip(operator_id)!r}: {reason}; '
                                              f'still answering as {self.operator or "(base)"!r}')
                if not newer:
                    self._node.set_parameters([Parameter('operator', value=self.operator)])

    def wait(self, timeout: float = 10.0) -> bool:
        """Wait until no operator switch is pending (for tests and tools); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._request is not None or self._loading:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def switch(self, operator_id: str) -> str | None:
        """Answer as ``operator_id`` from now on; returns why not, or None."""
        with self._lock:
            version, mode = None, 'aligned'
            if operator_id:
                if self.store is None:
                    return f'cannot switch operator: {self._unavailable or "no adapter store"}'
                try:
                    version = self.store.active(operator_id)
                    mode = self.store.mode(operator_id)
                except Exception as exc:  # noqa: BLE001 - reported as the parameter's rejection reason
                    return f'adapter store failed for operator {operator_id!r}: {exc}'
            try:
                self._swap_to(version)
            except Exception as exc:  # noqa: BLE001 - a broken adapter must not take the node down
                return f'cannot load adapter {version.adapter_id if version else "base"}: {exc}'
            self.operator, self.operator_mode = operator_id, mode if mode in MODES else 'aligned'
        return None

    def list_adapters_callback(self, request: Any, response: Any) -> Any:
        response.active_operator_id = self.operator
        response.active_adapter_id = str(getattr(self.pipeline, 'adapter_id', '') or '')
        if self.store is None:
            response.success, response.message = False, self._unavailable or 'no adapter store'
            return response
        try:
            if request.operator_id and operator_id_problem(request.operator_id):
                raise OperatorIdError(operator_id_problem(request.operator_id))
            operators = [request.operator_id] if request.operator_id else list(self.store.operators())
            infos = []
            for operator_id in operators:
                mode = self.store.mode(operator_id)
                for version in self.store.versions(operator_id):
                    infos.append(AdapterInfo(
                        operator_id=operator_id, adapter_id=version.adapter_id, path=str(version.path),
                        created=str(version.created), active=bool(version.active),
                        loaded=(operator_id == self.operator and version.adapter_id == response.active_adapter_id),
                        mode=mode, metrics=metrics_to_msgs(version.metrics)))
        except Exception as exc:  # noqa: BLE001 - a service must answer, not crash the node
            response.success, response.message = False, str(exc)
            return response
        response.operators = operators
        response.adapters = infos
        response.success, response.message = True, f'{len(infos)} adapter version(s)'
        return response

    def activate_adapter_callback(self, request: Any, response: Any) -> Any:
        operator_id = request.operator_id or self.operator
        response.operator_id = operator_id
        if self.store is None:
            response.success, response.message = False, self._unavailable or 'no adapter store'
            return response
        if not operator_id:
            response.success, response.message = False, 'no operator given and no active operator'
            return response
        try:
            if operator_id_problem(operator_id):
                raise OperatorIdError(operator_id_problem(operator_id))
            with self._lock:
                previous = self.store.active(operator_id)
                response.previous_adapter_id = previous.adapter_id if previous else ''
                if request.action == ActivateAdapter.Request.ACTIVATE:
                    if not request.adapter_id:
                        raise ValueError('ACTIVATE needs an adapter_id (see list_adapters)')
                    version = self.store.activate(operator_id, request.adapter_id)
                elif request.action == ActivateAdapter.Request.ROLLBACK:
                    version = self.store.rollback(operator_id)
                else:
                    raise ValueError(f'unknown action {request.action}: use ACTIVATE (0) or ROLLBACK (1)')
                if operator_id == self.operator:
                    self._swap_to(version)
                    self.operator_mode = self.store.mode(operator_id)
                    response.loaded = True
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            response.success, response.message = False, f'{type(exc).__name__}: {exc}'
            return response
        response.active_adapter_id = version.adapter_id if version else ''
        response.success = True
        response.message = (f'{operator_id}: {response.previous_adapter_id or "base"} -> '
                            f'{response.active_adapter_id or "base"}' + (' (answering now)' if response.loaded else ''))
        return response

    def adopt(self, goal: Any, outcome: PersonalizeResult) -> None:
        """After an accepted run: answer with the new adapter now if this operator is (made) active."""
        operator_id = goal.operator_id
        if operator_id != self.operator and not goal.activate:
            return
        if operator_id != self.operator:
            # Loaded here (the execute callback is not in the parameter services' group), then the
            # parameter follows, so the result says whether the new adapter answers.
            reason = self.switch(operator_id)
            if reason:
                outcome.message += f' (could not switch operator: {reason})'
                return
            results = self._node.set_parameters([Parameter('operator', value=operator_id)])
            if not results[0].successful:
                outcome.message += f' (could not switch operator: {results[0].reason})'
            return
        version = AdapterVersion(adapter_id=outcome.adapter_id, operator_id=operator_id, path=outcome.adapter_path)
        try:
            with self._lock:
                self._swap_to(version)
                if outcome.mode in MODES:
                    self.operator_mode = outcome.mode
        except Exception as exc:  # noqa: BLE001 - keep answering with the previous adapter
            outcome.message += f' (new adapter not loaded: {exc})'
