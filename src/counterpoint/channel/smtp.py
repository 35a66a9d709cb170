"""E-mail over SMTP: STARTTLS or implicit TLS, authentication, one kept-open connection.

Each message becomes an ``email.message.EmailMessage`` (text, or multipart/alternative text
and HTML) with ``Message-ID`` derived from the idempotency key, ``Date``, ``From``, ``To``,
``Subject`` and every header the message carries (``List-Unsubscribe``,
``List-Unsubscribe-Post``). The connection is reused across ``send_many`` calls, checked
with NOOP after an idle spell, and renewed after ``max_per_connection`` messages.

SMTP servers do not de-duplicate, so the adapter is not idempotent; the stable Message-ID
lets a receiving system recognise a repeat. Outcomes are mapped in ``_refused`` and
``_unavailable`` (see docs/channels.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email import charset, policy
from email.generator import BytesGenerator
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, parseaddr
from typing import ClassVar, Literal

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator

from counterpoint.channel.base import (
    AdapterConfig,
    AdapterContext,
    DeliveryError,
    OutboundMessage,
    PermanentDeliveryError,
    Receipt,
    TransientDeliveryError,
)
from counterpoint.event.canonical import Channel

__all__ = ["SmtpAdapter", "SmtpConfig", "build_email", "email_bytes", "message_id"]

_IDLE_CHECK_S = 5.0
"""A connection idle for longer is checked with NOOP before the next message."""

_SET_BY_ADAPTER = frozenset(
    {
        "message-id",
        "date",
        "from",
        "to",
        "subject",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)
_UNREACHABLE = frozenset({"connection", "tls", "auth", "greeting"})
_BUILD_POLICY = policy.default.clone(cte_type="7bit")
"""Bodies as quoted-printable or base64 when not ASCII: any server takes them, 8BITMIME
or not."""


class SmtpConfig(AdapterConfig):
    host: str = Field(min_length=1, max_length=255, description="SMTP server name or address")
    port: int = Field(587, ge=1, le=65535, description="587 for STARTTLS, 465 for TLS")
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="STARTTLS upgrade, implicit TLS, or plain (local relays only)"
    )
    username: str | None = Field(None, max_length=320, description="AUTH user (optional)")
    password: SecretStr | None = Field(None, description="AUTH password")
    ca_file: FilePath | None = Field(None, description="PEM CA(s) to trust instead of the system's")
    verify: bool = Field(True, description="verify the server's certificate and name")
    timeout_s: float = Field(30.0, gt=0, le=600, description="per network operation")
    from_address: str = Field(
        max_length=320, description='default sender, e.g. "Brand <news@pharma.example>"'
    )
    helo_name: str | None = Field(None, max_length=255, description="name sent in EHLO")
    max_per_connection: int = Field(1000, ge=1, description="reconnect after this many messages")

    @field_validator("from_address")
    @classmethod
    def _sender(cls, value: str) -> str:
        if _address_problem(parseaddr(value)[1]):
            raise ValueError('write an address such as "Brand <news@pharma.example>"')
        return value

    @model_validator(mode="after")
    def _credentials(self) -> SmtpConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password, or neither")
        if self.username is not None and self.security == "none":
            raise ValueError("credentials are sent only over TLS: set security starttls or tls")
        return self


def _address_problem(address: str) -> str | None:
    """Why ``address`` cannot be an SMTP envelope address (None when it can)."""
    if not address:
        return "no e-mail address"
    if any(c.isspace() or c in '<>"\\,;' or ord(c) < 32 for c in address):
        return "the e-mail address holds characters an address cannot hold"
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or "." not in domain.strip(".") or len(address) > 254:
        return "the e-mail address is not of the form name@domain"
    return None


_LEADING_DOT = re.compile(rb"(?m)^\.")


def _dot_terminated(data: bytes) -> bytes:
    """The DATA body as SMTP sends it: leading dots doubled, CRLF, then ``.`` (RFC 5321)."""
    quoted = _LEADING_DOT.sub(b"..", data)
    if not quoted.endswith(b"\r\n"):
        quoted += b"\r\n"
    return quoted + b".\r\n"


def message_id(idempotency_key: str, sender: str) -> str:
    """``<sha256(key)[:32]@sender's domain>``: the same key always gives the same id."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "counterpoint.invalid"
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}@{domain}>"


def recipient_of(message: OutboundMessage) -> str:
    """The envelope recipient; PermanentDeliveryError (a hard bounce when an address was
    given but cannot be one) otherwise."""
    address = (message.address or "").strip()
    problem = _address_problem(address)
    if problem:
        raise PermanentDeliveryError(
            problem,
            code="no_address" if not address else "invalid_address",
            hard_bounce=bool(address),
        )
    return address


def build_email(message: OutboundMessage, default_sender: str, date: str) -> EmailMessage:
    """The e-mail for ``message``; PermanentDeliveryError when it cannot be built."""
    address = recipient_of(message)
    sender = message.sender or default_sender
    email = EmailMessage(policy=_BUILD_POLICY)
    try:
        email["Message-ID"] = message_id(message.idempotency_key, sender)
        email["Date"] = date
        email["From"] = sender
        email["To"] = address
        email["Subject"] = message.subject or ""
        for name, value in message.headers.items():
            if name.lower() in _SET_BY_ADAPTER:
                raise ValueError(f"the header {name} is set by the adapter")
            email[name] = value
        email.set_content(message.text or "")
        if message.html:
            email.add_alternative(message.html, subtype="html")
    except (ValueError, TypeError, IndexError) as exc:
        raise PermanentDeliveryError(
            f"the e-mail cannot be built: {str(exc)[:160]}", code="bad_message"
        ) from None
    return email


_QP = charset.Charset("utf-8")
_QP.header_encoding = charset.QP
_QP.body_encoding = charset.QP
_WIRE = policy.compat32.clone(linesep="\r\n", max_line_length=0)  # headers fold themselves
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # printable ASCII, no colon (RFC 5322 2.2)


def _line(value: str, what: str) -> str:
    if "\r" in value or "\n" in value:
        raise PermanentDeliveryError(
            f"the {what} holds a line break (header injection refused)", code="bad_message"
        )
    return value


def _header_value(name: str, value: str) -> str:
    """The value as it may stand in a header: short ASCII as is; anything else RFC 2047
    encoded and folded (CRLF, continuation lines), so that no line passes 998 characters."""
    _line(value, f"header {name}" if name != "Subject" else "subject")
    if value.isascii() and len(value) + len(name) < 900:
        return value
    charset_name = "us-ascii" if value.isascii() else "utf-8"
    return Header(value, charset_name, header_name=name).encode(linesep="\r\n")


def email_bytes(message: OutboundMessage, default_sender: str, date: str) -> tuple[bytes, str]:
    """The e-mail for ``message`` as it goes on the wire (CRLF), and its Message-ID.

    The fast path builds it with the ``email`` package's compat32 classes (about four times
    faster than ``EmailMessage``, which parses every header): headers checked for line breaks
    and encoded (RFC 2047) when not ASCII, both parts quoted-printable UTF-8. Addresses that
    are not ASCII need SMTPUTF8 and take ``build_email``.
    """
    address = recipient_of(message)
    sender = message.sender or default_sender
    name, sender_address = parseaddr(_line(sender, "sender"))
    if not (address.isascii() and sender_address.isascii()) or not sender_address:
        email = build_email(message, default_sender, date)
        international = not (address.isascii() and sender_address.isascii())
        return SmtpAdapter.flatten(email, international), str(email["Message-ID"])
    text = MIMEText(message.text or "", "plain", _QP)  # type: ignore[arg-type]
    root: Message
    if message.html:
        root = MIMEMultipart("alternative")
        html = MIMEText(message.html, "html", _QP)  # type: ignore[arg-type]
        for part in (text, html):
            del part["MIME-Version"]
            root.attach(part)
    else:
        root = text
    mid = message_id(message.idempotency_key, sender)
    root["Message-ID"] = mid
    root["Date"] = date
    root["From"] = formataddr((name, sender_address), charset="utf-8") if name else sender_address
    root["To"] = address
    root["Subject"] = _header_value("Subject", message.subject or "")
    for header, value in message.headers.items():
        if header.lower() in _SET_BY_ADAPTER or not _HEADER_NAME.match(header):
            raise PermanentDeliveryError(
                f"the e-mail cannot be built: the header {header[:40]!r} is set by the adapter"
                " or is not a header name",
                code="bad_message",
            )
        root[header] = _header_value(header, value)
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=_WIRE).flatten(root)
    data = out.getvalue()
    if any(len(line) > 998 for line in data.split(b"\r\n")):
        raise PermanentDeliveryError(
            "the e-mail cannot be built: a header line would pass 998 characters",
            code="bad_message",
        )
    return data, mid


@dataclass(slots=True)
class _Prepared:
    message: OutboundMessage
    data: bytes
    recipient: str
    id: str


class SmtpAdapter:
    """Sends e-mail through one SMTP server over a connection kept between batches."""

    name: ClassVar[str] = "smtp"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.CAMPAIGN_EMAIL, Channel.REP_EMAIL})
    idempotent: ClassVar[bool] = False
    Config: ClassVar[type[AdapterConfig]] = SmtpConfig

    def __init__(self, config: SmtpConfig, context: AdapterContext) -> None:
        self.config = config
        self._context = context
        self._envelope_from = parseaddr(config.from_address)[1]
        self._smtp: smtplib.SMTP | None = None
        self._on_connection = 0
        self._last_used = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SmtpAdapter(host={self.config.host!r}, port={self.config.port})"

    # --- sending -----------------------------------------------------------------------------

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[Receipt | DeliveryError]:
        date = format_datetime(self._context.clock.now())
        results: list[Receipt | DeliveryError] = []
        down: DeliveryError | None = None
        with self._lock:
            for message in messages:
                prepared = self._prepare(message, date)
                if isinstance(prepared, DeliveryError):
                    results.append(prepared)
                elif down is not None:
                    results.append(
                        TransientDeliveryError(f"not attempted: {down.reason}", code=down.code)
                    )
                else:
                    result = self._deliver(prepared)
                    if isinstance(result, TransientDeliveryError) and result.code in _UNREACHABLE:
                        down = result
                    results.append(result)
        return results

    def _prepare(self, message: OutboundMessage, date: str) -> _Prepared | DeliveryError:
        if message.channel not in self.channels:
            return PermanentDeliveryError(
                f"the smtp adapter does not carry {message.channel}", code="channel"
            )
        try:
            data, mid = email_bytes(message, self.config.from_address, date)
        except DeliveryError as exc:
            return exc
        recipient = (message.address or "").strip()
        return _Prepared(message, data, recipient, mid)

    def _deliver(self, prepared: _Prepared) -> Receipt | DeliveryError:
        """One message; a connection found closed before MAIL FROM is renewed once."""
        for attempt in (1, 2):
            try:
                smtp, reused = self._connection()
            except _UnavailableError as exc:
                return exc.error
            try:
                return self._transaction(smtp, prepared)
            except _StaleConnectionError as stale:
                self._drop()
                if not reused or attempt == 2:
                    return TransientDeliveryError(
                        f"the connection failed before the message was sent ({stale})",
                        code="connection",
                    )
        raise AssertionError("unreachable")  # pragma: no cover

    def _transaction(self, smtp: smtplib.SMTP, prepared: _Prepared) -> Receipt | DeliveryError:
        """MAIL, RCPT, DATA on an open connection. Raises _StaleConnectionError when MAIL
        FROM finds the connection gone (nothing of this message was sent yet)."""
        international = not (prepared.recipient.isascii() and self._envelope_from.isascii())
        options = ["SMTPUTF8", "BODY=8BITMIME"] if international else []
        if international and not smtp.has_extn("smtputf8"):
            return PermanentDeliveryError(
                "the server does not accept internationalised addresses", code="smtputf8"
            )
        stage = "MAIL"
        try:
            code, _ = smtp.mail(self._envelope_from, options)
            if code == 421:
                raise _StaleConnectionError("the server is closing the connection (421)")
            if code != 250:
                return self._refused(smtp, stage, code)
            stage = "RCPT"
            code, _ = smtp.rcpt(prepared.recipient)
            if code not in (250, 251):
                return self._refused(smtp, stage, code)
            stage = "DATA"
            smtp.putcmd("data")
            code, _ = smtp.getreply()
            if code != 354:
                return self._refused(smtp, stage, code)
            smtp.send(_dot_terminated(prepared.data))
            stage = "END"  # the whole message is with the server: only its answer is missing
            code, _ = smtp.getreply()
            if code != 250:
                return self._refused(smtp, "DATA", code)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            if stage == "MAIL":
                raise _StaleConnectionError(_os_reason(exc)) from None
            self._drop()
            if stage == "END":
                # The server may have accepted it: sending it again could deliver it twice.
                return PermanentDeliveryError(
                    f"the connection was lost after the message was sent, before the server "
                    f"answered ({type(exc).__name__}); whether it was accepted is unknown, so "
                    "it is not sent again automatically (replay it if it did not arrive)",
                    code="outcome_unknown",
                )
            return TransientDeliveryError(
                f"the connection was lost during {stage} ({type(exc).__name__}); "
                "the message was not accepted",
                code="disconnected",
            )
        self._used()
        return Receipt(provider_id=prepared.id)

    @staticmethod
    def flatten(email: EmailMessage, international: bool) -> bytes:
        return email.as_bytes(policy=policy.SMTPUTF8 if international else policy.SMTP)

    def _refused(self, smtp: smtplib.SMTP, stage: str, code: int) -> DeliveryError:
        """Map a refusal: 4xx at any stage transient; 5xx on RCPT a hard bounce; 5xx on MAIL
        or DATA permanent (the message, not the address)."""
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()
        text = f"the server refused {stage} with {code}"
        if 400 <= code < 500:
            if code == 421:
                self._drop()
            return TransientDeliveryError(text, code=str(code))
        if stage == "RCPT":
            return PermanentDeliveryError(
                f"the server refused the recipient with {code}", code=str(code), hard_bounce=True
            )
        return PermanentDeliveryError(text, code=str(code))

    # --- the connection ----------------------------------------------------------------------

    def _connection(self) -> tuple[smtplib.SMTP, bool]:
        """The open connection (checked when idle) or a new one; and whether it is reused."""
        smtp = self._smtp
        if smtp is not None and self._on_connection >= self.config.max_per_connection:
            self._quit()
            smtp = None
        if smtp is not None and time.monotonic() - self._last_used > _IDLE_CHECK_S:
            try:
                alive = smtp.noop()[0] == 250
            except (smtplib.SMTPException, OSError):
                alive = False
            if not alive:
                self._drop()
                smtp = None
        if smtp is not None:
            return smtp, True
        self._smtp = self._connect()
        self._on_connection = 0
        self._last_used = time.monotonic()
        return self._smtp, False

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        where = f"{cfg.host}:{cfg.port}"
        context = self._tls_context() if cfg.security != "none" else None
        try:
            if cfg.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, cfg.helo_name, timeout=cfg.timeout_s, context=context
                )
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, cfg.helo_name, timeout=cfg.timeout_s)
        except ssl.SSLError as exc:
            raise _unavailable(f"TLS with {where} failed: {exc.reason or exc}", "tls") from None
        except smtplib.SMTPConnectError as exc:
            raise _unavailable(
                f"{where} refused the session ({exc.smtp_code})", "greeting"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise _unavailable(
                f"could not connect to {where}: {_os_reason(exc)}", "connection"
            ) from None
        try:
            self._open_session(smtp, context)
        except BaseException:
            _close(smtp)
            raise
        return smtp

    def _open_session(self, smtp: smtplib.SMTP, context: ssl.SSLContext | None) -> None:
        cfg = self.config
        where = f"{cfg.host}:{cfg.port}"
        try:
            smtp.ehlo()
            if cfg.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
        except smtplib.SMTPNotSupportedError:
            raise _unavailable(f"{where} does not offer STARTTLS", "tls") from None
        except ssl.SSLError as exc:
            raise _unavailable(f"TLS with {where} failed: {exc.reason or exc}", "tls") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise _unavailable(
                f"the session with {where} failed: {_os_reason(exc)}", "connection"
            ) from None
        if cfg.username is None or cfg.password is None:
            return
        try:
            smtp.login(cfg.username, cfg.password.get_secret_value())
        except smtplib.SMTPAuthenticationError as exc:
            raise _unavailable(
                f"{where} refused the credentials of {cfg.username!r} ({exc.smtp_code}); "
                "check username and password",
                "auth",
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise _unavailable(
                f"authentication with {where} failed ({type(exc).__name__}); "
                "check that the server offers AUTH over this connection",
                "auth",
            ) from None

    def _tls_context(self) -> ssl.SSLContext:
        cafile = str(self.config.ca_file) if self.config.ca_file else None
        context = ssl.create_default_context(cafile=cafile)
        if not self.config.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _used(self) -> None:
        self._on_connection += 1
        self._last_used = time.monotonic()
        if self._on_connection >= self.config.max_per_connection:
            self._quit()

    def _quit(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                _close(smtp)

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            _close(smtp)

    def close(self) -> None:
        with self._lock:
            self._quit()


class _StaleConnectionError(Exception):
    """The kept connection turned out closed before this message's MAIL FROM."""


class _UnavailableError(Exception):
    def __init__(self, error: TransientDeliveryError) -> None:
        super().__init__(error.reason)
        self.error = error


def _unavailable(reason: str, code: str) -> _UnavailableError:
    return _UnavailableError(TransientDeliveryError(reason, code=code))


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return (str(exc) or type(exc).__name__)[:160]


def _close(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        smtp.close()
