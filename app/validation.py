"""Checks of mutation input, before anything is written (pure: no IO, never raises).

Every function takes the value and the path of its input field (``["input", "ports", "1"]``)
and returns the :class:`~app.schema.errors.UserError` list for it — empty when the value is
fine.  The rules are stricter than the CRD's schema where the product needs it:

- devbox (and runtime, release) names are DNS-1035 labels: at most 63 characters, lowercase
  letters, digits and ``-``, starting with a letter (a devbox's Services are named after it);
- cpu / memory / storage are Kubernetes quantities within the configured :class:`Limits`;
- ports are 1-65535, unique by number and by name, never the runtime's SSH port (nor 22),
  named like IANA service names (at most 15 characters, at least one letter, no ``--``);
- environment variable names are C identifiers, unique, and never ``DEVBOX_*`` (the
  controller sets those);
- release versions follow ``DevboxReleaseSpec.version``'s pattern; notes, idempotency keys and
  commit ids have bounded lengths.

Whatever passes here is also accepted by the CRD's schema (the API never learns of bad input
from a 422), and arbitrary input never makes a function raise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from app.quantity import QuantityError, parse_quantity
from app.resources._common import COMMIT_ID, QUANTITY
from app.resources._release import RELEASE_VERSION
from app.schema.errors import UserError, UserErrorCode, user_error
from app.settings import Settings

Path = list[str]

NAME_MAX = 63
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
PORT_NAME_MAX = 15
IANA_SERVICE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_NAME_MAX = 256
ENV_VALUE_MAX = 32768
RESERVED_ENV_PREFIX = "DEVBOX_"
MAX_PORTS = 20
MAX_ENV = 100
SSH_PORT = 22
"""Always reserved (the SSH Service's port), besides the runtime's own SSH port."""
VERSION_MAX = 128
NOTES_MAX = 4096
IDEMPOTENCY_KEY_MAX = 255
"""Longest idempotency key (the length of ``IdempotencyKey.key`` in :mod:`app.db.models`)."""
COMMIT_ID_MAX = 63
IDLE_TIMEOUT_MAX = 30 * 24 * 3600
"""Longest idle timeout (30 days)."""
QUANTITY_MAX = 64

_QUANTITY_RE = re.compile(QUANTITY)
_VERSION_RE = re.compile(RELEASE_VERSION)
_COMMIT_ID_RE = re.compile(COMMIT_ID)


@dataclass(frozen=True)
class Limits:
    """Smallest and largest devbox size, from the settings."""

    min_cpu: Decimal
    max_cpu: Decimal
    min_memory: Decimal
    max_memory: Decimal
    min_storage: Decimal
    max_storage: Decimal

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            min_cpu=parse_quantity(settings.min_cpu),
            max_cpu=parse_quantity(settings.max_cpu),
            min_memory=parse_quantity(settings.min_memory),
            max_memory=parse_quantity(settings.max_memory),
            min_storage=parse_quantity(settings.min_storage),
            max_storage=parse_quantity(settings.max_storage),
        )

    def bounds(self, resource: str) -> tuple[Decimal, Decimal]:
        """``(minimum, maximum)`` of ``cpu``, ``memory`` or ``storage``."""
        return {
            "cpu": (self.min_cpu, self.max_cpu),
            "memory": (self.min_memory, self.max_memory),
            "storage": (self.min_storage, self.max_storage),
        }[resource]


@dataclass(frozen=True)
class PortInput:
    """A port as the user sent it."""

    name: str | None
    port: int
    protocol: str = "TCP"
    public: bool = False


@dataclass(frozen=True)
class EnvInput:
    """An environment variable as the user sent it."""

    name: str
    value: str


def _err(path: Path, message: str, code: UserErrorCode) -> UserError:
    return user_error(list(path), message, code)


def _shown(value: str, limit: int = 40) -> str:
    """``value`` quoted for a message, cut short (input may be huge)."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


# ---------------------------------------------------------------------- names


def name_errors(value: str, path: Path, *, what: str = "name") -> list[UserError]:
    """A DNS-1035 label: lowercase letters, digits, ``-``; starts with a letter; ≤ 63."""
    if not value:
        return [_err(path, f"{what} is required", UserErrorCode.REQUIRED)]
    if len(value) > NAME_MAX:
        return [_err(path, f"{what} must be at most {NAME_MAX} characters", UserErrorCode.TOO_LONG)]
    if not DNS1035_LABEL.fullmatch(value):
        return [
            _err(
                path,
                f"{what} {_shown(value)} must consist of lowercase letters, digits and '-', "
                "start with a letter and end with a letter or digit",
                UserErrorCode.INVALID,
            )
        ]
    return []


# ---------------------------------------------------------------------- resources


def quantity_errors(
    value: str, path: Path, *, resource: str, limits: Limits, binary_hint: bool = False
) -> list[UserError]:
    """A quantity (``500m``, ``2``, ``4Gi``) between the limits for ``resource``."""
    if not value:
        return [_err(path, f"{resource} is required", UserErrorCode.REQUIRED)]
    if len(value) > QUANTITY_MAX or not _QUANTITY_RE.fullmatch(value):
        example = "4Gi" if binary_hint else "500m or 2"
        return [
            _err(
                path,
                f"{resource} {_shown(value)} is not a quantity (e.g. {example})",
                UserErrorCode.INVALID,
            )
        ]
    low, high = limits.bounds(resource)
    try:
        amount: Decimal | None = parse_quantity(value)
    except QuantityError:
        return [_err(path, f"{resource} {_shown(value)} is not a quantity", UserErrorCode.INVALID)]
    except ArithmeticError:  # an exponent beyond any limit (1e999999999)
        amount = None
    if amount is None or not low <= amount <= high:
        return [
            _err(
                path,
                f"{resource} must be between {_amount(low, resource)} and "
                f"{_amount(high, resource)}",
                UserErrorCode.OUT_OF_RANGE,
            )
        ]
    return []


def _amount(value: Decimal, resource: str) -> str:
    if resource == "cpu":
        return f"{value.normalize():f} CPU"
    for suffix, factor in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value >= factor and value % factor == 0:
            return f"{value // factor}{suffix}"
    return f"{value.normalize():f} bytes"


def resources_errors(
    cpu: str | None, memory: str | None, storage: str | None, path: Path, limits: Limits
) -> list[UserError]:
    """Each given resource is a quantity within its limits (``None``: not being set)."""
    errors: list[UserError] = []
    for resource, value in (("cpu", cpu), ("memory", memory), ("storage", storage)):
        if value is not None:
            errors += quantity_errors(
                value,
                [*path, resource],
                resource=resource,
                limits=limits,
                binary_hint=resource != "cpu",
            )
    return errors


# ---------------------------------------------------------------------- ports


def port_name_errors(value: str, path: Path) -> list[UserError]:
    """An IANA service name: ≤ 15, lowercase letters, digits, ``-``, a letter, no ``--``."""
    if not value:
        return [_err(path, "port name is required", UserErrorCode.REQUIRED)]
    if len(value) > PORT_NAME_MAX:
        return [
            _err(
                path,
                f"port name must be at most {PORT_NAME_MAX} characters",
                UserErrorCode.TOO_LONG,
            )
        ]
    if (
        not IANA_SERVICE_NAME.fullmatch(value)
        or "--" in value
        or not any("a" <= c <= "z" for c in value)
    ):
        return [
            _err(
                path,
                f"port name {_shown(value)} must consist of lowercase letters, digits and "
                "single '-' between them, with at least one letter",
                UserErrorCode.INVALID,
            )
        ]
    return []


def default_port_name(port: int) -> str:
    """The name a port gets when the user gives none."""
    return f"port-{port}"


def ports_errors(ports: Sequence[PortInput], path: Path, *, ssh_port: int) -> list[UserError]:
    """Ports within 1-65535, unique by number and name, never an SSH port."""
    errors: list[UserError] = []
    if len(ports) > MAX_PORTS:
        return [_err(path, f"at most {MAX_PORTS} ports", UserErrorCode.TOO_LONG)]
    reserved = {SSH_PORT, ssh_port}
    numbers: set[int] = set()
    names: set[str] = set()
    for index, item in enumerate(ports):
        here = [*path, str(index)]
        if not 1 <= item.port <= 65535:
            errors.append(
                _err(
                    [*here, "port"], "port must be between 1 and 65535", UserErrorCode.OUT_OF_RANGE
                )
            )
        elif item.port in reserved:
            errors.append(
                _err(
                    [*here, "port"],
                    f"port {item.port} is reserved for SSH",
                    UserErrorCode.RESERVED,
                )
            )
        elif item.port in numbers:
            errors.append(
                _err([*here, "port"], f"port {item.port} is listed twice", UserErrorCode.DUPLICATE)
            )
        numbers.add(item.port)
        name = item.name if item.name is not None else default_port_name(item.port)
        name_problems = port_name_errors(name, [*here, "name"])
        if name_problems:
            errors += name_problems
        elif name in names:
            errors.append(
                _err([*here, "name"], f"port name {name!r} is used twice", UserErrorCode.DUPLICATE)
            )
        names.add(name)
    return errors


# ---------------------------------------------------------------------- env


def env_errors(env: Sequence[EnvInput], path: Path) -> list[UserError]:
    """C-identifier names, unique, not ``DEVBOX_*``; values of bounded length."""
    if len(env) > MAX_ENV:
        return [_err(path, f"at most {MAX_ENV} environment variables", UserErrorCode.TOO_LONG)]
    errors: list[UserError] = []
    seen: set[str] = set()
    for index, var in enumerate(env):
        here = [*path, str(index)]
        name = var.name
        if not name:
            errors.append(_err([*here, "name"], "name is required", UserErrorCode.REQUIRED))
        elif len(name) > ENV_NAME_MAX:
            errors.append(
                _err(
                    [*here, "name"],
                    f"name must be at most {ENV_NAME_MAX} characters",
                    UserErrorCode.TOO_LONG,
                )
            )
        elif not ENV_NAME.fullmatch(name):
            errors.append(
                _err(
                    [*here, "name"],
                    f"name {_shown(name)} must be a C identifier (letters, digits and '_', "
                    "not starting with a digit)",
                    UserErrorCode.INVALID,
                )
            )
        elif name.upper().startswith(RESERVED_ENV_PREFIX):
            errors.append(
                _err(
                    [*here, "name"],
                    f"names starting with {RESERVED_ENV_PREFIX} are set by Devbox",
                    UserErrorCode.RESERVED,
                )
            )
        elif name in seen:
            errors.append(_err([*here, "name"], f"{name} is listed twice", UserErrorCode.DUPLICATE))
        seen.add(name)
        if len(var.value) > ENV_VALUE_MAX:
            errors.append(
                _err(
                    [*here, "value"],
                    f"value must be at most {ENV_VALUE_MAX} characters",
                    UserErrorCode.TOO_LONG,
                )
            )
    return errors


# ---------------------------------------------------------------------- the rest


def idle_timeout_errors(seconds: int, path: Path) -> list[UserError]:
    """0 (never) up to :data:`IDLE_TIMEOUT_MAX`."""
    if not 0 <= seconds <= IDLE_TIMEOUT_MAX:
        return [
            _err(
                path,
                f"idle timeout must be between 0 (never) and {IDLE_TIMEOUT_MAX} seconds",
                UserErrorCode.OUT_OF_RANGE,
            )
        ]
    return []


def version_errors(value: str, path: Path) -> list[UserError]:
    """A release version such as ``v1``, ``1.2`` or ``v1.2.3-rc.1``."""
    if not value:
        return [_err(path, "version is required", UserErrorCode.REQUIRED)]
    if len(value) > VERSION_MAX:
        return [
            _err(
                path,
                f"version must be at most {VERSION_MAX} characters",
                UserErrorCode.TOO_LONG,
            )
        ]
    if not _VERSION_RE.fullmatch(value):
        return [
            _err(
                path,
                f"version {_shown(value)} must look like v1, 1.2 or v1.2.3-rc.1",
                UserErrorCode.INVALID,
            )
        ]
    return []


def text_errors(value: str, path: Path, *, what: str, limit: int) -> list[UserError]:
    """Free text of at most ``limit`` characters."""
    if len(value) > limit:
        return [_err(path, f"{what} must be at most {limit} characters", UserErrorCode.TOO_LONG)]
    return []


def notes_errors(value: str, path: Path) -> list[UserError]:
    return text_errors(value, path, what="notes", limit=NOTES_MAX)


def commit_id_errors(value: str, path: Path) -> list[UserError]:
    """A commit id (as in ``status.commits``)."""
    if not value:
        return [_err(path, "commit id is required", UserErrorCode.REQUIRED)]
    if len(value) > COMMIT_ID_MAX or not _COMMIT_ID_RE.fullmatch(value):
        return [_err(path, f"{_shown(value)} is not a commit id", UserErrorCode.INVALID)]
    return []


def idempotency_key_errors(value: str | None, path: Path) -> list[UserError]:
    """1 to :data:`IDEMPOTENCY_KEY_MAX` characters, when given."""
    if value is None:
        return []
    if not value:
        return [_err(path, "idempotency key must not be empty", UserErrorCode.INVALID)]
    if len(value) > IDEMPOTENCY_KEY_MAX:
        return [
            _err(
                path,
                f"idempotency key must be at most {IDEMPOTENCY_KEY_MAX} characters",
                UserErrorCode.TOO_LONG,
            )
        ]
    return []


def collect(*groups: Iterable[UserError]) -> list[UserError]:
    """All errors of several checks, in order."""
    return [error for group in groups for error in group]
