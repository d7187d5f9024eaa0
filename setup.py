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

"""Packaging for tinyalign_ros (ament_python; also a plain pip package with the `tinyalign` CLI)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'tinyalign_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    package_dir={'': 'src'},
    packages=find_packages('src'),
    package_data={PACKAGE: ['assets/base_adapter/*', 'assets/recipes/*', 'assets/sets/*.jsonl']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml')),
    ],
    python_requires='>=3.10',
    install_requires=[
        'numpy',
        'torch',
        'transformers',
        'peft',
        'faster-whisper',
        'gguf',
        'safetensors',
        'soundfile',
        'soxr',
        'pyyaml',
        'tqdm',
        'rich',
        'jiwer',
        'psutil',
        'rosbags',
        'matplotlib',
    ],
    extras_require={'test': ['pytest']},
    zip_safe=True,
    maintainer='tinyalign_ros maintainers',
    maintainer_email='tinyalign@example.com',
    description='Aligned ASR-LLM voice assistant for ROS 2 that personalizes to its operator on the robot.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'tinyalign = tinyalign_ros.cli:main',
            'assistant_node = tinyalign_ros.nodes.assistant_node:main',
            'audio_file_publisher = tinyalign_ros.nodes.audio_file_publisher:main',
        ],
    },
)
