"""Devbox: cloud development environments on Kubernetes.

The package holds the API server (``app.schema``, ``app.resolvers``), the controller
(``app.controller``), the simulated Kubernetes API server used for tests and the embedded
default (``app.simcluster``), the database layer (``app.db``) and the typed resource models
that the CRD manifests are generated from (``app.resources``).
"""

__version__ = "0.1.0"
