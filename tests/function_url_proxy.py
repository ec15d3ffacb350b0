"""A local Lambda Function URL: real HTTP in, a payload 2.0 event to the real RIE, HTTP out.

Clients under test (openai-python, LangChain, Node's openai, the SigV4 signer) talk plain
HTTP to this server on loopback, exactly as they would to `https://<id>.lambda-url.<region>
.on.aws`. Each request becomes the Function URL event AWS documents, is invoked on the real
handler under the real Runtime Interface Emulator, and the proxy result is turned back into
an HTTP response with AWS's rules (a result without `statusCode` is a 200 JSON body; a
function error is a 502).

With `credentials` the server plays `AWS_IAM` auth: it recomputes each request's signature
with botocore's own SigV4 code from what it received and the known credentials, and answers
403 like AWS when it doesn't match, is stale, or is missing.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from conftest import free_port

ACCOUNT_ID = "123456789012"
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)  # AWS: "Signature expired" beyond this
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?Signature=(?P<signature>[0-9a-f]{64})$"
)
_TEXT_TYPES = re.compile(r"^(text/.*|application/(json|.*\+json|xml|javascript|x-www-form-urlencoded))$")


def sigv4_rejection(method: str, target: str, headers: list[tuple[str, str]], body: bytes,
                    credentials, region: str, now: dt.datetime) -> str | None:
    """Why AWS would refuse this request's signature, or None when it is valid.

    The signature is recomputed with botocore over exactly the headers the client says it
    signed, with the values received, the path and query as received, and the body's hash.
    """
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name.lower(), []).append(value)
    match = _AUTHORIZATION.match(",".join(by_name.get("authorization", [""])))
    if not match:
        return "Missing Authentication Token"
    frozen = credentials.get_frozen_credentials()
    if match["key"] != frozen.access_key:
        return "The security token included in the request is invalid."
    if match["region"] != region or match["service"] != "lambda":
        return f"Credential should be scoped to a valid region ({region}) and service (lambda)."
    signed = match["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return "SignedHeaders must include host and x-amz-date."
    stamp = ",".join(by_name.get("x-amz-date", [""]))
    try:
        when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return "X-Amz-Date is missing or malformed."
    if abs(now - when) > MAX_CLOCK_SKEW or match["date"] != stamp[:8]:
        return "Signature expired."
    if frozen.token and by_name.get("x-amz-security-token") != [frozen.token]:
        return "The security token included in the request is invalid."
    sent_hash = by_name.get("x-amz-content-sha256")
    if sent_hash is not None and sent_hash != [hashlib.sha256(body).hexdigest()]:
        return "The provided x-amz-content-sha256 header does not match what was computed."
    request = AWSRequest(method=method, url=f"http://{by_name['host'][0]}{target}", data=body,
                         headers={name: ",".join(by_name.get(name, [])) for name in signed})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(frozen, "lambda", region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, match["signature"]):
        return "The request signature we calculated does not match the signature you provided."
    return None


def function_url_event(method: str, target: str, headers: list[tuple[str, str]], body: bytes,
                       host: str, iam_caller: str | None) -> dict:
    """The payload 2.0 event a Function URL would hand the function for this request."""
    path, _, query = target.partition("?")
    merged: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        merged[name] = f"{merged[name]},{value}" if name in merged else value
    cookies = [c.strip() for c in merged.pop("cookie", "").split(";") if c.strip()]
    merged.update({"x-forwarded-proto": "https", "x-forwarded-port": "443", "x-forwarded-for": "127.0.0.1",
                   "x-amzn-trace-id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}"})
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    now = dt.datetime.now(dt.timezone.utc)
    context = {
        "accountId": ACCOUNT_ID if iam_caller else "anonymous",
        "apiId": "localfunctionurl", "domainName": host, "domainPrefix": host.split(".")[0],
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                 "userAgent": merged.get("user-agent", "")},
        "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": int(now.timestamp() * 1000),
    }
    if iam_caller:
        context["authorizer"] = {"iam": {
            "accessKey": iam_caller, "accountId": ACCOUNT_ID, "callerId": "AIDAEXAMPLE",
            "cognitoIdentity": None, "principalOrgId": None,
            "userArn": f"arn:aws:iam::{ACCOUNT_ID}:user/test", "userId": "AIDAEXAMPLE"}}
    event = {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
             "headers": merged, "requestContext": context, "isBase64Encoded": False}
    if cookies:
        event["cookies"] = cookies
    if params:
        event["queryStringParameters"] = params
    if body:
        media = merged.get("content-type", "").split(";")[0].strip().lower()
        try:
            if not _TEXT_TYPES.match(media):
                raise UnicodeDecodeError("utf-8", body, 0, 0, "binary content type")
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return event


def http_response(result: bytes) -> tuple[int, dict[str, str], bytes]:
    """A function's result -> (status, headers, body), by the Function URL's rules."""
    try:
        document = json.loads(result)
    except ValueError:
        return 200, {"content-type": "application/json"}, result
    if isinstance(document, dict) and "errorType" in document and "errorMessage" in document:
        return 502, {"content-type": "application/json"}, b'{"Message":"Internal Server Error"}'
    if not (isinstance(document, dict) and "statusCode" in document):
        return 200, {"content-type": "application/json"}, result
    body = document.get("body") or ""
    raw = base64.b64decode(body) if document.get("isBase64Encoded") else body.encode("utf-8")
    headers = {str(k).lower(): str(v) for k, v in (document.get("headers") or {}).items()}
    return int(document["statusCode"]), headers, raw


class FunctionUrlProxy:
    """The server. `credentials` (botocore Credentials) turns on AWS_IAM signature checks."""

    def __init__(self, invoke_url: str, credentials=None, region: str = "eu-west-1"):
        self.invoke_url, self.credentials, self.region = invoke_url, credentials, region
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.rejections: list[str] = []
        self._invoke_lock = threading.Lock()  # one sandbox: invocations run one at a time
        self._client = httpx.Client(timeout=120)
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the clients expect

            def log_message(self, *args):  # quiet: pytest shows failures, not access logs
                pass

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("transfer-encoding", "").lower():
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.send_header("x-amzn-requestid", str(uuid.uuid4()))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _proxy(self) -> None:
                body = self._read_body()
                headers = list(self.headers.items())
                caller = None
                if proxy.credentials is not None:
                    reason = sigv4_rejection(self.command, self.path, headers, body, proxy.credentials,
                                             proxy.region, dt.datetime.now(dt.timezone.utc))
                    if reason:
                        proxy.rejections.append(reason)
                        self._answer(403, {"content-type": "application/json",
                                           "x-amzn-errortype": "AccessDeniedException"},
                                     json.dumps({"Message": reason}).encode())
                        return
                    caller = proxy.credentials.get_frozen_credentials().access_key
                event = function_url_event(self.command, self.path, headers, body,
                                           self.headers.get("host", ""), caller)
                with proxy._invoke_lock:
                    result = proxy._client.post(proxy.invoke_url, content=json.dumps(event).encode())
                self._answer(*http_response(result.content))

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _proxy

        return Handler

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()
