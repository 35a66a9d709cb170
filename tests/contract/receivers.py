"""Real receivers on loopback for the channel adapter contract: an SMTP server (aiosmtpd) and an
HTTP server (the standard library's), each recording exactly what arrived."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from counterpoint.channel.webhook import SIGNATURE_HEADER, verify_signature

SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cret-smtp-password-1"

# Local parts the SMTP receiver refuses: "bounce…" at RCPT with 550, "later…" with 451.
# A message whose content holds REJECT_DATA is refused at DATA with 554.
REJECT_DATA = b"X-Test-Reject: data"

# The HTTP receiver answers 400 {"error": "invalid_number"} for this number and
# 422 {"error": "invalid_address"} for this address.
BAD_NUMBER = "+15550000000"
BAD_ADDRESS = "refused@hooks.example"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- SMTP --------------------------------------------------------------------------------------


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    authenticated: bool


class _Handler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self.receiver = receiver

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        local = address.split("@", 1)[0]
        if local.startswith("bounce"):
            return "550 5.1.1 mailbox unavailable"
        if local.startswith("later"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.receiver.data_delay_s:
            await asyncio.sleep(self.receiver.data_delay_s)
        content = envelope.content
        assert isinstance(content, bytes)
        if REJECT_DATA in content:
            return "554 5.6.0 message refused"
        with self.receiver.lock:
            self.receiver.mails.append(
                Mail(
                    str(envelope.mail_from),
                    list(envelope.rcpt_tos),
                    content,
                    bool(session.authenticated),
                )
            )
        return "250 2.0.0 queued"


class _CountingController(Controller):
    def __init__(self, receiver: SmtpReceiver, **kwargs: Any) -> None:
        super().__init__(_Handler(receiver), **kwargs)
        self.receiver = receiver

    def factory(self) -> SMTP:
        with self.receiver.lock:
            self.receiver.connections += 1
        return super().factory()


class SmtpReceiver:
    """An aiosmtpd server on 127.0.0.1: plain, STARTTLS (+AUTH) or implicit TLS."""

    def __init__(
        self,
        mode: str = "plain",
        certificate: tuple[Path, Path] | None = None,
        *,
        idle_timeout_s: float = 300,
    ) -> None:
        self.mode = mode
        self.port = free_port()
        self.mails: list[Mail] = []
        self.connections = 0
        self.data_delay_s = 0.0
        self.lock = threading.Lock()
        kwargs: dict[str, Any] = {
            "hostname": "127.0.0.1",
            "port": self.port,
            "server_hostname": "mx.counterpoint.test",
            "timeout": idle_timeout_s,
        }
        if mode != "plain":
            assert certificate is not None
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(certificate[0]), str(certificate[1]))
            if mode == "tls":
                kwargs["ssl_context"] = context
            else:
                kwargs.update(
                    tls_context=context,
                    require_starttls=True,
                    authenticator=self._authenticate,
                    auth_required=mode == "starttls+auth",
                    auth_require_tls=True,
                )
        self.controller = _CountingController(self, **kwargs)
        self.running = False

    @staticmethod
    def _authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == SMTP_USER.encode()
            and data.password == SMTP_PASSWORD.encode()
        )
        return AuthResult(success=ok, handled=False)

    def start(self) -> SmtpReceiver:
        self.controller.start()
        self.running = True
        with self.lock:
            self.connections = 0  # the controller's own start-up probe
        return self

    def stop(self) -> None:
        if self.running:
            self.controller.stop()
            self.running = False


# --- HTTP --------------------------------------------------------------------------------------


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool


@dataclass
class HttpReceiver:
    """A threading HTTP server on 127.0.0.1 standing for an SMS gateway or a webhook
    receiver. It checks the signature of every request with ``verify_signature``, stores
    each message once per ``Idempotency-Key`` (as a de-duplicating receiver does) and answers
    ``{"id": …}``. ``status`` forces an answer; ``delay_s`` answers late."""

    secret: str
    now: Callable[[], dt.datetime]
    status: int | None = None
    status_body: dict[str, Any] = field(default_factory=dict)
    delay_s: float = 0.0
    requests: list[HttpRequest] = field(default_factory=list)
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    open_connections: set[socket.socket] = field(default_factory=set)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                receiver._handle(self)

            def setup(self) -> None:
                super().setup()
                with receiver.lock:
                    receiver.open_connections.add(self.connection)

            def finish(self) -> None:
                with receiver.lock:
                    receiver.open_connections.discard(self.connection)
                super().finish()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/messages"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        self.running = True

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        signed = verify_signature(
            self.secret, handler.headers.get(SIGNATURE_HEADER), body, self.now()
        )
        with self.lock:
            self.requests.append(HttpRequest("POST", handler.path, headers, body, signed))
        if self.delay_s:
            time.sleep(self.delay_s)
        status, answer = self._answer(handler, body, signed)
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(
        self, handler: BaseHTTPRequestHandler, body: bytes, signed: bool
    ) -> tuple[int, dict[str, Any]]:
        if self.status is not None:
            return self.status, self.status_body
        if not signed:
            return 401, {"error": "bad_signature"}
        message = json.loads(body)
        if message.get("to") == BAD_NUMBER:
            return 400, {"error": "invalid_number"}
        if message.get("address") == BAD_ADDRESS:
            return 422, {"error": "invalid_address"}
        key = handler.headers.get("Idempotency-Key") or ""
        with self.lock:
            self.stored.setdefault(key, message)
        return 200, {"id": f"rcv-{key}"}

    def stop(self) -> None:
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            with self.lock:
                for connection in self.open_connections:
                    with contextlib.suppress(OSError):
                        connection.shutdown(socket.SHUT_RDWR)
            self.running = False
