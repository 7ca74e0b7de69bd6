import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from web import greeting  # noqa: E402


def test_greeting_names_the_caller() -> None:
    assert greeting("ops") == "hello, ops"
