"""Devbox node-shim: one per node, commits a devbox container's changes to an image and
pushes it to the registry, behind an authenticated gRPC API.

Layers, top to bottom (each module's docstring draws its exception tree)::

    cli         ``devbox-node-shim serve`` / ``version``
    server      gRPC servicer, bearer-token auth, idempotency, container activity; settings,
                records (on disk)
    commit      the commit pipeline as named steps; push (its registry step); image (OCI
                documents: parent read, new config and manifest built)
    overlay_diff, squash, compress, spool, tarwriter, layer_apply
                layer tars (no calls to services)
    containerd  the only module talking to containerd (stubs: containerd_api, generated)
    registry    the only module talking to registries
    sockets     open TCP connections of a container's network namespace (/proc/<pid>/net)
"""

__version__ = "0.1.0"
