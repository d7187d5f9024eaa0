"""ament_pep257 (docstring conventions) over the package; skipped where ament is not installed."""

from pathlib import Path

import pytest

ament_pep257 = pytest.importorskip('ament_pep257.main', reason='ament_pep257 is not installed (ROS 2 only)')

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257() -> None:
    rc = ament_pep257.main(argv=[str(ROOT / name) for name in ('src', 'test', 'launch')])
    assert rc == 0, 'Found code style errors / warnings'
