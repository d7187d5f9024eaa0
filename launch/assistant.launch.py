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

r"""Launch the tinyalign_ros assistant (and optionally a file publisher standing in for a microphone).

Examples::

    ros2 launch tinyalign_ros assistant.launch.py
    ros2 launch tinyalign_ros assistant.launch.py namespace:=robot1 audio_topic:=/mic/audio
    ros2 launch tinyalign_ros assistant.launch.py flavour:=mgonzs13 cascade:=true
    ros2 launch tinyalign_ros assistant.launch.py with_file_publisher:=true \
        audio_files:=/data/question1.wav,/data/question2.flac

Arguments:
    config_file          parameters YAML of the assistant (default: the package's config/assistant.yaml)
    namespace            namespace for both nodes (topics, services and the action are relative)
    audio_topic          audio topic the assistant listens to and the file publisher plays on
    flavour              audio_common_msgs flavour: auto, ros-drivers or mgonzs13
    cascade              true: answer through Whisper's transcript instead of the aligned path
    with_file_publisher  true: also start audio_file_publisher playing audio_files
    audio_files          comma-separated WAV/FLAC files for the file publisher
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

TRUE = ('true', '1', 'yes', 'on')


def _nodes(context, *args, **kwargs):
    """Resolve the arguments and build the nodes (conditional parameters need plain values)."""
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    namespace = arg('namespace')
    audio_topic = arg('audio_topic')
    flavour = arg('flavour')
    overrides = {'audio.topic': audio_topic, 'audio.flavour': flavour}
    if arg('cascade').lower() in TRUE:
        overrides['mode'] = 'cascade'
    nodes = [Node(
        package='tinyalign_ros', executable='assistant_node', name='tinyalign_assistant',
        namespace=namespace, parameters=[arg('config_file'), overrides],
        output='screen', emulate_tty=True)]
    if arg('with_file_publisher').lower() in TRUE:
        files = [f.strip() for f in arg('audio_files').split(',') if f.strip()]
        if not files:
            raise RuntimeError('with_file_publisher:=true needs audio_files:=a.wav[,b.wav...]')
        nodes.append(Node(
            package='tinyalign_ros', executable='audio_file_publisher', name='audio_file_publisher',
            namespace=namespace, output='screen',
            parameters=[{'files': files, 'topic': audio_topic, 'flavour': flavour,
                         'wait_for_subscribers': 1}]))
    return nodes


def generate_launch_description():
    default_config = PathJoinSubstitution([FindPackageShare('tinyalign_ros'), 'config', 'assistant.yaml'])
    return LaunchDescription([
        DeclareLaunchArgument('config_file', default_value=default_config,
                              description='Parameters YAML of the assistant node'),
        DeclareLaunchArgument('namespace', default_value='', description='Namespace of the nodes'),
        DeclareLaunchArgument('audio_topic', default_value='audio', description='Audio topic'),
        DeclareLaunchArgument('flavour', default_value='auto',
                              description='audio_common_msgs flavour: auto, ros-drivers or mgonzs13'),
        DeclareLaunchArgument('cascade', default_value='false',
                              description='true: Whisper transcript -> LLM instead of the aligned path'),
        DeclareLaunchArgument('with_file_publisher', default_value='false',
                              description='true: play audio_files instead of a microphone'),
        DeclareLaunchArgument('audio_files', default_value='',
                              description='Comma-separated WAV/FLAC files for the file publisher'),
        OpaqueFunction(function=_nodes),
    ])
