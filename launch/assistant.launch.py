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

r"""
Launch the tinyalign_ros assistant (and optionally a file publisher standing in for a microphone).

Examples::

    ros2 launch tinyalign_ros assistant.launch.py
    ros2 launch tinyalign_ros assistant.launch.py namespace:=robot1 audio_topic:=/mic/audio
    ros2 launch tinyalign_ros assistant.launch.py flavour:=mgonzs13 cascade:=true
    ros2 launch tinyalign_ros assistant.launch.py with_file_publisher:=true \
        audio_files:=/data/question1.wav,/data/question2.flac

Arguments (an empty one overrides nothing: the config file's value applies):
    config_file          parameters YAML of the assistant (default: the package's config/assistant.yaml);
                         a missing file fails the launch
    namespace            namespace for both nodes (topics, services and the action are relative)
    audio_topic          audio topic the assistant listens to and the file publisher plays on
    flavour              audio_common_msgs flavour: auto, ros-drivers or mgonzs13
    cascade              true: answer through Whisper's transcript; false: the aligned path
    with_file_publisher  true: also start audio_file_publisher playing audio_files
    audio_files          comma-separated WAV/FLAC files for the file publisher
"""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare
import yaml

TRUE = ('true', '1', 'yes', 'on')
FALSE = ('false', '0', 'no', 'off')
NODE_NAME = 'tinyalign_assistant'


def config_path(config_file):
    """Return the parameters file, which must exist (launch_ros only warns about a missing one)."""
    path = Path(config_file).expanduser()
    if not path.is_file():
        raise RuntimeError(f'config_file {config_file!r} does not exist')
    return path


def assistant_parameters(config_file, audio_topic='', flavour='', cascade=''):
    """
    Return the assistant's ``parameters``: the file, then only the overrides the user gave.

    launch_ros passes a dict after the file, so an override that is always present would silently
    win over the user's YAML; empty launch arguments therefore override nothing.
    """
    overrides = {}
    if audio_topic:
        overrides['audio.topic'] = audio_topic
    if flavour:
        overrides['audio.flavour'] = flavour
    if cascade.lower() in TRUE:
        overrides['mode'] = 'cascade'
    elif cascade.lower() in FALSE:
        overrides['mode'] = 'aligned'
    elif cascade:
        raise RuntimeError(f'cascade:={cascade!r} must be true or false')
    return [str(config_path(config_file))] + ([overrides] if overrides else [])


def configured_audio_topics(config_file):
    """(audio topic, AudioInfo topic) the assistant's parameters file sets ('' where it sets none)."""
    data = yaml.safe_load(config_path(config_file).read_text(encoding='utf-8')) or {}
    for key in (NODE_NAME, f'/{NODE_NAME}', f'/**/{NODE_NAME}', '/**'):
        audio = ((data.get(key) or {}).get('ros__parameters') or {}).get('audio') or {}
        if audio:
            return str(audio.get('topic') or ''), str(audio.get('info_topic') or '')
    return '', ''


def info_topic_beside(audio_topic):
    """``audio_info`` next to the audio topic, as audio_capture and the assistant do."""
    head, separator, _name = audio_topic.rpartition('/')
    return f'{head}{separator}audio_info'


def _nodes(context, *args, **kwargs):
    """Resolve the arguments and build the nodes (conditional parameters need plain values)."""
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    namespace = arg('namespace')
    config_file = arg('config_file')
    parameters = assistant_parameters(config_file, arg('audio_topic'), arg('flavour'), arg('cascade'))
    nodes = [Node(
        package='tinyalign_ros', executable='assistant_node', name=NODE_NAME,
        namespace=namespace, parameters=parameters, output='screen', emulate_tty=True)]
    if arg('with_file_publisher').lower() in TRUE:
        files = [f.strip() for f in arg('audio_files').split(',') if f.strip()]
        if not files:
            raise RuntimeError('with_file_publisher:=true needs audio_files:=a.wav[,b.wav...]')
        config_topic, config_info = configured_audio_topics(config_file)
        topic = arg('audio_topic') or config_topic or 'audio'
        info_topic = (config_info if not arg('audio_topic') else '') or info_topic_beside(topic)
        nodes.append(Node(
            package='tinyalign_ros', executable='audio_file_publisher', name='audio_file_publisher',
            namespace=namespace, output='screen',
            parameters=[{'files': files, 'topic': topic, 'info_topic': info_topic,
                         'flavour': arg('flavour') or 'auto', 'wait_for_subscribers': 1}]))
    return nodes


def generate_launch_description():
    default_config = PathJoinSubstitution([FindPackageShare('tinyalign_ros'), 'config', 'assistant.yaml'])
    return LaunchDescription([
        DeclareLaunchArgument('config_file', default_value=default_config,
                              description='Parameters YAML of the assistant node (must exist)'),
        DeclareLaunchArgument('namespace', default_value='', description='Namespace of the nodes'),
        DeclareLaunchArgument('audio_topic', default_value='',
                              description='Audio topic; empty = the audio.topic of the config file'),
        DeclareLaunchArgument('flavour', default_value='',
                              description='audio_common_msgs flavour: auto, ros-drivers or mgonzs13; '
                                          'empty = the audio.flavour of the config file'),
        DeclareLaunchArgument('cascade', default_value='',
                              description='true: Whisper transcript -> LLM; false: aligned; empty = the '
                                          'mode of the config file'),
        DeclareLaunchArgument('with_file_publisher', default_value='false',
                              description='true: play audio_files instead of a microphone'),
        DeclareLaunchArgument('audio_files', default_value='',
                              description='Comma-separated WAV/FLAC files for the file publisher'),
        OpaqueFunction(function=_nodes),
    ])
