"""Field types of the built-in kinds, checked when a body is decoded.

A real API server decodes a request body into its Go types, so a field of the wrong JSON type
(``"data": 1`` on a ConfigMap) is refused with 400 ``<Kind> in version "v1" cannot be handled as
a <Kind>`` before any validation runs.  These schemas give the types of the fields the
simulation reads (and of ObjectMeta for every kind, custom resources included); fields not
listed are accepted as they are.
"""

from __future__ import annotations

from typing import Any

from app.simcluster import openapi
from app.simcluster.errors import BadRequest
from app.simcluster.kinds import JSON, ResourceType

ANY: JSON = {"x-kubernetes-preserve-unknown-fields": True}
STRING: JSON = {"type": "string"}
INTEGER: JSON = {"type": "integer"}
BOOLEAN: JSON = {"type": "boolean"}
INT_OR_STRING: JSON = {"x-kubernetes-int-or-string": True}
STRING_MAP: JSON = {"type": "object", "additionalProperties": STRING}
STRING_LIST: JSON = {"type": "array", "items": STRING}


def obj(**properties: JSON) -> JSON:
    """An object with these typed properties; other properties are left alone."""
    return {
        "type": "object",
        "properties": properties,
        "x-kubernetes-preserve-unknown-fields": True,
    }


def array(items: JSON) -> JSON:
    return {"type": "array", "items": items}


OBJECT_META = obj(
    name=STRING,
    generateName=STRING,
    namespace=STRING,
    uid=STRING,
    resourceVersion=STRING,
    generation=INTEGER,
    creationTimestamp=STRING,
    deletionTimestamp=STRING,
    deletionGracePeriodSeconds=INTEGER,
    labels=STRING_MAP,
    annotations=STRING_MAP,
    finalizers=STRING_LIST,
    ownerReferences=array(
        obj(
            apiVersion=STRING,
            kind=STRING,
            name=STRING,
            uid=STRING,
            controller=BOOLEAN,
            blockOwnerDeletion=BOOLEAN,
        )
    ),
)
CONTAINER = obj(
    name=STRING,
    image=STRING,
    command=STRING_LIST,
    args=STRING_LIST,
    workingDir=STRING,
    imagePullPolicy=STRING,
    ports=array(obj(name=STRING, containerPort=INTEGER, hostPort=INTEGER, protocol=STRING)),
    env=array(obj(name=STRING, value=STRING, valueFrom=obj())),
    resources=obj(
        limits={"type": "object", "additionalProperties": INT_OR_STRING},
        requests={"type": "object", "additionalProperties": INT_OR_STRING},
    ),
    volumeMounts=array(obj(name=STRING, mountPath=STRING, readOnly=BOOLEAN, subPath=STRING)),
    readinessProbe=obj(),
    livenessProbe=obj(),
    startupProbe=obj(),
    securityContext=obj(),
)
CONDITIONS = array(obj(type=STRING, status=STRING, reason=STRING, message=STRING))
KIND_SHAPES: dict[str, JSON] = {
    "ConfigMap": obj(data=STRING_MAP, binaryData=STRING_MAP, immutable=BOOLEAN),
    "Secret": obj(data=STRING_MAP, stringData=STRING_MAP, type=STRING, immutable=BOOLEAN),
    "Namespace": obj(spec=obj(finalizers=STRING_LIST), status=obj(phase=STRING)),
    "Pod": obj(
        spec=obj(
            containers=array(CONTAINER),
            initContainers=array(CONTAINER),
            restartPolicy=STRING,
            nodeName=STRING,
            nodeSelector=STRING_MAP,
            schedulerName=STRING,
            serviceAccountName=STRING,
            terminationGracePeriodSeconds=INTEGER,
            volumes=array(obj(name=STRING)),
            tolerations=array(obj()),
            hostname=STRING,
            subdomain=STRING,
        ),
        status=obj(
            phase=STRING,
            podIP=STRING,
            hostIP=STRING,
            conditions=CONDITIONS,
            containerStatuses=array(
                obj(name=STRING, ready=BOOLEAN, restartCount=INTEGER, state=obj())
            ),
        ),
    ),
    "Service": obj(
        spec=obj(
            type=STRING,
            clusterIP=STRING,
            clusterIPs=STRING_LIST,
            selector=STRING_MAP,
            sessionAffinity=STRING,
            externalTrafficPolicy=STRING,
            ports=array(
                obj(
                    name=STRING,
                    port=INTEGER,
                    targetPort=INT_OR_STRING,
                    nodePort=INTEGER,
                    protocol=STRING,
                )
            ),
        )
    ),
    "Node": obj(
        spec=obj(unschedulable=BOOLEAN, podCIDR=STRING),
        status=obj(addresses=array(obj(type=STRING, address=STRING)), conditions=CONDITIONS),
    ),
    "Event": obj(
        involvedObject=obj(
            kind=STRING,
            namespace=STRING,
            name=STRING,
            uid=STRING,
            apiVersion=STRING,
            resourceVersion=STRING,
            fieldPath=STRING,
        ),
        reason=STRING,
        message=STRING,
        type=STRING,
        count=INTEGER,
        firstTimestamp=STRING,
        lastTimestamp=STRING,
        source=obj(component=STRING, host=STRING),
    ),
    "Lease": obj(
        spec=obj(
            holderIdentity=STRING,
            leaseDurationSeconds=INTEGER,
            acquireTime=STRING,
            renewTime=STRING,
            leaseTransitions=INTEGER,
        )
    ),
    "Ingress": obj(
        spec=obj(
            ingressClassName=STRING,
            rules=array(
                obj(
                    host=STRING,
                    http=obj(paths=array(obj(path=STRING, pathType=STRING, backend=obj()))),
                )
            ),
            tls=array(obj(hosts=STRING_LIST, secretName=STRING)),
        )
    ),
    "CustomResourceDefinition": obj(
        spec=obj(
            group=STRING,
            scope=STRING,
            names=obj(
                plural=STRING,
                singular=STRING,
                kind=STRING,
                listKind=STRING,
                shortNames=STRING_LIST,
                categories=STRING_LIST,
            ),
            versions=array(
                obj(
                    name=STRING,
                    served=BOOLEAN,
                    storage=BOOLEAN,
                    schema=obj(openAPIV3Schema=obj()),
                    subresources=obj(),
                    additionalPrinterColumns=array(
                        obj(
                            name=STRING,
                            type=STRING,
                            jsonPath=STRING,
                            priority=INTEGER,
                            format=STRING,
                            description=STRING,
                        )
                    ),
                )
            ),
        )
    ),
}


def _without_nulls(value: Any) -> Any:
    """Go's decoder accepts ``null`` for every field (zero value), so nulls are not checked."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value


def check_decodable(rt: ResourceType, body: Any) -> None:
    """Refuse a body whose fields do not have the types the kind's Go structs have."""
    if not isinstance(body, dict):
        raise BadRequest(f"the object provided is unrecognized (must be of type {rt.kind})")
    shape = dict(KIND_SHAPES.get(rt.kind, obj())) if not rt.custom else obj()
    shape["properties"] = {
        **shape.get("properties", {}),
        "metadata": OBJECT_META,
        "apiVersion": STRING,
        "kind": STRING,
    }
    causes = openapi.validate(shape, _without_nulls(body))
    if causes:
        first = causes[0]
        where = f"{first.field}: " if first.field else ""
        raise BadRequest(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
            f"{where}{first.message}"
        )


DELETE_OPTIONS = obj(
    gracePeriodSeconds=INTEGER,
    propagationPolicy=STRING,
    orphanDependents=BOOLEAN,
    dryRun=STRING_LIST,
    preconditions=obj(uid=STRING, resourceVersion=STRING),
    kind=STRING,
    apiVersion=STRING,
)
BINDING = obj(target=obj(kind=STRING, name=STRING, namespace=STRING), metadata=OBJECT_META)
FINALIZE = obj(spec=obj(finalizers=STRING_LIST), metadata=OBJECT_META)


def _check(shape: JSON, kind: str, body: Any) -> None:
    if not isinstance(body, dict):
        raise BadRequest(f"the object provided is unrecognized (must be of type {kind})")
    causes = openapi.validate(shape, _without_nulls(body))
    if causes:
        first = causes[0]
        where = f"{first.field}: " if first.field else ""
        raise BadRequest(
            f'{kind} in version "v1" cannot be handled as a {kind}: {where}{first.message}'
        )


def check_delete_options(body: Any) -> None:
    """DeleteOptions in a DELETE body must decode (400 otherwise)."""
    _check(DELETE_OPTIONS, "DeleteOptions", body)


def check_binding(body: Any) -> None:
    """A pods/binding body must decode as a Binding."""
    _check(BINDING, "Binding", body)


def check_finalize(body: Any) -> None:
    """A namespaces/finalize body must decode as a Namespace."""
    _check(FINALIZE, "Namespace", body)
