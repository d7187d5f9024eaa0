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

"""ament_copyright (copyright and license notices) over the package; skipped where ament is absent."""

from pathlib import Path

import pytest

ament_copyright = pytest.importorskip('ament_copyright.main', reason='ament_copyright is not installed (ROS 2 only)')

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.copyright
@pytest.mark.linter
def test_copyright() -> None:
    rc = ament_copyright.main(argv=[str(ROOT / name) for name in ('src', 'test', 'launch')])
    assert rc == 0, 'Found files without a copyright and license notice'
