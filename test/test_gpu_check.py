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

"""The GPU check script on a machine without a GPU: it says why it did nothing and writes nothing."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_skips_cleanly_without_a_gpu(tmp_path: Path) -> None:
    out = tmp_path / 'gpu.json'
    # Hide any GPU, so the test means the same on a CUDA machine.
    env = {**os.environ, 'CUDA_VISIBLE_DEVICES': '', 'PYTHONPATH': str(ROOT / 'src')}
    proc = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'gpu_check.py'), '--out', str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'gpu_check: skipped, nothing written: no CUDA GPU visible to torch' in proc.stdout
    assert not out.exists() and list(tmp_path.iterdir()) == []
