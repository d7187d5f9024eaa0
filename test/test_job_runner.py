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

"""The one job runner of the CLI and the action server: results, failures, polling and cancel."""

from __future__ import annotations

import threading
import time

from tinyalign_ros.personalization.api import (PersonalizeRequest, PersonalizeResult, Progress, run_in_thread,
                                               SOURCE_FOLDER)

REQUEST = PersonalizeRequest(operator_id='ann', source=SOURCE_FOLDER, path='/nowhere')


class FakeJob:
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour

    def run(self, request: PersonalizeRequest, on_progress, cancel: threading.Event):
        on_progress(Progress(phase='training', progress=0.5))
        if self.behaviour == 'raise':
            raise RuntimeError('disk full')
        if self.behaviour == 'wrong':
            return 'done'
        if self.behaviour == 'wait_for_cancel':
            while not cancel.wait(0.01):
                pass
            return PersonalizeResult(success=False, message='canceled', canceled=True)
        return PersonalizeResult(success=True, accepted=True, message='accepted')


def test_the_result_comes_back_and_progress_is_forwarded() -> None:
    seen: list[str] = []
    result = run_in_thread(FakeJob('ok'), REQUEST, lambda p: seen.append(p.phase), threading.Event(), poll_s=0.01)
    assert result.success and result.accepted and seen == ['training']


def test_a_job_that_raises_or_returns_garbage_becomes_a_failed_result() -> None:
    failed = run_in_thread(FakeJob('raise'), REQUEST, lambda p: None, threading.Event(), poll_s=0.01)
    assert not failed.success and 'RuntimeError: disk full' in failed.message
    wrong = run_in_thread(FakeJob('wrong'), REQUEST, lambda p: None, threading.Event(), poll_s=0.01)
    assert not wrong.success and 'not a PersonalizeResult' in wrong.message


def test_on_poll_runs_while_the_job_works_and_can_cancel_it() -> None:
    cancel = threading.Event()
    polls: list[float] = []

    def on_poll() -> None:
        polls.append(time.monotonic())
        if len(polls) == 3:
            cancel.set()

    result = run_in_thread(FakeJob('wait_for_cancel'), REQUEST, lambda p: None, cancel, poll_s=0.01, on_poll=on_poll)
    assert result.canceled and len(polls) >= 3
