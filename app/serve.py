"""``devboxctl serve``: the whole product in one process.

Starts, in order: the database (migrations applied), the Kubernetes side (the simulated
cluster with the CRDs and official runtimes installed, or a real cluster), the controller
(unless ``run_controller`` is off: then ``devboxctl controller`` runs it), and the API
server; prints where everything is; and stops all of it cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn
import yaml
from rich.console import Console
from rich.table import Table

from app.admin import bootstrap_admin, ensure_user_namespaces
from app.api import create_app
from app.controller import runner
from app.db.migrate import upgrade_to_head
from app.httpserver import EmbeddedServer
from app.kube import connect
from app.kubeclient import Kube
from app.resources.crdgen import all_crds
from app.services import close_services, make_services
from app.settings import ClusterMode, Settings
from app.simcluster.server import SimCluster

log = logging.getLogger(__name__)


class ServeError(Exception):
    """The server could not start; the message says why and what to do."""


@dataclass
class Started:
    """Where the running parts are, as printed at start-up."""

    api_url: str
    cluster: str
    kubeconfig: Path | None
    database: str
    state_file: Path | None


def official_manifests(settings: Settings) -> list[dict[str, object]]:
    """The CRDs (generated from the models) and the official runtimes from ``k8s/runtimes``."""
    objects: list[dict[str, object]] = list(all_crds())
    runtimes = settings.manifests_dir / "runtimes"
    if runtimes.is_dir():
        for path in sorted(runtimes.glob("*.yaml")):
            for document in yaml.safe_load_all(path.read_text()):
                if document:
                    objects.append(document)
    # Namespaces first, then CRDs, then objects of the kinds they define.
    order = {"Namespace": 0, "CustomResourceDefinition": 1}
    return sorted(objects, key=lambda o: order.get(str(o.get("kind")), 2))


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


async def _start_sim(settings: Settings) -> tuple[SimCluster, Path]:
    state_file = settings.effective_sim_state_file
    cluster = SimCluster(
        host="127.0.0.1", port=settings.sim_port, nodes=settings.sim_nodes, state_file=state_file
    )
    await cluster.start()
    manifests = official_manifests(settings)
    crds = [m for m in manifests if m.get("kind") == "CustomResourceDefinition"]
    cluster.apply(
        [m for m in manifests if m.get("kind") in ("Namespace", "CustomResourceDefinition")]
    )
    await cluster.wait_for_crds_established()
    cluster.apply([m for m in manifests if m not in crds and m.get("kind") != "Namespace"])
    kubeconfig = cluster.write_kubeconfig(settings.data_dir / "kubeconfig")
    return cluster, kubeconfig


def _print_summary(started: Started, console: Console) -> None:
    table = Table(title="Devbox is running", show_header=False, title_justify="left")
    table.add_row("API server", started.api_url)
    table.add_row("GraphQL", f"{started.api_url}/graphql")
    table.add_row("Kubernetes", started.cluster)
    if started.kubeconfig:
        table.add_row(
            "kubeconfig",
            f"{started.kubeconfig}  (kubectl --kubeconfig {started.kubeconfig} get runtimes -A)",
        )
    table.add_row("Database", started.database)
    if started.state_file:
        table.add_row("Cluster state", str(started.state_file))
    console.print(table)
    console.print("Press Ctrl-C to stop.")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
    return url


async def serve(settings: Settings, console: Console | None = None) -> None:
    """Run until SIGINT/SIGTERM."""
    console = console or Console(stderr=True)
    if not _port_free(settings.host, settings.port):
        raise ServeError(
            f"{settings.host}:{settings.port} is already in use; stop what listens there or "
            "pass --port / DEVBOX_PORT"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = settings.effective_database_url
    await upgrade_to_head(database)
    log.info("database ready: %s", _redact(database))

    cluster: SimCluster | None = None
    kubeconfig: Path | None
    if settings.cluster is ClusterMode.SIM:
        cluster, kubeconfig = await _start_sim(settings)
        api = await connect(url=cluster.url)
        cluster_text = f"simulated, {cluster.url}"
    else:
        kubeconfig = settings.kubeconfig
        api = await connect(kubeconfig=kubeconfig)
        cluster_text = f"real, {api.configuration.host}"

    services = make_services(settings, Kube(api), database_url=database)
    admin_token = await bootstrap_admin(
        services.sessionmaker,
        services.kube,
        name=settings.admin_user,
        namespace=settings.admin_namespace,
    )
    await ensure_user_namespaces(services.sessionmaker, services.kube)
    if admin_token is not None:
        # stdout, once: the only time this token is shown (stderr carries the logs).
        print(
            f"Created admin user {settings.admin_user!r} "
            f"(namespace {settings.admin_namespace}); its API token, shown once:\n"
            f"{admin_token}",
            flush=True,
        )
    config = uvicorn.Config(
        create_app(services),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ws_max_size=settings.max_request_bytes,
    )
    server = EmbeddedServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    api_task = asyncio.create_task(server.serve(), name="api-server")
    tasks = [api_task]
    if settings.run_controller:
        tasks.append(asyncio.create_task(runner.run(api, settings), name="controller"))
    try:
        while not server.started:
            if api_task.done():
                api_task.result()
            await asyncio.sleep(0.02)
        _print_summary(
            Started(
                f"http://{settings.host}:{settings.port}",
                cluster_text,
                kubeconfig,
                _redact(database),
                settings.effective_sim_state_file if cluster else None,
            ),
            console,
        )
        done, _ = await asyncio.wait(
            [*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task in tasks and task.exception():
                raise ServeError(f"{task.get_name()} stopped: {task.exception()}")
    finally:
        console.print("Stopping…")
        server.should_exit = True
        for task in tasks[1:]:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        await close_services(services)
        await api.close()
        if cluster is not None:
            await cluster.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        console.print("Stopped.")
