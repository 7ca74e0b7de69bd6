"""The `opslab` command line: a thin layer over the library (every command calls one function)."""

from __future__ import annotations

import os
import sys

import click

from opslab import __version__
from opslab.cli.agent_commands import agent
from opslab.cli.demo_command import demo
from opslab.cli.incident_commands import incident
from opslab.cli.lab_commands import grade_command, lab
from opslab.cli.platform_commands import down, logs, status, up
from opslab.cli.scenario_commands import scenario
from opslab.cli.setup_command import setup
from opslab.primitives.errors import OpslabError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="opslab")
def cli() -> None:
    """opslab: a local platform for hands-on DevOps, SRE and AIOps labs.

    Start with `opslab up` (it runs `opslab setup` first when something is missing).
    """


cli.add_command(setup)
cli.add_command(up)
cli.add_command(down)
cli.add_command(status)
cli.add_command(logs)
cli.add_command(scenario)
cli.add_command(incident)
cli.add_command(agent)
cli.add_command(demo)
cli.add_command(lab)
cli.add_command(grade_command)


def main() -> None:
    """Entry point: expected problems become one line on stderr, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except OpslabError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("OPSLAB_DEBUG"):
            raise
        click.echo(
            f"internal error: {type(exc).__name__}: {exc}".splitlines()[0]
            + " (this is a bug in opslab; rerun with OPSLAB_DEBUG=1 for details)",
            err=True,
        )
        sys.exit(70)
