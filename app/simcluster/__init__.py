"""A simulated Kubernetes API server, for fast tests and the embedded default.

It serves the real Kubernetes REST API over HTTP on a loopback port so that the unmodified
``kubernetes_asyncio`` client and ``kubectl`` work against it, and it plays the nodes (like
kwok): pods get scheduled, get an IP and container ids, turn Running and terminate.
Anything it does differently from a real API server is a bug.

Modules: ``errors`` (Status errors), ``names`` (object name rules), ``selectors`` (label and
field selectors), ``openapi`` (CRD schema validation, defaulting, pruning), ``patch`` (JSON,
merge and strategic-merge patch), ``kinds`` (built-in resource types), ``store`` (MVCC object
store with watch history), ``controllers`` (garbage collection, namespaces, CRDs, nodes),
``tables`` (server-side printing for kubectl), ``http`` (the REST routes), ``server`` (running
it on a port, kubeconfig).
"""
