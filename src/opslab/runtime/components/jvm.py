"""The Java runtime the JVM components (Kafka, ElasticMQ) run on."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from opslab.primitives.errors import PrerequisiteMissing


def java_binary(needed_by: str) -> str:
    """``$JAVA_HOME/bin/java``, else ``java`` on PATH; PrerequisiteMissing names ``needed_by`` if neither."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise PrerequisiteMissing(f"java is not installed ({needed_by} needs Java 17)", fix="install openjdk-17-jdk")
    return found
