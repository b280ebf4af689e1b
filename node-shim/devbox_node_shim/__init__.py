"""Devbox node-shim: one per node, commits a devbox container's changes to an image and
pushes it to the registry, behind an authenticated gRPC API.

Only the distribution and its console script exist yet; the gRPC service, the containerd
client and the registry push arrive with the node-shim issue.
"""

__version__ = "0.1.0"
