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
