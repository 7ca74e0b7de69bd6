"""The web service lab 8 delivers: what the pipeline tests and packs into an image."""


def greeting(name: str) -> str:
    return f"hello, {name}"
