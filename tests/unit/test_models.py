"""Model backends: a recorded conversation replays exactly, through the Replay backend and through
the OpenAI-compatible path (the openai client over real HTTP against the transcript server); a
conversation that departs from the recording is refused, never answered wrongly."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from opslab.agent import model_server
from opslab.agent.models import ModelError, OpenAIChat, Recorder, Replay, Reply, ToolCall
from opslab.agent.transcript import ReplayDiverged, ReplayExhausted, Transcript
from opslab.primitives.errors import ConfigError

TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
    for name in ("alerts", "rollout_undo")
]
SCRIPT = [
    Reply("", (ToolCall("c1", "alerts", {}),)),
    Reply("gateway fails since its rollout", (ToolCall("c2", "rollout_undo", {"service": "gateway"}),)),
    Reply("rolled back; the error ratio is back under 1 %"),
]


class Scripted:
    """The model being recorded: answers SCRIPT in order."""

    name = "scripted"

    def __init__(self) -> None:
        self.replies = iter(SCRIPT)

    def complete(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]) -> Reply:
        return next(self.replies)


def converse(model: Any, results: Sequence[str] = ("[gateway error burn]", "rolled back")) -> list[Reply]:
    """A minimal agent loop: ask, run each tool call (answering ``results``), until a text answer."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are on call for the shop."},
        {"role": "user", "content": "An alert fired. Investigate and mitigate."},
    ]
    answers = iter(results)
    replies = []
    while True:
        reply = model.complete(messages, TOOLS)
        replies.append(reply)
        messages.append(reply.message())
        if not reply.tool_calls:
            return replies
        for call in reply.tool_calls:
            messages.append({"role": "tool", "tool_call_id": call.id, "content": next(answers)})


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    path = tmp_path / "transcript.jsonl"
    assert converse(Recorder(Scripted(), path)) == SCRIPT
    return path


def test_a_reply_survives_the_wire_form() -> None:
    for reply in SCRIPT:
        assert Reply.parse(json.loads(json.dumps(reply.message()))) == reply


def test_arguments_that_are_not_a_json_object_are_a_model_error() -> None:
    bad = {"role": "assistant", "tool_calls": [{"id": "x", "function": {"name": "scale", "arguments": "{oops"}}]}
    with pytest.raises(ModelError, match="arguments for scale are not JSON"):
        Reply.parse(bad)
    listed = {"role": "assistant", "tool_calls": [{"id": "x", "function": {"name": "scale", "arguments": "[1]"}}]}
    with pytest.raises(ModelError, match="not a JSON object"):
        Reply.parse(listed)


def test_replay_answers_the_recording_even_when_the_world_answers_differently(recorded: Path) -> None:
    assert converse(Replay(recorded), results=("[other live values]", "done")) == SCRIPT


def test_replay_refuses_a_conversation_that_departs_from_the_recording(recorded: Path) -> None:
    replay = Replay(recorded)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are on call for the shop."},
        {"role": "user", "content": "Something else entirely."},
    ]
    with pytest.raises(ReplayDiverged, match="message 1 \\(user\\) differs"):
        replay.complete(messages, TOOLS)
    # the agent ran a different tool call than the recorded model asked for
    first = Replay(recorded)
    messages[1]["content"] = "An alert fired. Investigate and mitigate."
    reply = first.complete(messages, TOOLS)
    forged = reply.message()
    forged["tool_calls"][0]["function"]["name"] = "rollout_restart"
    with pytest.raises(ReplayDiverged, match="message 2 \\(assistant\\)"):
        first.complete([*messages, forged, {"role": "tool", "tool_call_id": "c1", "content": "[]"}], TOOLS)
    with pytest.raises(ReplayDiverged, match="offers the tools"):
        Replay(recorded).complete(messages, TOOLS[:1])


def test_replay_past_the_end_is_refused(recorded: Path) -> None:
    replay = Replay(recorded)
    converse(replay)
    with pytest.raises(ReplayExhausted, match="holds 3 replies"):
        converse(replay)


@pytest.mark.parametrize(
    ("text", "error"),
    [("", "is empty"), ("{not json\n", "is not JSON"), ('{"messages": []}\n', "has no reply")],
)
def test_a_broken_transcript_is_one_clear_error(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(text)
    with pytest.raises(ConfigError, match=error):
        Transcript.load(path)


def key_file(tmp_path: Path, key: str, mode: int = 0o600) -> Path:
    path = tmp_path / "model.key"
    path.write_text(key + "\n")
    path.chmod(mode)
    return path


def test_the_openai_path_replays_over_real_http(recorded: Path, tmp_path: Path) -> None:
    with model_server.serving(Transcript.load(recorded), key="s3cret") as url:
        model = OpenAIChat(url, "opslab-replay", key_file(tmp_path, "s3cret"))
        try:
            assert converse(model) == SCRIPT
            with pytest.raises(ModelError, match="holds 3 replies"):
                converse(model)
        finally:
            model.close()


def test_the_openai_path_reports_divergence_and_a_wrong_key(recorded: Path, tmp_path: Path) -> None:
    with model_server.serving(Transcript.load(recorded), key="s3cret") as url:
        wrong = OpenAIChat(url, "opslab-replay", key_file(tmp_path, "guess"))
        try:
            with pytest.raises(ModelError, match="401"):
                converse(wrong)
        finally:
            wrong.close()
        model = OpenAIChat(url, "opslab-replay", key_file(tmp_path, "s3cret"))
        try:
            with pytest.raises(ModelError, match="differs from the recording"):
                model.complete([{"role": "user", "content": "hello"}], TOOLS)
        finally:
            model.close()


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="readable by others"):
        OpenAIChat("http://127.0.0.1:9/v1", "m", key_file(tmp_path, "k", 0o644))
