"""A stand-in OTLP collector for tests: no real collector runs here, so this one speaks the real
wire protocols with the real definitions (opentelemetry-proto's ExportTraceServiceRequest and
ExportLogsServiceRequest and their gRPC services, grpcio's server; OTLP/HTTP protobuf on POST
/v1/traces and /v1/logs) and keeps what it decoded.

It can be stopped and started again on the same port, to play a collector that goes away and
comes back.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass
class ReceivedSpan:
    """One decoded span with its resource and scope."""

    name: str
    kind: int
    trace_id: str
    span_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status_code: int
    resource: dict[str, Any]
    scope: str


@dataclass
class ReceivedLog:
    """One decoded LogRecord with its resource and scope."""

    time_ns: int
    severity_number: int
    severity_text: str
    body: Any
    attributes: dict[str, Any]
    trace_id: str
    span_id: str
    resource: dict[str, Any]
    scope: str


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which) if which else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


class OtlpReceiver:
    """Decodes ExportTraceServiceRequests over gRPC or HTTP/protobuf on 127.0.0.1."""

    def __init__(self, protocol: str) -> None:
        if protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be grpc or http, not {protocol!r}")
        self.protocol = protocol
        self.port = 0
        self.requests = 0
        self._spans: list[ReceivedSpan] = []
        self._logs: list[ReceivedLog] = []
        self.log_requests = 0
        self.authorization: list[str] = []  # the Authorization header (gRPC metadata) of each request
        self._lock = threading.Lock()
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None

    # -- what arrived ------------------------------------------------------------------------
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def logs(self) -> list[ReceivedLog]:
        with self._lock:
            return list(self._logs)

    def _record_logs(self, req: logs_service_pb2.ExportLogsServiceRequest) -> None:
        out = []
        for rl in req.resource_logs:
            resource = _attrs(rl.resource.attributes)
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    out.append(ReceivedLog(
                        time_ns=r.time_unix_nano, severity_number=r.severity_number, severity_text=r.severity_text,
                        body=_value(r.body), attributes=_attrs(r.attributes), trace_id=r.trace_id.hex(),
                        span_id=r.span_id.hex(), resource=resource, scope=sl.scope.name,
                    ))
        with self._lock:
            self.log_requests += 1
            self._logs.extend(out)

    def _record(self, req: trace_service_pb2.ExportTraceServiceRequest) -> None:
        out = []
        for rs in req.resource_spans:
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append(ReceivedSpan(
                        name=s.name, kind=s.kind, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                        start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano,
                        attributes=_attrs(s.attributes), events=[(e.name, _attrs(e.attributes)) for e in s.events],
                        status_code=s.status.code, resource=resource, scope=ss.scope.name,
                    ))
        with self._lock:
            self.requests += 1
            self._spans.extend(out)

    def _note_auth(self, value: str) -> None:
        with self._lock:
            self.authorization.append(value)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen on the port it had before (a restart) or a free one."""
        if self.protocol == "grpc":
            self._start_grpc()
        else:
            self._start_http()

    def stop(self) -> None:
        """Go away: stop listening and drop connections, in-flight requests included."""
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait()
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def _start_grpc(self) -> None:
        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the proto's name
                receiver._note_auth(dict(context.invocation_metadata()).get("authorization", ""))
                receiver._record(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        class LogsService(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the proto's name
                receiver._note_auth(dict(context.invocation_metadata()).get("authorization", ""))
                receiver._record_logs(request)
                return logs_service_pb2.ExportLogsServiceResponse()

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(LogsService(), server)
        port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        if port == 0:
            raise OSError(f"stand-in OTLP gRPC receiver cannot bind 127.0.0.1:{self.port}")
        server.start()
        self.port, self._grpc = port, server

    def _start_http(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                known = ("/v1/traces", "/v1/logs")
                if self.path not in known or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404 if self.path not in known else 415)
                    self.end_headers()
                    return
                receiver._note_auth(self.headers.get("Authorization", ""))
                if self.headers.get("Content-Encoding") == "gzip":
                    import gzip

                    body = gzip.decompress(body)
                if self.path == "/v1/logs":
                    logs_req = logs_service_pb2.ExportLogsServiceRequest()
                    logs_req.ParseFromString(body)
                    receiver._record_logs(logs_req)
                    reply = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
                else:
                    req = trace_service_pb2.ExportTraceServiceRequest()
                    req.ParseFromString(body)
                    receiver._record(req)
                    reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="otlp-standin-http", daemon=True).start()
        self.port, self._http = server.server_address[1], server
