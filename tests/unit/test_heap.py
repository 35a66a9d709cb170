"""The collector settings of a long-running process (kit.heap) and where the API applies them.

Freezing is process-wide, so what freezes runs in a fresh interpreter."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from counterpoint.kit.heap import YOUNG_THRESHOLD, collector_paused

_SERVED = textwrap.dedent(
    """
    import gc, json, sys
    from pathlib import Path
    from fastapi.testclient import TestClient
    from counterpoint.api.app import create_app
    from counterpoint.container import open_container
    from counterpoint.settings import Settings

    seen = {}
    for settle in (False, True):
        built = open_container(Settings(data_dir=Path(sys.argv[1]) / str(settle)))
        with TestClient(create_app(built, settle_heap=settle)) as client:
            healthy = client.get("/health").status_code
            seen[str(settle)] = [gc.get_freeze_count(), gc.get_threshold()[0], healthy]
    print(json.dumps(seen))
    """
)


def test_a_served_app_freezes_its_start_up_heap_and_a_test_app_does_not(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SERVED, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["False"] == [0, 700, 200]  # CPython's defaults, untouched
    frozen, young, healthy = seen["True"]
    assert healthy == 200
    assert young == YOUNG_THRESHOLD
    assert frozen > 10_000  # the application's modules, routes, mappers and models


def test_the_collector_is_paused_inside_and_restored_after() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
