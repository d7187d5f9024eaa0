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
Strict construction of settings dataclasses from plain mappings (YAML, JSON, adapter metadata).

Why: a misspelt key in a recipe or an adapter's metadata must fail loudly with the key's name, not
fall back to a default nobody asked for. Every settings class (projector, training, personalization,
augmentation) builds itself through :func:`build`; it depends on nothing else in the package, so
any module can use it.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar('T')


def build(cls: type[T], data: dict[str, Any], error: type[Exception], what: str) -> T:
    """Construct ``cls(**data)``, raising ``error`` naming every key ``cls`` does not have."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f'unknown {what}: {unknown}')
    return cls(**data)
