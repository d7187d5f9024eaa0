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
Audio messages of both ``audio_common_msgs`` flavours for the nodes: which one is installed, and building messages.

Reading messages (formats, payloads, the decoder) is ROS-free and lives in
:mod:`tinyalign_ros.audio_messages`; this module is the part that imports the installed message
package (see docs/ros2.md for the two flavours).
"""

from __future__ import annotations

import array
import importlib
import math
from types import ModuleType
from typing import Any

import numpy as np

from tinyalign_ros.audio_messages import (ARRAY_CODES, AudioFormat, FLAVOUR_MGONZS13, FLAVOUR_ROS_DRIVERS, FLAVOURS,
                                          float_to_samples, MESSAGE_NAMES, PORTAUDIO_CODES, TYPED_FIELDS)


class FlavourError(RuntimeError):
    """The requested audio_common_msgs flavour is not the one installed."""


# -- flavours ---------------------------------------------------------------------------------
def audio_msgs_module() -> ModuleType:
    """``audio_common_msgs.msg``, imported when needed (tests switch flavours between nodes)."""
    try:
        return importlib.import_module('audio_common_msgs.msg')
    except ImportError as exc:
        raise FlavourError(
            'audio_common_msgs is not installed: install ros-$ROS_DISTRO-audio-common-msgs '
            '(ros-drivers) or build mgonzs13/audio_common in your workspace'
        ) from exc


def detect_flavour(module: ModuleType | None = None) -> str:
    """Which flavour ``audio_common_msgs.msg`` is: only mgonzs13 has ``AudioStamped``."""
    module = module or audio_msgs_module()
    return FLAVOUR_MGONZS13 if hasattr(module, 'AudioStamped') else FLAVOUR_ROS_DRIVERS


def resolve_flavour(requested: str, module: ModuleType | None = None) -> str:
    """'auto' -> the installed flavour; a named flavour must be the installed one."""
    installed = detect_flavour(module)
    if requested == 'auto':
        return installed
    if requested not in FLAVOURS:
        raise FlavourError(f'audio flavour must be "auto" or one of {FLAVOURS}, got {requested!r}')
    if requested != installed:
        raise FlavourError(
            f'audio flavour {requested!r} was requested but the installed audio_common_msgs is the '
            f'{installed} one; set the flavour parameter to "auto" or "{installed}"'
        )
    return requested


def message_class(flavour: str, name: str = '') -> type:
    """Return the audio message class of ``flavour`` named ``name`` ('' = the flavour's usual one)."""
    names = MESSAGE_NAMES[flavour]
    name = name or names[0]
    if name not in names:
        raise FlavourError(f'{flavour} audio_common_msgs publish audio as {names}, not {name!r}')
    return getattr(audio_msgs_module(), name)


def info_class() -> type:
    return audio_msgs_module().AudioInfo


# -- writing messages -------------------------------------------------------------------------
def encode(samples: np.ndarray, flavour: str, fmt: AudioFormat, message_name: str = '',
           stamp: Any = None, frame_id: str = '') -> Any:
    """
    Build one audio message of ``flavour`` holding ``samples`` (float, mono, at fmt.sample_rate).

    Mono input is duplicated to ``fmt.channels`` channels. Sequence fields get ``array.array``
    values: rosidl_python refuses numpy arrays there.
    """
    values = float_to_samples(samples, fmt.sample_format)
    if fmt.channels > 1:
        values = np.repeat(values, fmt.channels)
    cls = message_class(flavour, message_name)
    msg = cls()
    if flavour == FLAVOUR_ROS_DRIVERS:
        audio = msg.audio if hasattr(msg, 'audio') else msg
        audio.data = array.array('B', values.astype(values.dtype.newbyteorder('<')).tobytes())
    else:
        audio = msg.audio if hasattr(msg, 'header') else msg
        setattr(audio.audio_data, TYPED_FIELDS[fmt.sample_format],
                array.array(ARRAY_CODES[fmt.sample_format], values.tobytes()))
        audio.info = info_message(flavour, fmt, chunk=len(samples))
    if hasattr(msg, 'header'):
        if stamp is not None:
            msg.header.stamp = stamp
        msg.header.frame_id = frame_id
    return msg


def info_message(flavour: str, fmt: AudioFormat, chunk: int = 0) -> Any:
    """Build an ``AudioInfo`` describing ``fmt`` in ``flavour``'s layout."""
    info = info_class()()
    if flavour == FLAVOUR_ROS_DRIVERS:
        info.channels = fmt.channels
        info.sample_rate = fmt.sample_rate
        info.sample_format = fmt.sample_format
        info.bitrate = fmt.sample_rate * fmt.frame_bytes * 8
        info.coding_format = 'wave'
    else:
        info.format = PORTAUDIO_CODES[fmt.sample_format]
        info.channels = fmt.channels
        info.rate = fmt.sample_rate
        info.chunk = int(chunk)
    return info


def finite_or(value: float, default: float = 0.0) -> float:
    """Return a float safe for a ROS float field (NaN/Inf become ``default``)."""
    value = float(value)
    return value if math.isfinite(value) else default
