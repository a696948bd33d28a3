"""
The C{ws-audit} plugin: a JSON-lines log of every websocket message, with
the values of chosen JSON fields redacted::

    plugins = [{ name = "ws-audit", path = "ws-audit.log",
                 redact = ["password", "token"] }]

Each websocket gives an C{open} line, one C{message} line per message and a
C{close} line, each a JSON object on its own line, written with one
C{write} to a file opened for appending (as the access log is), so lines
from several worker processes never interleave.  A text message that is
JSON is logged as the value it holds (C{"json"}), with every field named in
C{redact}, at any depth, replaced by C{"[redacted]"}; other text as a string
(C{"text"}), cut after C{max_payload} characters; binary payloads as their
size only, or in base64 with C{binary = "base64"}.  Messages pass unchanged.
Rotate the file with C{copytruncate}: the plugin keeps it open.
"""

import base64
import datetime
import json
import os

from zope.interface import implementer

from ..accesslog import AccessLog
from ..errors import PluginOptionError
from ..interfaces import IWebSocketFilter

# The text redacted values are replaced with.
REDACTED = "[redacted]"

# Characters of a text payload logged, by default.
DEFAULT_MAX_PAYLOAD = 4096


def redacted(value, names):
    """
    C{value} with the value of every field named in C{names} (lower-cased),
    at any depth, replaced by L{REDACTED}.
    """
    if isinstance(value, dict):
        return {
            key: REDACTED if key.lower() in names else redacted(item, names)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redacted(item, names) for item in value]
    return value


def _now(clock):
    return datetime.datetime.fromtimestamp(clock.seconds(), datetime.timezone.utc).isoformat(
        timespec="milliseconds"
    ).replace("+00:00", "Z")


@implementer(IWebSocketFilter)
class AuditLog:
    """
    Writes a line per websocket event.

    @ivar path: the file, or C{"-"} for standard output.
    """

    def __init__(self, path, redact=(), maxPayload=DEFAULT_MAX_PAYLOAD, binary="size", log=None):
        """
        @param redact: field names whose values are not logged.
        @param binary: C{"size"} or C{"base64"}.
        @param log: an L{proxyws.interfaces.IAccessLog} to write to instead
            of opening C{path} at the first line.
        """
        self.path = path
        self.redact = frozenset(name.lower() for name in redact)
        self.maxPayload = maxPayload
        self.binary = binary
        self._log = log

    def _write(self, connection, event, **fields):
        line = {"time": _now(connection.clock), "event": event, "connection": connection.id}
        line.update(fields)
        if self._log is None:
            self._log = AccessLog.open(self.path)
        self._log.write(json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n")

    def opened(self, connection):
        """
        Log the opening: route, client, user, path and subprotocol.
        """
        request = connection.request
        self._write(
            connection,
            "open",
            route=connection.route.index,
            client=request.clientAddress,
            user=request.user,
            uri=request.uri.decode("latin-1"),
            subprotocol=connection.subprotocol,
        )

    def message(self, connection, message):
        """
        Log C{message}, and let it pass.
        """
        fields = {"direction": message.direction, "size": len(message.payload)}
        if message.binary:
            fields["type"] = "binary"
            if self.binary == "base64":
                fields["base64"] = base64.b64encode(message.payload).decode("ascii")
        else:
            fields["type"] = "text"
            fields.update(self._text(message.payload))
        self._write(connection, "message", **fields)
        return None

    def _text(self, payload):
        text = payload.decode("utf-8", "replace")
        try:
            value = json.loads(text)
        except ValueError:
            if len(text) > self.maxPayload:
                return {"text": text[: self.maxPayload], "truncated": True}
            return {"text": text}
        return {"json": redacted(value, self.redact) if self.redact else value}

    def closed(self, connection, code, reason):
        """
        Log the close.
        """
        self._write(connection, "close", code=code, reason=reason)

    def __del__(self):
        # A reload builds a new provider: the old one's file closes with it.
        log = getattr(self, "_log", None)
        if isinstance(log, AccessLog):
            log.close()


def auditPlugin(options):
    """
    The C{ws-audit} plugin's factory.

    @param options: a L{proxyws.plugins.PluginOptions}: C{path} (required;
        C{"-"} for standard output), C{redact}, C{max_payload} and
        C{binary} (C{"size"} or C{"base64"}).
    @return: an L{AuditLog}.
    @raise PluginOptionError: for options it cannot use, or a file that
        cannot be opened for appending.
    """
    options.checkKeys("path", "redact", "max_payload", "binary")
    path = options.takeString("path")
    if path != AccessLog.STDOUT:
        path = options.takePath("path")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        except OSError as e:
            raise PluginOptionError(
                "path", "cannot open {!r} for appending: {}".format(path, e.strerror or e)
            ) from None
    binary = options.takeString("binary", "size")
    if binary not in ("size", "base64"):
        raise PluginOptionError("binary", "{!r} is not 'size' or 'base64'".format(binary))
    return AuditLog(
        path,
        redact=options.takeStrings("redact", ()),
        maxPayload=options.takeNumber("max_payload", DEFAULT_MAX_PAYLOAD, integer=True),
        binary=binary,
    )
