"""Administration shared by ``devboxctl serve`` and ``devboxctl admin``: users and tokens.

:func:`bootstrap_admin` makes the first admin (``settings.admin_user`` in
``settings.admin_namespace``) when the database has no admin, and returns its token — the
only time that token is shown.  :func:`create_user` and :func:`create_token` back the
``devboxctl admin user create`` / ``admin token create`` commands.  Each writes an audit row
(actor ``system``), as every change is audited.

The command line reaches Kubernetes to create a new user's namespace: the configured cluster
(``--cluster=kube``), or the simulated one of a running ``devboxctl serve`` (through the
kubeconfig it writes into the data folder).  When no cluster answers, the namespace is
created by the next ``devboxctl serve`` start (:func:`ensure_user_namespaces`).

Errors::

    AdminError      a command-line request that cannot be done (bad name…)
"""

from __future__ import annotations

import re
import uuid

from rich.console import Console
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import users
from app.db.audit import append_audit_event
from app.db.engine import create_engine, session_factory
from app.db.migrate import upgrade_to_head
from app.db.models import Outcome, Role, User
from app.kube import KubeConfigError, connect
from app.kubeclient import NAMESPACES, AlreadyExists, Kube, KubeError
from app.settings import ClusterMode, Settings

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
"""A DNS-1123 label (user names and namespaces), at most 63 characters."""

SYSTEM_ACTOR = "system"
"""The actor of audit rows written by the command line and the first start."""


async def ensure_namespace(kube: Kube, namespace: str) -> bool:
    """Create ``namespace`` in Kubernetes unless it exists; True when this call created it."""
    try:
        await kube.create(
            NAMESPACES,
            None,
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": namespace,
                    "labels": {"app.kubernetes.io/managed-by": "devbox"},
                },
            },
        )
    except AlreadyExists:
        return False
    return True


async def _audit(session: AsyncSession, action: str, kind: str, name: str, namespace: str) -> None:
    await append_audit_event(
        session,
        actor_user=SYSTEM_ACTOR,
        namespace=namespace,
        action=action,
        target_kind=kind,
        target_name=name,
        request_id=str(uuid.uuid4()),
        outcome=Outcome.SUCCESS,
        user_agent="devboxctl",
    )


async def create_user(
    sessionmaker: async_sessionmaker[AsyncSession],
    kube: Kube | None,
    *,
    name: str,
    namespace: str,
    role: Role = Role.USER,
) -> str:
    """Create a user (and its namespace when ``kube`` is given); its first token (clear)."""
    if kube is not None:
        await ensure_namespace(kube, namespace)
    async with sessionmaker() as session:
        user = await users.create_user(session, name=name, namespace=namespace, role=role)
        _, token = await users.create_token(session, user, name="first")
        await _audit(session, "userCreate", "User", name, namespace)
        await session.commit()
    return token


async def create_token(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    user_name: str,
    name: str = "cli",
    expires_in_days: int | None = None,
) -> str:
    """A new token of user ``user_name`` (clear); :class:`~app.db.users.NoSuchUser` if none."""
    async with sessionmaker() as session:
        user = await users.get_user(session, user_name)
        _, token = await users.create_token(
            session, user, name=name, expires_in_days=expires_in_days
        )
        await _audit(session, "apiTokenCreate", "ApiToken", name, user.namespace)
        await session.commit()
    return token


async def bootstrap_admin(
    sessionmaker: async_sessionmaker[AsyncSession],
    kube: Kube | None,
    *,
    name: str,
    namespace: str,
) -> str | None:
    """The first admin's token if there was no admin (it is made now), else None."""
    async with sessionmaker() as session:
        if await users.has_admin(session):
            return None
    return await create_user(sessionmaker, kube, name=name, namespace=namespace, role=Role.ADMIN)


class AdminError(Exception):
    """A command-line administration request that cannot be done; the message says why."""


async def ensure_user_namespaces(
    sessionmaker: async_sessionmaker[AsyncSession], kube: Kube
) -> None:
    """Create the namespace of every user that lacks one (at server start)."""
    async with sessionmaker() as session:
        namespaces = set((await session.scalars(select(User.namespace))).all())
    for namespace in sorted(namespaces):
        await ensure_namespace(kube, namespace)


async def _cluster(settings: Settings) -> Kube | None:
    """A client for the cluster the command line can reach, or None."""
    try:
        if settings.cluster is ClusterMode.KUBE:
            return Kube(await connect(kubeconfig=settings.kubeconfig))
        kubeconfig = settings.data_dir / "kubeconfig"
        if kubeconfig.is_file():
            return Kube(await connect(kubeconfig=kubeconfig), timeout=5)
    except KubeConfigError:
        return None
    return None


async def create_user_from_cli(
    settings: Settings, *, name: str, namespace: str, role: Role, log: Console
) -> str:
    """``devboxctl admin user create``: the new user's first token."""
    for what, value in (("user name", name), ("namespace", namespace)):
        if not DNS_LABEL.fullmatch(value):
            raise AdminError(
                f"{what} {value!r}: use at most 63 lowercase letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
    url = settings.effective_database_url
    await upgrade_to_head(url)
    engine = create_engine(url)
    kube = await _cluster(settings)
    try:
        if kube is not None:
            try:
                await ensure_namespace(kube, namespace)
            except KubeError as exc:
                log.print(f"note: namespace {namespace} not created now ({exc.message[:200]})")
                kube = None
        if kube is None:
            log.print(
                f"note: namespace {namespace} will be created by the next `devboxctl serve` start"
            )
        return await create_user(
            session_factory(engine), None, name=name, namespace=namespace, role=role
        )
    finally:
        await engine.dispose()
        if kube is not None:
            await kube.api.close()


async def create_token_from_cli(
    settings: Settings, *, user_name: str, name: str, expires_in_days: int | None
) -> str:
    """``devboxctl admin token create``: a new token of ``user_name``."""
    url = settings.effective_database_url
    await upgrade_to_head(url)
    engine = create_engine(url)
    try:
        return await create_token(
            session_factory(engine),
            user_name=user_name,
            name=name,
            expires_in_days=expires_in_days,
        )
    finally:
        await engine.dispose()
