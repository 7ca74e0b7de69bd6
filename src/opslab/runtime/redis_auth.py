"""Redis's password: generated once per platform into a 0600 file, required by Redis for every
command, and handed to the platform's own clients inside OPSLAB_REDIS_URL (never on a command line).

Without it, anything on the machine could read (or change) what lab programs and the shop keep in
Redis; with it, a learner's programs get the URL from the environment the grader or `.opslab/env`
gives them, and an agent under test, which gets neither, cannot.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from opslab.primitives.files import write_private
from opslab.settings import Settings


def password_file(settings: Settings) -> Path:
    return settings.paths.pki / "redis.password"


def password(settings: Settings) -> str:
    """The platform's Redis password (created on first use)."""
    path = password_file(settings)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    if not text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        text = secrets.token_urlsafe(24)  # URL-safe: it goes into redis:// URLs as it is
        write_private(path, text + "\n")
    return text


def url(settings: Settings, db: int = 0) -> str:
    """redis://:<password>@127.0.0.1:<port>/<db>"""
    return f"redis://:{password(settings)}@127.0.0.1:{settings.ports.redis}/{db}"
