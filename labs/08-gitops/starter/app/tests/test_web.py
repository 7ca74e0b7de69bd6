from web import greeting


def test_greeting_names_the_caller() -> None:
    assert greeting("ops") == "hello, ops"
