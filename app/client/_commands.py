"""The ``devboxctl`` client commands (typer + rich), on the public GraphQL API only.

Read commands take ``--output json`` (``-o json``) and then print JSON on stdout (one
document; ``watch`` prints one JSON object per line).  Progress and messages go to stderr.
Exit codes: see :class:`app.client.ExitCode` (0 ok, 1 error, 2 usage, 3 not found, 4 auth,
5 server unavailable, 6 ``--wait`` timed out).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import webbrowser
from collections.abc import Coroutine
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from app.client import _config, _ssh
from app.client import _documents as docs
from app.client._errors import ClientError, ExitCode, NotFound, OperationFailed, Timeout
from app.client._graphql import JSON, GraphQLClient, check_payload
from app.client._proxy import proxy_stdio
from app.client._wait import GoneGoal, PhaseGoal, act_and_wait, describe

app = typer.Typer(add_completion=False)
err = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


class Ide(StrEnum):
    VSCODE = "vscode"
    JETBRAINS = "jetbrains"


OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table (for people) or json (for scripts).")
]
WaitOption = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it is done.")]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds --wait waits before giving up (exit 6).")
]


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run a command's coroutine; a :class:`ClientError` is one red line and its exit code."""
    try:
        asyncio.run(coro)
    except ClientError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(int(exc.exit_code)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def client() -> GraphQLClient:
    return GraphQLClient(_config.load())


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def lower(value: object) -> str:
    return str(value or "").lower()


async def devbox_or_fail(gql: GraphQLClient, name: str) -> JSON:
    found: JSON | None = (await gql.execute(docs.DEVBOX, {"name": name}))["devbox"]
    if found is None:
        raise NotFound(f"no devbox named {name!r}")
    return found


async def all_pages(gql: GraphQLClient, document: str, field: str, variables: JSON) -> list[JSON]:
    items: list[JSON] = []
    after: str | None = None
    while True:
        data = (await gql.execute(document, {**variables, "after": after}))[field]
        items += [edge["node"] for edge in data["edges"]]
        if not data["pageInfo"]["hasNextPage"]:
            return items
        after = data["pageInfo"]["endCursor"]


def ssh_endpoint(devbox: JSON) -> str:
    ssh = devbox.get("ssh") or {}
    if ssh.get("host") and ssh.get("port"):
        return f"{ssh.get('user') or 'root'}@{ssh['host']}:{ssh['port']}"
    return "tunnel" if devbox.get("phase") == "RUNNING" else ""


def devbox_table(devboxes: list[JSON]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "PHASE", "STATE", "RUNTIME", "SSH", "STATUS"):
        table.add_column(column)
    for devbox in sorted(devboxes, key=lambda d: str(d["name"])):
        runtime = devbox.get("runtime") or {}
        table.add_row(
            devbox["name"],
            lower(devbox.get("phase")),
            lower(devbox.get("state")),
            runtime.get("name") or "",
            ssh_endpoint(devbox),
            describe(devbox).partition(" · ")[2],
        )
    return table


# ---------------------------------------------------------------------- login


@app.command()
def login(
    server: Annotated[str, typer.Option(help="API server URL, e.g. https://devbox.example.com")],
    token: Annotated[
        str | None, typer.Option(help="API token (default: prompt, or $DEVBOX_TOKEN).")
    ] = None,
) -> None:
    """Check a server URL and API token, then store them (mode 0600)."""
    token = token or os.environ.get("DEVBOX_TOKEN") or typer.prompt("API token", hide_input=True)

    async def main() -> None:
        config = _config.ClientConfig(server=_config.normalize_server(server), token=token)
        async with GraphQLClient(config) as gql:
            viewer = (await gql.execute(docs.VIEWER))["viewer"]
        path = _config.save(config)
        err.print(
            f"Logged in to {config.server} as [bold]{viewer['user']['name']}[/bold] "
            f"(namespace {viewer['namespace']}, {lower(viewer['role'])}); saved to {path}"
        )

    run(main())


# ---------------------------------------------------------------------- reads


@app.command()
def runtimes(
    output: OutputOption = Output.TABLE,
    search: Annotated[str | None, typer.Option(help="Text in name, title, description.")] = None,
) -> None:
    """List the runtimes you can create devboxes from."""

    async def main() -> None:
        async with client() as gql:
            items = await all_pages(
                gql, docs.RUNTIMES, "runtimes", {"filter": {"search": search} if search else None}
            )
        if output is Output.JSON:
            print_json(items)
            return
        table = Table(box=None, header_style="bold")
        for column in ("NAME", "TITLE", "VERSION", "CLASS", "VISIBILITY", "IMAGE"):
            table.add_column(column)
        for item in items:
            table.add_row(
                item["name"],
                item["title"],
                item["version"],
                lower(item["class"]),
                "official" if item.get("official") else lower(item["visibility"]),
                item["image"],
            )
        out.print(table)

    run(main())


@app.command("ls")
def list_devboxes(
    output: OutputOption = Output.TABLE,
    phase: Annotated[str | None, typer.Option(help="Only this phase, e.g. running.")] = None,
) -> None:
    """List your devboxes."""

    async def main() -> None:
        filter_ = {"phase": phase.upper()} if phase else None
        async with client() as gql:
            items = await all_pages(gql, docs.DEVBOXES, "devboxes", {"filter": filter_})
        if output is Output.JSON:
            print_json(items)
        else:
            out.print(devbox_table(items))

    run(main())


@app.command()
def ports(name: str, output: OutputOption = Output.TABLE) -> None:
    """Show a devbox's ports and their public URLs."""

    async def main() -> None:
        async with client() as gql:
            devbox = await devbox_or_fail(gql, name)
        items = devbox.get("ports") or []
        if output is Output.JSON:
            print_json(items)
            return
        table = Table(box=None, header_style="bold")
        for column in ("NAME", "PORT", "PROTOCOL", "PUBLIC", "URL"):
            table.add_column(column)
        for port in items:
            table.add_row(
                port["name"],
                str(port["port"]),
                port["protocol"],
                "yes" if port["public"] else "no",
                port.get("url") or "",
            )
        out.print(table)

    run(main())


@app.command()
def events(name: str, output: OutputOption = Output.TABLE) -> None:
    """Show recent Kubernetes events about a devbox (newest first)."""

    async def main() -> None:
        async with client() as gql:
            found = (await gql.execute(docs.EVENTS, {"name": name}))["devbox"]
        if found is None:
            raise NotFound(f"no devbox named {name!r}")
        items = [edge["node"] for edge in found["events"]["edges"]]
        if output is Output.JSON:
            print_json(items)
            return
        table = Table(box=None, header_style="bold")
        for column in ("LAST SEEN", "TYPE", "REASON", "COUNT", "MESSAGE"):
            table.add_column(column)
        for event in items:
            table.add_row(
                str(event.get("lastTime") or ""),
                event["type"],
                event["reason"],
                str(event["count"]),
                event["message"],
            )
        out.print(table)

    run(main())


# ---------------------------------------------------------------------- lifecycle


async def resolve_runtime(gql: GraphQLClient, wanted: str) -> str:
    """A runtime's id from its name (the namespace's own first), or ``wanted`` as an id."""
    items = await all_pages(gql, docs.RUNTIMES, "runtimes", {"filter": {"search": wanted}})
    named = [item for item in items if item["name"] == wanted]
    if named:
        named.sort(key=lambda item: bool(item.get("official")))
        return str(named[0]["id"])
    if any(item["id"] == wanted for item in items) or len(wanted) > 40:
        return wanted
    raise NotFound(f"no runtime named {wanted!r} (see devboxctl runtimes)")


def parse_port(text: str) -> JSON:
    """``8080``, ``8080:web`` or ``8080:web:public``."""
    number, _, rest = text.partition(":")
    port_name, _, flag = rest.partition(":")
    if not number.isdigit() or flag not in ("", "public"):
        raise typer.BadParameter(f"{text!r}: use PORT[:NAME][:public]", param_hint="--port")
    port: JSON = {"port": int(number), "public": flag == "public"}
    if port_name:
        port["name"] = port_name
    return port


def emit_devbox(devbox: JSON | None, output: Output, verb: str) -> None:
    if output is Output.JSON:
        print_json(devbox)
    elif devbox is not None:
        err.print(f"{devbox['name']} {verb}: {describe(devbox)}")


async def mutate_and_maybe_wait(
    name: str,
    document: str,
    field: str,
    variables: JSON,
    goal: PhaseGoal | GoneGoal | None,
    within: float,
    output: Output,
) -> JSON | None:
    async with client() as gql:
        payload: JSON = {}

        async def act() -> None:
            payload.update(check_payload((await gql.execute(document, variables))[field]))

        if goal is None:
            await act()
            result: JSON | None = payload.get("devbox")
            return result
        progress = err if output is Output.TABLE else None
        return await act_and_wait(gql, name, act, goal, within=within, console=progress)


@app.command()
def create(
    name: str,
    runtime: Annotated[str, typer.Option("--runtime", "-r", help="Runtime name (or id).")],
    cpu: Annotated[str | None, typer.Option(help="CPU limit, e.g. 2 or 500m.")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit, e.g. 4Gi.")] = None,
    storage: Annotated[str | None, typer.Option(help="Storage limit, e.g. 20Gi.")] = None,
    port: Annotated[
        list[str] | None, typer.Option(help="PORT[:NAME][:public]; repeat for more.")
    ] = None,
    env: Annotated[list[str] | None, typer.Option(help="NAME=VALUE; repeat for more.")] = None,
    tunnel: Annotated[bool, typer.Option(help="SSH through the API server's tunnel.")] = False,
    idle_timeout: Annotated[
        int | None, typer.Option(help="Stop after this many seconds without SSH activity.")
    ] = None,
    stopped: Annotated[bool, typer.Option(help="Create it stopped.")] = False,
    wait: WaitOption = False,
    timeout: TimeoutOption = 600.0,
    output: OutputOption = Output.TABLE,
) -> None:
    """Create a devbox from a runtime (and start it, unless --stopped)."""
    variables: JSON = {"name": name, "networkMode": "TUNNEL" if tunnel else "NODE_PORT"}
    resources = {k: v for k, v in {"cpu": cpu, "memory": memory, "storage": storage}.items() if v}
    if resources:
        variables["resources"] = resources
    if port:
        variables["ports"] = [parse_port(p) for p in port]
    if env:
        pairs = [item.partition("=") for item in env]
        if any(not sep or not key for key, sep, _ in pairs):
            raise typer.BadParameter("use NAME=VALUE", param_hint="--env")
        variables["env"] = [{"name": key, "value": value} for key, _, value in pairs]
    if idle_timeout is not None:
        variables["autoStop"] = {"idleTimeoutSeconds": idle_timeout}
    if stopped:
        variables["state"] = "STOPPED"

    async def main() -> None:
        async with client() as gql:
            variables["runtime"] = await resolve_runtime(gql, runtime)
        goal = PhaseGoal("STOPPED" if stopped else "RUNNING") if wait else None
        devbox = await mutate_and_maybe_wait(
            name, docs.CREATE, "devboxCreate", {"input": variables}, goal, timeout, output
        )
        emit_devbox(devbox, output, "created")

    run(main())


@app.command()
def start(
    name: str,
    abandon_changes: Annotated[
        bool, typer.Option(help="Start from the last commit even if unsaved changes are lost.")
    ] = False,
    wait: WaitOption = False,
    timeout: TimeoutOption = 600.0,
    output: OutputOption = Output.TABLE,
) -> None:
    """Start a stopped devbox from its last commit."""
    variables = {"input": {"name": name, "abandonChanges": abandon_changes}}
    goal = PhaseGoal("RUNNING") if wait else None
    run(_lifecycle(name, docs.START, "devboxStart", variables, goal, timeout, output, "starting"))


@app.command()
def stop(
    name: str,
    wait: WaitOption = False,
    timeout: TimeoutOption = 3600.0,
    output: OutputOption = Output.TABLE,
) -> None:
    """Stop a devbox: its changes are committed to an image first."""
    goal = PhaseGoal("STOPPED") if wait else None
    variables = {"input": {"name": name}}
    run(_lifecycle(name, docs.STOP, "devboxStop", variables, goal, timeout, output, "stopping"))


@app.command()
def restart(
    name: str,
    wait: WaitOption = False,
    timeout: TimeoutOption = 3600.0,
    output: OutputOption = Output.TABLE,
) -> None:
    """Commit a running devbox and start it again from the commit."""
    goal = PhaseGoal("RUNNING", via_other=True) if wait else None
    variables = {"input": {"name": name}}
    run(
        _lifecycle(
            name, docs.RESTART, "devboxRestart", variables, goal, timeout, output, "restarting"
        )
    )


@app.command("rm")
def remove(
    name: str,
    abandon_changes: Annotated[
        bool, typer.Option(help="Do not wait for a commit in flight (its changes are lost).")
    ] = False,
    wait: WaitOption = False,
    timeout: TimeoutOption = 600.0,
    output: OutputOption = Output.TABLE,
) -> None:
    """Delete a devbox (and forget its SSH entry)."""
    variables = {"input": {"name": name, "abandonChanges": abandon_changes}}
    goal = GoneGoal() if wait else None

    async def main() -> None:
        async with client() as gql:
            devbox = await devbox_or_fail(gql, name)
        await mutate_and_maybe_wait(
            name, docs.DELETE, "devboxDelete", variables, goal, timeout, output
        )
        alias = (devbox.get("ssh") or {}).get("hostAlias")
        if alias:
            _ssh.remove_entry(alias)
        if output is Output.JSON:
            print_json({"name": name, "deleted": True if wait else "requested"})
        else:
            err.print(f"{name} {'deleted' if wait else 'is being deleted'}")

    run(main())


async def _lifecycle(
    name: str,
    document: str,
    field: str,
    variables: JSON,
    goal: PhaseGoal | None,
    within: float,
    output: Output,
    verb: str,
) -> None:
    devbox = await mutate_and_maybe_wait(name, document, field, variables, goal, within, output)
    emit_devbox(devbox, output, "is " + lower(devbox.get("phase")) if goal and devbox else verb)


@app.command()
def release(
    name: str,
    version: str,
    notes: Annotated[str, typer.Option(help="Release notes.")] = "",
    output: OutputOption = Output.TABLE,
) -> None:
    """Release a version of a devbox's current image (immutable, with notes)."""

    async def main() -> None:
        async with client() as gql:
            variables = {"input": {"name": name, "version": version, "notes": notes}}
            payload = check_payload((await gql.execute(docs.RELEASE, variables))["devboxRelease"])
        found = payload.get("release") or {}
        if output is Output.JSON:
            print_json(found)
        else:
            err.print(f"{name} {version}: {lower(found.get('phase'))}")

    run(main())


# ---------------------------------------------------------------------- watch


@app.command()
def watch(
    name: Annotated[str | None, typer.Argument(help="One devbox (default: all of yours).")] = None,
    until: Annotated[
        str | None, typer.Option(help="Exit 0 once the devbox reaches this phase.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Give up after this many seconds (exit 6).")
    ] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Follow devboxes live (fed by the devboxChanged / devboxesChanged subscription)."""
    if until and not name:
        raise typer.BadParameter("--until needs a devbox name", param_hint="--until")

    async def main() -> None:
        async with client() as gql:
            document = docs.CHANGED if name else docs.ALL_CHANGED
            variables = {"name": name} if name else {}
            async with gql.subscription(document, variables) as stream:
                if name:
                    current = [await devbox_or_fail(gql, name)]
                else:
                    current = await all_pages(gql, docs.DEVBOXES, "devboxes", {})
                await _follow(stream, current, until, output)

    async def bounded() -> None:
        if timeout is None:
            await main()
            return
        try:
            await asyncio.wait_for(main(), timeout)
        except TimeoutError:
            raise Timeout(f"watch ended after {timeout:g}s") from None

    run(bounded())


async def _follow(stream: Any, current: list[JSON], until: str | None, output: Output) -> None:
    wanted = until.upper() if until else None
    devboxes = {d["name"]: d for d in current}

    def done() -> bool:
        return wanted is not None and any(d.get("phase") == wanted for d in devboxes.values())

    if output is Output.JSON:
        for devbox in current:
            sys.stdout.write(json.dumps({"type": "CURRENT", "devbox": devbox}) + "\n")
        sys.stdout.flush()
        if done():
            return
        async for data in stream:
            event = data.get("devboxChanged") or data.get("devboxesChanged") or {}
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
            _apply(devboxes, event)
            if done():
                return
        return
    with Live(devbox_table(list(devboxes.values())), console=out, auto_refresh=False) as live:
        if done():
            return
        async for data in stream:
            event = data.get("devboxChanged") or data.get("devboxesChanged") or {}
            _apply(devboxes, event)
            live.update(devbox_table(list(devboxes.values())), refresh=True)
            if done():
                return


def _apply(devboxes: dict[str, JSON], event: JSON) -> None:
    devbox = event.get("devbox") or {}
    if not devbox.get("name"):
        return
    if event.get("type") == "DELETED":
        devboxes.pop(devbox["name"], None)
    else:
        devboxes[devbox["name"]] = devbox


# ---------------------------------------------------------------------- SSH


async def _entry(gql: GraphQLClient, devbox: JSON, force_tunnel: bool) -> _ssh.Entry:
    ssh = devbox.get("ssh") or {}
    if devbox.get("phase") != "RUNNING":
        raise OperationFailed(
            f"{devbox['name']} is {lower(devbox.get('phase'))}: start it first "
            f"(devboxctl start {devbox['name']} --wait)"
        )
    found = (await gql.execute(docs.PRIVATE_KEY, {"name": devbox["name"]}))["devbox"]
    key = ((found or {}).get("ssh") or {}).get("privateKey")
    if not key:
        raise OperationFailed(f"no SSH key for {devbox['name']} (only its owner gets one)")
    alias = ssh.get("hostAlias") or f"devbox-{devbox['namespace']}-{devbox['name']}"
    _ssh.write_key(alias, key)
    direct = not force_tunnel and devbox.get("networkMode") == "NODE_PORT"
    return _ssh.Entry(
        alias=alias,
        name=devbox["name"],
        namespace=devbox["namespace"],
        user=ssh.get("user") or "root",
        host=ssh.get("host") if direct else None,
        port=ssh.get("port") if direct else None,
    )


@app.command("ssh-config")
def ssh_config(
    names: Annotated[
        list[str] | None, typer.Argument(help="Devboxes (default: all running ones).")
    ] = None,
    tunnel: Annotated[bool, typer.Option(help="Go through the tunnel even for NodePort.")] = False,
) -> None:
    """Write ~/.ssh/devbox/config and keys (0600) and Include it from ~/.ssh/config."""

    async def main() -> None:
        async with client() as gql:
            if names:
                chosen = [await devbox_or_fail(gql, n) for n in names]
            else:
                chosen = [
                    d
                    for d in await all_pages(gql, docs.DEVBOXES, "devboxes", {})
                    if d.get("phase") == "RUNNING"
                ]
            entries = [await _entry(gql, devbox, tunnel) for devbox in chosen]
        path = _ssh.write_entries(entries)
        added = _ssh.ensure_include()
        for entry in entries:
            how = "tunnel" if entry.tunnel else f"{entry.host}:{entry.port}"
            err.print(f"ssh {entry.alias}  ({how})")
        err.print(
            f"wrote {path}" + (f"; added '{_ssh.INCLUDE_LINE}' to ~/.ssh/config" if added else "")
        )

    run(main())


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(
    ctx: typer.Context,
    name: str,
    tunnel: Annotated[bool, typer.Option(help="Through the API server's tunnel.")] = False,
) -> None:
    """Open SSH to a devbox (directly, or through the tunnel); extra arguments go to ssh."""

    async def main() -> list[str]:
        async with client() as gql:
            devbox = await devbox_or_fail(gql, name)
            entry = await _entry(gql, devbox, tunnel)
        path = _ssh.write_entries([entry])
        return ["ssh", "-F", str(path), entry.alias, *ctx.args]

    command: list[str] = []

    async def collect() -> None:
        command.extend(await main())

    run(collect())
    binary = shutil.which("ssh")
    if binary is None:
        err.print("[red]error:[/red] OpenSSH's ssh is not installed")
        raise typer.Exit(int(ExitCode.ERROR))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, command)


@app.command("ssh-proxy")
def ssh_proxy(
    name: str,
    namespace: Annotated[
        str | None, typer.Option(help="The devbox's namespace (default: the token's).")
    ] = None,
) -> None:
    """Relay stdin/stdout to a devbox's SSH port through the tunnel (for ProxyCommand)."""

    async def main() -> None:
        config = _config.load()
        found = namespace
        if not found:
            async with GraphQLClient(config) as gql:
                found = (await gql.execute(docs.VIEWER))["viewer"]["namespace"]
        assert found is not None
        await proxy_stdio(config, found, name)

    run(main())


@app.command("open")
def open_ide(
    name: str,
    ide: Annotated[Ide, typer.Option(help="vscode or jetbrains.")] = Ide.VSCODE,
    print_only: Annotated[bool, typer.Option("--print", help="Only print the link.")] = False,
) -> None:
    """Open (or print) the VS Code / JetBrains Gateway link to a devbox."""

    async def main() -> None:
        async with client() as gql:
            devbox = await devbox_or_fail(gql, name)
        ssh = devbox.get("ssh") or {}
        alias = ssh.get("hostAlias") or f"devbox-{devbox['namespace']}-{name}"
        workdir = (devbox.get("runtime") or {}).get("workingDir") or "/"
        user = ssh.get("user") or "root"
        if ide is Ide.VSCODE:
            link = ssh.get("vscodeUri") or f"vscode://vscode-remote/ssh-remote+{alias}{workdir}"
        else:
            link = ssh.get("jetbrainsUri") or (
                "jetbrains-gateway://connect#type=ssh&deploy=false"
                f"&host={alias}&port=22&user={user}&projectPath={workdir}"
            )
        sys.stdout.write(link + "\n")
        if not print_only and not webbrowser.open(link):
            err.print("(no browser to open it with; the link is above)")
        if not ssh.get("host"):
            err.print(f"The link uses the SSH alias {alias}: run devboxctl ssh-config first.")

    run(main())
