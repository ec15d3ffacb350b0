"""A real HTTP proxy on loopback that misbehaves on cue, between a client and a real server.

Each request the `matches` predicate selects takes the next fault from the script; once the
script is spent, requests pass through untouched. Faults, as the two upstreams would show them:

- `429`, `500`, `503`: the status with an error body (for Lambda, AWS's throttling or service
  error with its `x-amzn-ErrorType`, which botocore turns into TooManyRequestsException /
  ServiceException);
- `drop`: the request is read, then the connection is reset with no answer (a vanishing server);
- `drop-after-work`: forwarded to the server, which does the work, then reset (the client
  must retry, and the work is done twice, but the rows must still come out once);
- `stall`: answered only after `stall_s` seconds (a client timeout);
- `deny`: 403, as AWS answers credentials it does not recognise (S3: AccessDenied, a missing grant).

`bytes` counts the request and response bodies that crossed it, both ways.

`hidden` paths answer 404 as another server would: our service then looks like any other
OpenAI-compatible server (no /health limits, no /v1/chunks).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import httpx

from conftest import free_port

_LAMBDA_ERRORS = {
    429: (
        "TooManyRequestsException",
        b'{"Reason":"ReservedFunctionConcurrentInvocationLimitExceeded",'
        b'"Type":"User","message":"Rate Exceeded."}',
    ),
    500: ("ServiceException", b'{"Type":"Service","message":"injected service error"}'),
    503: ("ServiceException", b'{"Type":"Service","message":"injected service unavailable"}'),
    403: (
        "UnrecognizedClientException",
        b'{"message":"The security token included in the request is invalid."}',
    ),
}


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        faults: list[str] | None = None,
        flavour: str = "http",
        matches: Callable[[str, str, bytes], bool] = lambda method, path, body: method == "POST",
        stall_s: float = 3.0,
        deny_all: bool = False,
        hidden: tuple[str, ...] = (),
    ):
        self.hidden = hidden
        self.upstream = upstream.rstrip("/")
        self.faults = list(faults or [])
        self.flavour = flavour
        self.matches = matches
        self.stall_s = stall_s
        self.deny_all = deny_all
        self.injected: Counter = Counter()
        self.forwarded = 0  # matching requests passed to the upstream
        self.bytes = 0  # request and response bodies through the proxy, both ways
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=600)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _next_fault(self, method: str, path: str, body: bytes) -> str | None:
        if self.deny_all:
            return "deny"
        if not self.matches(method, path, body):
            return None
        with self._lock:
            fault = self.faults.pop(0) if self.faults else None
            if fault:
                self.injected[fault] += 1
            else:
                self.forwarded += 1
            return fault

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with proxy._lock:
                    proxy.bytes += len(body)
                if self.path.split("?")[0] in proxy.hidden:
                    return self._send(404, {"content-type": "application/json"}, b'{"detail":"Not Found"}')
                fault = proxy._next_fault(self.command, self.path, body)
                if fault == "drop":
                    return self._reset()
                if fault == "deny":
                    return self._error(403)
                if fault and fault.isdigit():
                    return self._error(int(fault))
                if fault == "stall":
                    time.sleep(proxy.stall_s)
                status, headers, content = proxy._forward(self.command, self.path, self.headers, body)
                if fault == "drop-after-work":
                    return self._reset()
                if self.command == "HEAD":  # the object's length, and no body
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    return self.end_headers()
                self._send(status, headers, content)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def _send(self, status: int, headers: dict[str, str], content: bytes) -> None:
                with proxy._lock:
                    proxy.bytes += len(content)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def _error(self, status: int) -> None:
                if proxy.flavour == "s3":
                    content = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
                    headers = {"content-type": "application/xml"}
                elif proxy.flavour == "lambda":
                    kind, content = _LAMBDA_ERRORS[status]
                    headers = {"content-type": "application/json", "x-amzn-errortype": kind}
                else:
                    content = (
                        b'{"error":{"message":"injected %d","type":"server_error","param":null,'
                        b'"code":"injected"}}' % status
                    )
                    headers = {"content-type": "application/json", "retry-after": "0"}
                self._send(status, headers, content)

            def _reset(self) -> None:
                """Close with RST and no answer: what a crashed server or a cut network looks like."""
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

        return Handler

    def _forward(self, method: str, path: str, headers, body: bytes) -> tuple[int, dict[str, str], bytes]:
        keep = {
            name: value
            for name, value in headers.items()
            if name.lower() not in ("host", "content-length", "connection", "transfer-encoding")
        }
        response = self._client.request(method, self.upstream + path, headers=keep, content=body)
        passed = {
            name: value
            for name, value in response.headers.items()
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")
        }
        if method == "HEAD":
            passed["content-length"] = response.headers.get("content-length", "0")
        return response.status_code, passed, response.content

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()
