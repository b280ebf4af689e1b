"""``devboxctl``: the command-line entry point (typer).

``devboxctl serve`` runs the whole product on one machine (see :mod:`app.serve`); on its
first start (no admin in the database) it creates the admin user and prints its token once.
``devboxctl admin user create`` and ``devboxctl admin token create`` make users and tokens
directly in the database named by the settings (printing the new token on stdout, once).  The
client commands (``login``, ``create``, ``ssh``, ``ssh-proxy``…) live in :mod:`app.client`;
this module imports nothing heavy at the top, so they start fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from app import __version__
from app.client import app as client_app
from app.db.roles import Role
from app.logs import configure
from app.settings import ClusterMode, Settings

cli = typer.Typer(
    name="devboxctl",
    help="Devbox: cloud development environments.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


admin_cli = typer.Typer(help="Manage users and API tokens (needs the database settings).")
admin_users = typer.Typer(help="Users.")
admin_tokens = typer.Typer(help="API tokens.")
admin_cli.add_typer(admin_users, name="user")
admin_cli.add_typer(admin_tokens, name="token")
cli.add_typer(admin_cli, name="admin")
cli.add_typer(client_app)  # login, ls, create, ssh, … (app.client)


def _settings(overrides: dict[str, Any]) -> Settings:
    """Settings from the environment and ``overrides``; exit 2 with a clear message if bad."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            prefix = f"setting {where}: " if where else "settings: "
            console.print(f"[red]error:[/red] {prefix}{message}")
        console.print("Settings come from DEVBOX_* variables, DEVBOX_CONFIG and the options.")
        raise typer.Exit(2) from None


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
    settings = _settings(overrides)
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


@cli.command()
def controller() -> None:
    """Run the controller alone against a real cluster (DEVBOX_CLUSTER=kube, KUBECONFIG or the
    in-cluster service account), with /metrics on DEVBOX_CONTROLLER_METRICS_PORT."""
    settings = _settings({})
    configure(settings.log_level, settings.log_format)
    from app.controller.runner import ControllerProcessError, run_process
    from app.kube import KubeConfigError

    try:
        asyncio.run(run_process(settings))
    except (ControllerProcessError, KubeConfigError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _run_admin(settings: Settings, work: Callable[[Settings], Coroutine[Any, Any, str]]) -> None:
    """Run an admin coroutine; print its result (a token) on stdout, errors on stderr."""
    configure(settings.log_level, settings.log_format)
    from app.admin import AdminError
    from app.db.errors import DatabaseError
    from app.db.users import AccountError

    try:
        token = asyncio.run(work(settings))
    except (AdminError, AccountError, DatabaseError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    typer.echo(token)


@admin_users.command("create")
def admin_user_create(
    name: Annotated[str, typer.Argument(help="User name (a DNS label).")],
    namespace: Annotated[str, typer.Option(help="Kubernetes namespace of the user's objects.")],
    role: Annotated[Role, typer.Option(help="user or admin.")] = Role.USER,
    data_dir: Annotated[Path | None, typer.Option(help="As for serve.")] = None,
) -> None:
    """Create a user (and its namespace) and print its first API token (shown once)."""
    from app.admin import create_user_from_cli

    overrides = {"data_dir": data_dir} if data_dir is not None else {}
    settings = _settings(overrides)
    _run_admin(
        settings,
        lambda s: create_user_from_cli(s, name=name, namespace=namespace, role=role, log=console),
    )


@admin_tokens.command("create")
def admin_token_create(
    user: Annotated[str, typer.Argument(help="Name of the user the token is for.")],
    name: Annotated[str, typer.Option(help="A label for the token.")] = "cli",
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, max=3650, help="Days until it expires [never].")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="As for serve.")] = None,
) -> None:
    """Print a new API token of USER (shown once)."""
    from app.admin import create_token_from_cli

    overrides = {"data_dir": data_dir} if data_dir is not None else {}
    settings = _settings(overrides)
    _run_admin(
        settings,
        lambda s: create_token_from_cli(
            s, user_name=user, name=name, expires_in_days=expires_in_days
        ),
    )


def main() -> None:
    cli()
