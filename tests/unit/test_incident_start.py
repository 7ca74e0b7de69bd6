"""Starting an incident is one at a time on a platform: a second start while one is being started
is refused at once (the two would both find no incident running, and the second would overwrite the
first's record). No platform is needed."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from opslab.incidents import engine
from opslab.primitives.errors import PlatformNotRunning
from tests.platforms import shifted_settings

NO_PLATFORM = 4700
"""A port offset no platform of opslab's uses (dev 0, tests 1000-3000): nothing answers there."""


def test_a_start_while_another_is_starting_is_refused_and_the_lock_goes_with_it(tmp_path: Path) -> None:
    settings = shifted_settings(tmp_path / "state", NO_PLATFORM)
    engine.folder(settings).mkdir(parents=True)
    with (engine.folder(settings) / "start.lock").open("a") as other:
        fcntl.flock(other, fcntl.LOCK_EX)  # another process is between its check and its saved record
        with pytest.raises(engine.ShopBusy, match="another incident is being started"):
            engine.start(settings, "inc-01-checkout-crashloop", load=False)
    # Released: a start gets past the lock and stops at what is really wrong here (no platform).
    with pytest.raises(PlatformNotRunning):
        engine.start(settings, "inc-01-checkout-crashloop", load=False)
    assert engine.load_active(settings) is None, "a refused start saves no record"
