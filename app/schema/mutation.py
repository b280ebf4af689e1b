"""How every mutation runs: authenticate, replay idempotent retries, act, audit.

CONTRACT (shared by every mutation module; implemented by the API-core work):

    result = await run_mutation(
        info,
        action="devboxCreate",            # the mutation's field name
        target_kind="Devbox",
        target_name=input.name,            # what the audit row names
        input=redacted_input_dict,         # JSON-able, secrets already removed
        idempotency_key=input.idempotency_key,
        perform=perform,                   # async (viewer) -> MutationResult
    )

``perform`` validates, writes to Kubernetes through the client layer and returns a
:class:`MutationResult`; it returns user errors instead of raising for anything the user
can fix.  ``run_mutation``:

- requires an authenticated viewer (else a top-level authentication error);
- with an idempotency key already used by this token within 24 h for the same action and
  input: returns the stored result without calling ``perform`` (and writes no second audit
  row: the action happened once); for a different input: returns ``IDEMPOTENCY_KEY_REUSED``;
  while the first request with that key is still running, a duplicate waits for its result
  (the key's row is inserted before acting, and its primary key is the lock);
- translates client-layer failures raised by ``perform`` (Kubernetes unreachable,
  conflicts…) into a result with a user error (``UNAVAILABLE``/``CONFLICT``/
  ``ALREADY_EXISTS``/``NOT_FOUND``/``INVALID``/``FORBIDDEN``) whose message names no
  internals — never half-made state (``perform`` writes at most one object, or undoes what
  it wrote);
- always appends exactly one audit row (success when there are no user errors, otherwise
  failure with the first error's code; ``INTERNAL`` when ``perform`` raised a bug, which is
  then re-raised and masked);
- stores a successful result under the idempotency key; a failed mutation changed nothing,
  so its key is released and a retry with the same key runs again (after Kubernetes comes
  back, say).

Inputs are redacted once more here (:func:`redact`: values of keys that name secrets —
token, password, privateKey… — are replaced) before they reach the audit table.

The resolver then builds its payload from the read cache, waiting for
``result.resource_version`` so the client reads its own write.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app import validation
from app.db import idempotency
from app.db.audit import append_audit_event
from app.db.errors import DatabaseError
from app.db.models import Outcome
from app.kubeclient import (
    AlreadyExists,
    Conflict,
    Forbidden,
    Invalid,
    KubeError,
    NotFound,
)
from app.schema.context import Context, Info, Viewer, require_viewer
from app.schema.errors import UserError, UserErrorCode, user_error

log = logging.getLogger(__name__)

PENDING_WAIT_SECONDS = 40.0
"""How long a duplicate request waits for the first one with the same key to finish."""

PENDING_POLL_SECONDS = 0.05

INTERNAL_ERROR_CODE = "INTERNAL"
"""Audit error code of a mutation that failed on a bug (the client sees a masked error)."""

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(r"(token|password|passwd|secret|private_?key|credential)", re.I)


@dataclass
class MutationResult:
    """What a mutation did, in a form that can be stored and replayed."""

    target_name: str
    user_errors: list[UserError] = field(default_factory=list)
    resource_version: str | None = None
    """resourceVersion of the written object, for read-your-writes; None if nothing written."""
    data: dict[str, Any] = field(default_factory=dict)
    """Extra JSON-able data the payload needs (e.g. a created token, shown once)."""

    @property
    def ok(self) -> bool:
        return not self.user_errors

    def to_json(self) -> dict[str, Any]:
        """The result as JSON (what an idempotency key replays)."""
        return {
            "targetName": self.target_name,
            "userErrors": [
                {"field": e.field, "message": e.message, "code": e.code.value}
                for e in self.user_errors
            ],
            "resourceVersion": self.resource_version,
            "data": self.data,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> MutationResult:
        return cls(
            target_name=str(value.get("targetName") or ""),
            user_errors=[
                user_error(e.get("field"), str(e.get("message")), UserErrorCode(e.get("code")))
                for e in value.get("userErrors") or []
            ],
            resource_version=value.get("resourceVersion"),
            data=dict(value.get("data") or {}),
        )


Perform = Callable[[Viewer], Awaitable[MutationResult]]


def redact(value: Any) -> Any:
    """``value`` with the values of secret-looking keys replaced by ``"[redacted]"``."""
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if _SECRET_KEY.search(str(k)) and v is not None else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def kube_user_error(exc: KubeError, target_kind: str, target_name: str) -> UserError:
    """The user error for a failed Kubernetes call; the message names no internals."""
    what = f"{target_kind} {target_name!r}"
    if isinstance(exc, AlreadyExists):
        return user_error(
            None,
            f"A {target_kind} named {target_name!r} already exists.",
            UserErrorCode.ALREADY_EXISTS,
        )
    if isinstance(exc, Conflict):
        return user_error(
            None,
            f"The {what} was changed by someone else at the same time; read it again and retry.",
            UserErrorCode.CONFLICT,
        )
    if isinstance(exc, NotFound):
        return user_error(None, f"The {what} does not exist.", UserErrorCode.NOT_FOUND)
    if isinstance(exc, Invalid):
        return user_error(
            None,
            f"Kubernetes refused the {what} as invalid; nothing was changed.",
            UserErrorCode.INVALID,
        )
    if isinstance(exc, Forbidden):
        return user_error(
            None,
            "The server is not allowed to do this in Kubernetes; nothing was changed. "
            "Ask an administrator to check its permissions.",
            UserErrorCode.FORBIDDEN,
        )
    return user_error(
        None,
        "Kubernetes could not be reached or did not answer; nothing was changed. Retry later.",
        UserErrorCode.UNAVAILABLE,
    )


def _unavailable_database() -> UserError:
    return user_error(
        None,
        "The database could not be reached; nothing was changed. Retry later.",
        UserErrorCode.UNAVAILABLE,
    )


async def _claim(
    context: Context, viewer: Viewer, key: str, action: str, hashed: str
) -> idempotency.Claim:
    """Claim the key, waiting while another request holding it is still running."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PENDING_WAIT_SECONDS
    while True:
        claim = await idempotency.claim(
            context.services.sessionmaker,
            token_id=viewer.token_id,
            key=key,
            action=action,
            hashed_request=hashed,
        )
        if claim.state is not idempotency.ClaimState.PENDING or loop.time() > deadline:
            return claim
        await asyncio.sleep(PENDING_POLL_SECONDS)


async def _audit(
    context: Context,
    viewer: Viewer,
    *,
    action: str,
    target_kind: str,
    target_name: str,
    input: dict[str, Any],
    error_code: str | None,
    store_key: str | None = None,
    response: dict[str, Any] | None = None,
) -> None:
    """Append the audit row (and store the idempotent result with it, atomically)."""
    async with context.services.sessionmaker() as session:
        await append_audit_event(
            session,
            actor_user=viewer.user_name,
            actor_token_id=viewer.token_id,
            namespace=viewer.namespace,
            action=action,
            target_kind=target_kind,
            target_name=target_name,
            request_id=context.request_id,
            client_address=context.client_address,
            user_agent=context.user_agent,
            input=input,
            outcome=Outcome.SUCCESS if error_code is None else Outcome.FAILURE,
            error_code=error_code,
        )
        if store_key is not None and response is not None:
            await idempotency.store(
                session, token_id=viewer.token_id, key=store_key, response=response
            )
        await session.commit()


async def _release(context: Context, viewer: Viewer, key: str | None) -> None:
    if key is None:
        return
    try:
        await idempotency.release(context.services.sessionmaker, token_id=viewer.token_id, key=key)
    except Exception:
        log.exception("request %s: could not release idempotency key", context.request_id)


async def run_mutation(
    info: Info,
    *,
    action: str,
    target_kind: str,
    target_name: str,
    input: Mapping[str, Any],
    idempotency_key: str | None,
    perform: Perform,
    fingerprint: Mapping[str, Any] | None = None,
) -> MutationResult:
    """Run one mutation with idempotency and audit (see the module docstring).

    ``input`` is what the audit row keeps (secrets already out); ``fingerprint`` (default:
    ``input``) is what tells a retry of an idempotency key from another request, and may hold
    digests of what the audit row must not (it is hashed again and kept only with the key, 24 h).
    """
    context = info.context
    viewer = require_viewer(info)
    audited_input = redact(dict(input))

    async def refuse(error: UserError) -> MutationResult:
        result = MutationResult(target_name=target_name, user_errors=[error])
        await _audit(
            context,
            viewer,
            action=action,
            target_kind=target_kind,
            target_name=target_name,
            input=audited_input,
            error_code=error.code.value,
        )
        return result

    claimed: str | None = None
    if idempotency_key is not None:
        bad_key = validation.idempotency_key_errors(idempotency_key, ["input", "idempotencyKey"])
        if bad_key:
            return await refuse(bad_key[0])
        hashed = idempotency.request_hash(
            action, audited_input if fingerprint is None else redact(dict(fingerprint))
        )
        try:
            claim = await _claim(context, viewer, idempotency_key, action, hashed)
        except DatabaseError:
            log.warning("request %s: database unavailable", context.request_id, exc_info=True)
            return MutationResult(target_name=target_name, user_errors=[_unavailable_database()])
        if claim.state is idempotency.ClaimState.DONE:
            return MutationResult.from_json(claim.response or {})
        if claim.state is idempotency.ClaimState.MISMATCH:
            return await refuse(
                user_error(
                    ["input", "idempotencyKey"],
                    "This idempotency key was already used for a different request; "
                    "use a new key for a new request.",
                    UserErrorCode.IDEMPOTENCY_KEY_REUSED,
                )
            )
        if claim.state is idempotency.ClaimState.PENDING:
            return await refuse(
                user_error(
                    ["input", "idempotencyKey"],
                    "A request with this idempotency key is still running; retry later.",
                    UserErrorCode.CONFLICT,
                )
            )
        claimed = idempotency_key

    try:
        result = await perform(viewer)
    except KubeError as exc:
        log.warning(
            "request %s: %s %s/%s failed in Kubernetes: %s",
            context.request_id,
            action,
            viewer.namespace,
            target_name,
            exc,
        )
        result = MutationResult(
            target_name=target_name, user_errors=[kube_user_error(exc, target_kind, target_name)]
        )
    except DatabaseError as exc:
        log.warning("request %s: %s failed: %s", context.request_id, action, exc)
        result = MutationResult(target_name=target_name, user_errors=[_unavailable_database()])
    except Exception:
        # A bug: record the failure, free the key, and let the error reach the client masked.
        try:
            await _audit(
                context,
                viewer,
                action=action,
                target_kind=target_kind,
                target_name=target_name,
                input=audited_input,
                error_code=INTERNAL_ERROR_CODE,
            )
        except Exception:
            log.exception("request %s: could not write the audit row", context.request_id)
        await _release(context, viewer, claimed)
        raise

    error_code = None if result.ok else result.user_errors[0].code.value
    try:
        await _audit(
            context,
            viewer,
            action=action,
            target_kind=target_kind,
            target_name=result.target_name or target_name,
            input=audited_input,
            error_code=error_code,
            store_key=claimed if result.ok else None,
            response=result.to_json() if result.ok else None,
        )
    except Exception:
        log.exception(
            "request %s: %s (%s) ran but its audit row could not be written",
            context.request_id,
            action,
            "success" if result.ok else error_code,
        )
        await _release(context, viewer, claimed)
        raise
    if not result.ok:
        await _release(context, viewer, claimed)
    return result
