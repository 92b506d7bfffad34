"""Sending pre-encoded OTLP requests (traces or logs) with the OTel SDK's own exporters.

The agent writes the protobuf request bytes itself (agent/export/otlp_proto.py, agent/export/otlp_logs.py:
cached attribute encodings, ~10x cheaper than the SDK's per-record objects). What it takes from the
SDK is the transport: the gRPC channel or HTTP session, retries of transient failures (gRPC
UNAVAILABLE and friends, HTTP 429/502/503/504, connection errors) with exponential backoff and
jitter until `timeout_s` has passed since the export began, and `shutdown()` aborting a retry wait.
One sender serves both signals; only the SDK classes and the HTTP path differ.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any

from agent.redaction.url_credentials import exporter_endpoint

log = logging.getLogger("bcgov.agent.otlp")


@dataclass(frozen=True)
class Signal:
    """Where the SDK keeps one signal's exporters, request message and result enum."""

    name: str  # "traces" or "logs"; also the HTTP path, /v1/<name>
    grpc_exporter: str  # "module:Class"
    http_exporter: str
    request: str  # the Export*ServiceRequest message
    result: str  # the SDK's export result enum


TRACES = Signal(
    "traces",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter:OTLPSpanExporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter:OTLPSpanExporter",
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2:ExportTraceServiceRequest",
    "opentelemetry.sdk.trace.export:SpanExportResult",
)
LOGS = Signal(
    "logs",
    "opentelemetry.exporter.otlp.proto.grpc._log_exporter:OTLPLogExporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter:OTLPLogExporter",
    "opentelemetry.proto.collector.logs.v1.logs_service_pb2:ExportLogsServiceRequest",
    "opentelemetry.sdk._logs.export:LogRecordExportResult",
)
_HTTP_PATHS = tuple(f"/v1/{s.name}" for s in (TRACES, LOGS))


def _load(ref: str) -> Any:
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


class _Encoded:
    """A batch already encoded; its len() is the record count (the SDK exporters count with it)."""

    def __init__(self, data: bytes, n: int) -> None:
        self.data = data
        self._n = n

    def __len__(self) -> int:
        return self._n


def _grpc_class(signal: Signal) -> type:
    base, request = _load(signal.grpc_exporter), _load(signal.request)

    class EncodedGrpcExporter(base):  # type: ignore[misc, valid-type]
        """The SDK's gRPC exporter (channel, retries, timeout) sending a pre-built request."""

        def _translate_data(self, data: _Encoded) -> Any:
            return request.FromString(data.data)

    return EncodedGrpcExporter


def _http_class(signal: Signal) -> type:
    base, result_enum = _load(signal.http_exporter), _load(signal.result)

    class EncodedHttpExporter(base):  # type: ignore[misc, valid-type]
        """The SDK's HTTP exporter (session, retries, timeout) posting a pre-built request;
        export() is the SDK's own minus its encoding step."""

        def export(self, batch: _Encoded) -> Any:
            if self._shutdown:
                log.warning("OTLP %s exporter already shut down; batch not sent", signal.name)
                return result_enum.FAILURE
            with self._metrics.export_operation(len(batch)) as result:
                limit = getattr(self, "_max_request_size", None)
                if limit and len(batch.data) > limit:
                    log.warning("OTLP %s batch of %d bytes exceeds max_request_size %d; dropped",
                                signal.name, len(batch.data), limit)
                    result.error = ValueError("request too large")
                    return result_enum.FAILURE
                export_result = self._client.export(batch.data)
                if not export_result.success:
                    result.error = export_result.error
                    return result_enum.FAILURE
            return result_enum.SUCCESS

    return EncodedHttpExporter


class EncodedSender:
    """Sends encoded requests of one `signal` to `endpoint`: gRPC (`host:port`, `http://host:4317`,
    TLS only for `https://`) or HTTP/protobuf (`http://host:4318`, `/v1/<signal>` added, another
    signal's path replaced). Userinfo in the endpoint travels as an Authorization header
    (agent/redaction/url_credentials.py): the SDK takes none and would print it in its retry lines.
    Raises ValueError for an unknown protocol; `send` never raises."""

    def __init__(self, signal: Signal, endpoint: str, protocol: str, timeout_s: float = 5.0,
                 headers: dict[str, str] | None = None) -> None:
        self.signal = signal
        auth = exporter_endpoint(endpoint, headers)
        endpoint, headers = auth.url, (auth.headers or None)
        if protocol == "grpc":
            # TLS only when asked for: a bare host:port is a collector on the node or in-cluster.
            insecure = not endpoint.startswith("https://")
            target = endpoint.removeprefix("http://").removeprefix("https://").rstrip("/")
            self._exporter: Any = _grpc_class(signal)(endpoint=target, insecure=insecure, timeout=timeout_s,
                                                      headers=headers)
        elif protocol == "http":
            base = (endpoint if "://" in endpoint else "http://" + endpoint).rstrip("/")
            for path in _HTTP_PATHS:
                base = base.removesuffix(path)
            self._exporter = _http_class(signal)(endpoint=f"{base}/v1/{signal.name}", timeout=timeout_s, headers=headers)
        else:
            raise ValueError(f"unknown OTLP protocol {protocol!r}: use 'grpc' or 'http'")
        self._success = _load(signal.result).SUCCESS

    def send(self, data: bytes, n: int) -> bool:
        """Export one request of `n` records; False on failure after the SDK's retries."""
        try:
            return bool(self._exporter.export(_Encoded(data, n)) == self._success)
        except Exception as exc:  # an exporter failure must never reach the event path
            log.warning("OTLP %s export failed: %s", self.signal.name, exc)
            return False

    def shutdown(self) -> None:
        self._exporter.shutdown()
