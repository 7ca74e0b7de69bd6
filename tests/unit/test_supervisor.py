import configparser
from pathlib import Path

from opslab.runtime.supervisor import Program, Supervisor


def test_config_keeps_commands_literal_and_programs_manual(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "supervisor", tmp_path / "logs")
    program = Program(
        name="kafka",
        command=[
            "java",
            "-cp",
            "/cache/kafka/libs/*",
            "-Dlayout=%d %p",
            "kafka.Kafka",
            "/state/config/k.properties",
        ],
        log=tmp_path / "logs" / "kafka.log",
        directory=tmp_path,
        environment={"KAFKA_OPTS": "-Xmx1g"},
    )
    assert sup.write_config([program]) is True
    assert sup.write_config([program]) is False
    parser = configparser.ConfigParser()
    parser.read(sup.conf)
    section = parser["program:kafka"]
    assert section["autostart"] == "false"
    assert section["autorestart"] == "true"
    assert section["stopasgroup"] == "true"
    assert "%%d %%p" in section.get("command", raw=True)
    assert parser["unix_http_server"]["chmod"] == "0700"
    assert "inet_http_server" not in parser
