"""Noticing that a devbox's SSH keys were regenerated (pure: edits a status in memory).

Keys are generated once, with the Secret.  If the Secret disappears (deleted by hand, lost with
a namespace restore), the controller must recreate it so the devbox stays reachable, but the
owner's old private key then no longer works: that must never happen silently.

Level-based: ``status.ssh.userKeyFingerprint`` records the fingerprint of the user key the
devbox was last seen with.  When the Secret's key differs from the recorded one, the
``SSHKeysRegenerated`` condition says so (and the reconciler emits a Warning Event once, when
the condition is written); the recorded fingerprint then follows the new key.  A devbox whose
status never recorded a fingerprint (no keys issued yet) gets no condition.
"""

from __future__ import annotations

from app.controller import _children as children
from app.controller import _status as st
from app.kubeclient import JSON
from app.resources import Condition, ConditionStatus, DevboxStatus

SSH_KEYS_REGENERATED = "SSHKeysRegenerated"
"""Condition: the devbox's SSH keys were regenerated; the old private key no longer works."""
REASON = "SecretRecreated"


def user_key_fingerprint(secret: JSON | None) -> str | None:
    """The fingerprint of the user's public key in the devbox's Secret, if any."""
    public = children.secret_value(secret, "authorized_keys") if secret else None
    return children.fingerprint(public) if public and public.strip() else None


def note_regeneration(
    status: DevboxStatus, secret: JSON | None, secret_name: str, generation: int | None
) -> None:
    """Set the ``SSHKeysRegenerated`` condition when ``secret`` holds a user key other than
    the one ``status`` says was issued.  Call before the status's SSH endpoint is refreshed."""
    current = user_key_fingerprint(secret)
    issued = status.ssh.user_key_fingerprint if status.ssh else None
    if current is None or issued is None or current == issued:
        return
    message = (
        f"the SSH keys were regenerated because their Secret {secret_name} was missing: the old "
        f"private key ({issued}) no longer works; fetch the new one ({current}) from the devbox "
        "API and accept the devbox's new SSH host key"
    )
    status.conditions = [c for c in status.conditions if c.type != SSH_KEYS_REGENERATED]
    st.set_condition(
        status, SSH_KEYS_REGENERATED, ConditionStatus.TRUE, REASON, message, generation
    )


def newly_regenerated(before: DevboxStatus, after: DevboxStatus) -> Condition | None:
    """The ``SSHKeysRegenerated`` condition if ``after`` sets it anew compared to ``before``."""
    new = st.condition(after, SSH_KEYS_REGENERATED)
    if new is None:
        return None
    old = st.condition(before, SSH_KEYS_REGENERATED)
    if old is not None and old.message == new.message:
        return None
    return new
