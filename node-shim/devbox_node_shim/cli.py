"""``devbox-node-shim``: the node-shim's command line (typer).

``devbox-node-shim serve`` runs the gRPC server (settings from ``DEVBOX_NODE_SHIM_*``, see
:mod:`devbox_node_shim.settings`); ``devbox-node-shim version`` prints the version.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer
from pydantic import ValidationError

from devbox_node_shim import __version__

cli = typer.Typer(
    name="devbox-node-shim",
    help="Commit devbox containers to images and push them (one per node).",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"devbox-node-shim {__version__}")
        raise typer.Exit()


@cli.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Commit devbox containers to images and push them (one per node)."""


@cli.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@cli.command()
def serve(
    port: Annotated[int | None, typer.Option(help="gRPC port [7443].")] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
) -> None:
    """Run the node-shim's gRPC server until SIGTERM or SIGINT."""
    from devbox_node_shim.server import Server
    from devbox_node_shim.settings import Settings, SettingsError

    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        typer.echo(
            f"devbox-node-shim: unknown --log-level {log_level!r} "
            "(DEBUG, INFO, WARNING, ERROR or CRITICAL)",
            err=True,
        )
        raise typer.Exit(2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # one line per registry request is noise next to the node-shim's own commit lines
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
    try:
        settings = Settings() if port is None else Settings(port=port)
        settings.bearer_token()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        typer.echo(f"devbox-node-shim: invalid settings: {problems}", err=True)
        raise typer.Exit(2) from None
    except SettingsError as exc:
        typer.echo(f"devbox-node-shim: {exc}", err=True)
        raise typer.Exit(2) from None

    async def run() -> None:
        from devbox_node_shim.push import RegistryPusher

        registry = RegistryPusher.from_settings(settings)
        server = Server(settings, pusher=registry, registry=registry)
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await server.stop()

    try:
        asyncio.run(run())
    except OSError as exc:
        typer.echo(f"devbox-node-shim: {exc}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="devbox-node-shim")


if __name__ == "__main__":
    main()
