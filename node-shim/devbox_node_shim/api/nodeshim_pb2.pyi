from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CommitMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMMIT_MODE_UNSPECIFIED: _ClassVar[CommitMode]
    COMMIT_MODE_STOP: _ClassVar[CommitMode]
    COMMIT_MODE_SNAPSHOT: _ClassVar[CommitMode]
COMMIT_MODE_UNSPECIFIED: CommitMode
COMMIT_MODE_STOP: CommitMode
COMMIT_MODE_SNAPSHOT: CommitMode

class CommitRequest(_message.Message):
    __slots__ = ("request_id", "container_id", "target_image", "mode", "stop_timeout_seconds", "max_layers", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_IMAGE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STOP_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_LAYERS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    container_id: str
    target_image: str
    mode: CommitMode
    stop_timeout_seconds: int
    max_layers: int
    labels: _containers.ScalarMap[str, str]
    def __init__(self, request_id: _Optional[str] = ..., container_id: _Optional[str] = ..., target_image: _Optional[str] = ..., mode: _Optional[_Union[CommitMode, str]] = ..., stop_timeout_seconds: _Optional[int] = ..., max_layers: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CommitProgress(_message.Message):
    __slots__ = ("step", "bytes_done", "bytes_total")
    STEP_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    step: str
    bytes_done: int
    bytes_total: int
    def __init__(self, step: _Optional[str] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ...) -> None: ...

class Layer(_message.Message):
    __slots__ = ("digest", "size")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    digest: str
    size: int
    def __init__(self, digest: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class StepDuration(_message.Message):
    __slots__ = ("step", "seconds")
    STEP_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    step: str
    seconds: float
    def __init__(self, step: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class CommitResult(_message.Message):
    __slots__ = ("image", "manifest_digest", "layers", "total_size", "layer_count", "step_durations")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    LAYER_COUNT_FIELD_NUMBER: _ClassVar[int]
    STEP_DURATIONS_FIELD_NUMBER: _ClassVar[int]
    image: str
    manifest_digest: str
    layers: _containers.RepeatedCompositeFieldContainer[Layer]
    total_size: int
    layer_count: int
    step_durations: _containers.RepeatedCompositeFieldContainer[StepDuration]
    def __init__(self, image: _Optional[str] = ..., manifest_digest: _Optional[str] = ..., layers: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ..., total_size: _Optional[int] = ..., layer_count: _Optional[int] = ..., step_durations: _Optional[_Iterable[_Union[StepDuration, _Mapping]]] = ...) -> None: ...

class CommitEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: CommitProgress
    result: CommitResult
    def __init__(self, progress: _Optional[_Union[CommitProgress, _Mapping]] = ..., result: _Optional[_Union[CommitResult, _Mapping]] = ...) -> None: ...

class ListCommitsRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: str
    def __init__(self, repository: _Optional[str] = ...) -> None: ...

class CommitRecord(_message.Message):
    __slots__ = ("request_id", "image", "manifest_digest", "finished_at")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    image: str
    manifest_digest: str
    finished_at: str
    def __init__(self, request_id: _Optional[str] = ..., image: _Optional[str] = ..., manifest_digest: _Optional[str] = ..., finished_at: _Optional[str] = ...) -> None: ...

class ListCommitsResponse(_message.Message):
    __slots__ = ("commits",)
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    commits: _containers.RepeatedCompositeFieldContainer[CommitRecord]
    def __init__(self, commits: _Optional[_Iterable[_Union[CommitRecord, _Mapping]]] = ...) -> None: ...

class DeleteImageRequest(_message.Message):
    __slots__ = ("image", "registry")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    image: str
    registry: bool
    def __init__(self, image: _Optional[str] = ..., registry: _Optional[bool] = ...) -> None: ...

class DeleteImageResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("serving", "message", "degraded")
    SERVING_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    serving: bool
    message: str
    degraded: bool
    def __init__(self, serving: _Optional[bool] = ..., message: _Optional[str] = ..., degraded: _Optional[bool] = ...) -> None: ...

class VersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VersionResponse(_message.Message):
    __slots__ = ("version", "containerd_version", "api_version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTAINERD_VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    containerd_version: str
    api_version: str
    def __init__(self, version: _Optional[str] = ..., containerd_version: _Optional[str] = ..., api_version: _Optional[str] = ...) -> None: ...

class ContainerActivityRequest(_message.Message):
    __slots__ = ("container_id", "port", "skip_writable_bytes")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    SKIP_WRITABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    port: int
    skip_writable_bytes: bool
    def __init__(self, container_id: _Optional[str] = ..., port: _Optional[int] = ..., skip_writable_bytes: _Optional[bool] = ...) -> None: ...

class ContainerActivityResponse(_message.Message):
    __slots__ = ("running", "connections", "writable_bytes")
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    running: bool
    connections: int
    writable_bytes: int
    def __init__(self, running: _Optional[bool] = ..., connections: _Optional[int] = ..., writable_bytes: _Optional[int] = ...) -> None: ...
