"""``ServeOptions``: every setting of ``cnnlab serve`` with its one default and its check. The CLI's flags take
their defaults and help from here, ``serve()`` and ``create_app`` take one of these, and the worker processes
of ``--workers N`` receive it whole, as its JSON (``WorkerSpec``). No torch here (``cnnlab serve --help``)."""
from __future__ import annotations

import ipaddress
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cnnlab.errors import ConfigError
from cnnlab.catalog.names import Backend, Device, listed
from cnnlab.inference.prediction import TOP_K, check_threshold

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


class ServeOptions(BaseModel):
    """The descriptions are the CLI's help."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Address to bind (default: this machine only).")
    port: int = Field(8000, ge=0, le=65535, description="Port.")
    backend: str = Field("auto", description="torch, onnx, or auto: on the CPU, ONNX Runtime when it runs an image "
                                             "faster (the run is exported to ONNX first if it has no current export), "
                                             "else torch.")
    device: str = Field("auto", description="auto (a GPU when there is one), cpu or cuda.")
    top_k: int = Field(TOP_K, ge=1, description="Classes listed in each prediction, most probable first.")
    threshold: Optional[float] = Field(None, description="Default threshold (0-1): a top probability below it is "
                                                         "answered uncertain, label null (?threshold= per request).")
    max_upload_mb: float = Field(10.0, gt=0, description="Largest accepted upload, in MB.")
    max_pixels: Optional[int] = Field(None, ge=1, description="Decoded pixels at once, in one image or all being "
                                                              "decoded together (default: 4096x4096, or 16x the "
                                                              "model's input on each side if larger); a larger image "
                                                              "gets 413.")
    max_header_kb: float = Field(32.0, ge=1, le=1024, description="Request line and headers, in KB, at most (and 100 "
                                                                  "header fields); more gets 431.")
    allowed_hosts: Optional[tuple[str, ...]] = Field(
        None, description="Host names the server answers, comma-separated ('*': any; default: localhost,127.0.0.1,"
                          "[::1] on a loopback --host, else any); another Host gets 400.")
    request_timeout: float = Field(30.0, gt=0, description="Seconds a connection has to send a complete request "
                                                           "(headers and body) before it is closed.")
    limit_concurrency: Optional[int] = Field(None, ge=1, description="Requests to the model in flight at most; more "
                                                                     "get 503 with Retry-After.")
    max_batch: int = Field(32, ge=1, description="Most images in one forward pass (micro-batching of concurrent "
                                                 "requests).")
    max_wait_ms: float = Field(5.0, ge=0, description="Longest wait for more requests to join a batch, in ms.")
    workers: int = Field(1, ge=1, description="Server processes under gunicorn (a worker that dies is replaced).")
    cuda_graphs: bool = Field(True, description="On a GPU, run each batch size's forward pass as one captured CUDA "
                                                "graph (one launch, not one per layer: a busy event loop then "
                                                "cannot delay it); no effect on the CPU.")
    access_log: bool = Field(False, description="Print a line for each request (it costs a small model's request a "
                                                "third of its time; GET /metrics counts them either way).")

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        if value not in set(Backend):
            raise ValueError(f"unknown backend '{value}': use one of {listed(Backend)}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value.split(":")[0] not in set(Device):  # cuda:N names one GPU
            raise ValueError(f"unknown device '{value}': use one of {listed(Device)}")
        return value

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: Optional[float]) -> Optional[float]:
        return check_threshold(value)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value):
        if isinstance(value, str):  # the flag's "a,b"
            value = value.split(",")
        hosts = None if value is None else tuple(h.strip() for h in value if h.strip())
        return hosts or None  # none named: the default, as for no flag

    @classmethod
    def from_flags(cls, **values) -> "ServeOptions":
        """Validated, or one ``ConfigError`` line naming each wrong flag and what it allows."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError("; ".join(_flag_error(e) for e in exc.errors())) from None

    def hosts(self) -> list[str]:
        """The Host names answered: ``allowed_hosts``, or by ``host``: the loopback names when it is a loopback
        address (a DNS-rebinding page cannot read the server then), else any."""
        return default_allowed_hosts(self.host) if self.allowed_hosts is None else list(self.allowed_hosts)

    @property
    def max_header_bytes(self) -> int:
        return int(self.max_header_kb * 1024)


def default_allowed_hosts(bind: str) -> list[str]:
    """Bound to a loopback address: only the loopback names (any port); else any Host."""
    name = bind.strip("[]")
    try:
        loopback = name == "localhost" or ipaddress.ip_address(name).is_loopback
    except ValueError:
        loopback = False
    return list(LOOPBACK_HOSTS) if loopback else ["*"]


def _flag_error(error: dict) -> str:
    name = "--" + str(error["loc"][0]).replace("_", "-") if error["loc"] else "options"
    reason = error["msg"].removeprefix("Value error, ")
    if isinstance(error.get("ctx", {}).get("error"), ConfigError):  # the threshold's own line says it all
        return str(error["ctx"]["error"])
    return f"{name} {error.get('input')}: {reason}"


class WorkerSpec(BaseModel):
    """What each worker process of ``--workers N`` builds its app from, as one JSON document."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_dir: str
    options: ServeOptions
