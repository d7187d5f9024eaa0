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

"""Every settings class is built strictly: an unknown key fails with its name and the class's own error."""

from __future__ import annotations

import pytest
from tinyalign_ros.augment import AugmentConfig
from tinyalign_ros.personalization.config import PersonalizeConfig, PersonalizeError
from tinyalign_ros.projector import ProjectorConfig, ProjectorConfigError
from tinyalign_ros.strict import build
from tinyalign_ros.training.config import TrainConfig, TrainError


@pytest.mark.parametrize('cls, error, good', [
    (TrainConfig, TrainError, {'lr': 0.002}),
    (PersonalizeConfig, PersonalizeError, {'lr': 0.002}),
    (ProjectorConfig, ProjectorConfigError, {'top_k': 3}),
    (AugmentConfig, ValueError, {'p_noise': 0.5}),
])
def test_from_dict_builds_known_keys_and_names_unknown_ones(cls: type, error: type, good: dict) -> None:
    built = cls.from_dict(good)
    key, value = next(iter(good.items()))
    assert getattr(built, key) == value
    with pytest.raises(error, match=r"unknown .*\['lrr', 'zz'\]"):
        cls.from_dict({**good, 'zz': 1, 'lrr': 2})


def test_build_passes_values_through_the_class_checks() -> None:
    with pytest.raises(TrainError, match='negatives'):
        build(TrainConfig, {'negatives': -1}, TrainError, 'training settings')
