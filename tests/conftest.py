"""Shared fixtures: the Kubernetes target, PostgreSQL, and dependency checks."""

pytest_plugins = [
    "tests.fixtures.kube",
    "tests.fixtures.postgres",
    "tests.fixtures.realcluster",
    "tests.fixtures.realstack",
    "tests.fixtures.simcluster",
    # After kube: it imports tests.fixtures.kube (which must be registered, and rewritten, first).
    "tests.fixtures.api",
]
