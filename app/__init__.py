"""Devbox: cloud development environments on Kubernetes.

The package holds the API server (``app.api``, the GraphQL schema ``app.schema`` over the read
cache ``app.apicache``, the SSH tunnel ``app.tunnel``, the web page ``app.web``), the
``devboxctl`` client (``app.client``), the controller (``app.controller``), the simulated
Kubernetes API server used for tests and the embedded default (``app.simcluster``), the
database layer (``app.db``) and the typed resource models that the CRD manifests are generated
from (``app.resources``).
"""

__version__ = "0.1.0"
