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
launch_testing: assistant.launch.py with the file publisher, on a machine with ROS 2 sourced.

This is the one test that needs real ROS 2 (launch, launch_testing, the installed tinyalign_msgs and
the package's executables), so it is skipped where launch_testing cannot be imported; everything
else about the nodes is tested against the rclpy stand-in as well. It plays one synthesized question
through ``audio_file_publisher`` and waits for the assistant's answer (real embedded models, so the
first answer can take a while on a small CPU) and for its diagnostics.
"""

from pathlib import Path
import tempfile
import time
import unittest

import pytest

launch_testing = pytest.importorskip(
    'launch_testing', reason='launch_testing is part of ROS 2: this test runs only where ROS 2 is sourced')

import launch  # noqa: E402, I100
import launch_testing.actions  # noqa: E402, I100
import launch_testing.asserts  # noqa: E402, I100
import rclpy  # noqa: E402, I100
from launch.actions import IncludeLaunchDescription  # noqa: E402, I100
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402, I100

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = 'launch_test'
ANSWER_TIMEOUT_S = 300.0


def _launch_file() -> str:
    """Return the installed launch file when the package is installed (colcon test), else the source one."""
    try:
        from ament_index_python.packages import get_package_share_directory
        installed = Path(get_package_share_directory('tinyalign_ros')) / 'launch' / 'assistant.launch.py'
        if installed.is_file():
            return str(installed)
    except (ImportError, LookupError):
        pass
    return str(ROOT / 'launch' / 'assistant.launch.py')


def _question_wav() -> str:
    import soundfile as sf
    from tinyalign_ros.synth import synthesize

    path = Path(tempfile.mkdtemp(prefix='tinyalign_launch_')) / 'question.wav'
    sf.write(path, synthesize('What is the battery level of the robot?'), 16000)
    return str(path)


@pytest.mark.launch_test
def generate_test_description():
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(_launch_file()),
        launch_arguments={'namespace': NAMESPACE, 'with_file_publisher': 'true',
                          'audio_files': _question_wav()}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestAssistantAnswers(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        rclpy.init()

    @classmethod
    def tearDownClass(cls):
        rclpy.shutdown()

    def test_answer_diagnostics_and_action_server(self):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.action import ActionClient
        from tinyalign_msgs.action import Personalize
        from tinyalign_msgs.msg import AssistantResponse

        node = rclpy.create_node('launch_test_listener', namespace=NAMESPACE)
        try:
            responses, diagnostics = [], []
            node.create_subscription(AssistantResponse, 'response', responses.append, 10)
            node.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 10)
            client = ActionClient(node, Personalize, 'personalize')
            end = time.monotonic() + ANSWER_TIMEOUT_S
            while time.monotonic() < end and not (responses and diagnostics):
                rclpy.spin_once(node, timeout_sec=0.5)
            self.assertTrue(responses, f'no AssistantResponse on /{NAMESPACE}/response in {ANSWER_TIMEOUT_S} s')
            answer = responses[0]
            self.assertIn(answer.mode, ('aligned', 'cascade'))
            self.assertGreater(answer.audio_duration_s, 0.5)
            self.assertGreater(answer.total_ms, 0.0)
            names = {s.name for array in diagnostics for s in array.status}
            self.assertIn('tinyalign_assistant: pipeline', names)
            self.assertTrue(client.wait_for_server(timeout_sec=10.0), 'personalize action server missing')
        finally:
            node.destroy_node()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        # The file publisher exits 0 when done; the assistant exits on SIGINT at shutdown.
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
