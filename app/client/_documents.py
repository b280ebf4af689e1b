"""The GraphQL documents ``devboxctl`` sends (public API only; see ``schema.graphql``)."""

from __future__ import annotations

DEVBOX_FIELDS = """
fragment DevboxFields on Devbox {
  id name namespace owner state phase networkMode image createdAt
  conditions { type status reason message lastTransitionTime }
  runtime { id name namespace title workingDir }
  resources { cpu memory storage }
  ports { name port protocol public url }
  ssh { host port user hostAlias hostKeyFingerprint vscodeUri jetbrainsUri }
  autoStop { idleTimeoutSeconds stopAt }
  commits(first: 1) { edges { node { id mode status reason } } }
}
"""

VIEWER = "query { viewer { namespace role user { name } } }"

DEVBOX = DEVBOX_FIELDS + "query($name: String!) { devbox(name: $name) { ...DevboxFields } }"

PRIVATE_KEY = "query($name: String!) { devbox(name: $name) { name ssh { privateKey } } }"

DEVBOXES = (
    DEVBOX_FIELDS
    + """
query($after: String, $filter: DevboxFilter) {
  devboxes(first: 100, after: $after, filter: $filter) {
    edges { node { ...DevboxFields } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
)

RUNTIMES = """
query($after: String, $filter: RuntimeFilter) {
  runtimes(first: 100, after: $after, filter: $filter) {
    edges { node { id name namespace class title version image official visibility user
                   workingDir ports { name port protocol public } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

EVENTS = """
query($name: String!) { devbox(name: $name) {
  name events(first: 100) { edges { node { type reason message count firstTime lastTime } } }
} }
"""

USER_ERRORS = "userErrors { field message code }"


def mutation(name: str, input_type: str, result: str = "devbox { ...DevboxFields }") -> str:
    """``name(input: $input) { result userErrors }`` with the devbox fragment when used."""
    fragment = DEVBOX_FIELDS if "DevboxFields" in result else ""
    selection = f"{name}(input: $input) {{ {result} {USER_ERRORS} }}"
    return fragment + f"mutation($input: {input_type}!) {{ {selection} }}"


CREATE = mutation("devboxCreate", "DevboxCreateInput")
START = mutation("devboxStart", "DevboxStartInput")
STOP = mutation("devboxStop", "DevboxStopInput")
RESTART = mutation("devboxRestart", "DevboxRestartInput")
DELETE = mutation("devboxDelete", "DevboxDeleteInput", "deletedDevboxId devbox { name phase }")
RELEASE = mutation(
    "devboxRelease",
    "DevboxReleaseInput",
    "release { id name version notes phase image digest reason createdAt }",
)

CHANGED = (
    DEVBOX_FIELDS
    + "subscription($name: String!) { devboxChanged(name: $name) {"
    + " type changed devbox { ...DevboxFields } } }"
)
ALL_CHANGED = (
    DEVBOX_FIELDS + "subscription { devboxesChanged { type changed devbox { ...DevboxFields } } }"
)
