"""``devboxctl``: the command-line entry point (typer).

``devboxctl serve`` runs the whole product on one machine (see :mod:`app.serve`).  The
client commands (create, ssh, …) arrive with the connecting issue.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from app import __version__
from app.logs import configure
from app.settings import ClusterMode, Settings

cli = typer.Typer(
    name="devboxctl",
    help="Devbox: cloud development environments.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


@cli.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="API server port [8080].")] = None,
    cluster: Annotated[
        ClusterMode | None,
        typer.Option(help="sim: embedded simulated cluster; kube: KUBECONFIG / in-cluster."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Folder for SQLite, cluster state, kubeconfig.")
    ] = None,
    sim_port: Annotated[
        int | None, typer.Option(help="Simulated API server port [a free one].")
    ] = None,
) -> None:
    """Run the API server, controller and (by default) a simulated cluster with SQLite."""
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "host": host,
            "port": port,
            "cluster": cluster,
            "data_dir": data_dir,
            "sim_port": sim_port,
        }.items()
        if value is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            console.print(f"[red]error:[/red] setting {where}: {error['msg']}")
        console.print("Settings come from DEVBOX_* variables, DEVBOX_CONFIG and the options.")
        raise typer.Exit(2) from None
    configure(settings.log_level, settings.log_format)
    from app.db.errors import DatabaseError
    from app.kube import KubeConfigError
    from app.serve import ServeError
    from app.serve import serve as run_serve

    try:
        asyncio.run(run_serve(settings, console))
    except (ServeError, DatabaseError, KubeConfigError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def main() -> None:
    cli()
