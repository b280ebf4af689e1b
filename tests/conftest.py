"""Shared fixtures: the Kubernetes target, PostgreSQL, and dependency checks."""

pytest_plugins = [
    "tests.fixtures.kube",
    "tests.fixtures.postgres",
    "tests.fixtures.simcluster",
]
