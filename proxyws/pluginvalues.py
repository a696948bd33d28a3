"""
The values plugins deal in: what they see of requests, responses and
websockets (L{PluginRequest}, L{PluginResponse}, L{WebSocketConnection},
L{Message}) and what they answer (L{Response}, L{Identity}, L{Close},
L{DROP}).  Plugin authors import them from L{proxyws.plugins} (the websocket
ones from L{proxyws.wsmessages} too).
"""

import json
import re
import uuid

import attr
from twisted.web.http import RESPONSES, datetimeToString

# ---------------------------------------------------------------------------
# What plugins return.
# ---------------------------------------------------------------------------


class _Drop:
    """
    The type of L{DROP}.
    """

    __slots__ = ()

    def __repr__(self):
        return "DROP"


# A websocket filter's answer: drop the message.
DROP = _Drop()

# A filter's answer: let it pass (L{None}, named for readability).
PASS = None

# A field name (RFC 9110 5.6.2), and a value without control characters
# that would split a head.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")


def _field(name, value):
    """
    A header field as bytes, checked so that it cannot split a head.

    @raise ValueError: for a name that is not a token or a value with a
        control character.
    """
    name = name.encode("ascii") if isinstance(name, str) else name
    value = value.encode("utf-8") if isinstance(value, str) else value
    if not isinstance(name, bytes) or not _TOKEN.fullmatch(name):
        raise ValueError("{!r} is not a header field name".format(name))
    if not isinstance(value, bytes) or not _VALUE.fullmatch(value):
        raise ValueError("{!r} is not a header field value".format(value))
    return name, value


@attr.s(frozen=True, slots=True)
class Response:
    """
    An answer a plugin gives a request instead of the backend.

    @ivar code: the status, 200 to 599.
    @ivar body: the body (L{bytes}).
    @ivar headers: C{(name, value)} pairs, L{str} or L{bytes}; C{Date} and
        C{Content-Length} are added.
    @ivar phrase: the reason phrase, or L{None} for the usual one.
    """

    code = attr.ib()
    body = attr.ib(default=b"")
    headers = attr.ib(default=(), converter=tuple)
    phrase = attr.ib(default=None)

    @classmethod
    def text(cls, code, text, headers=()):
        """
        A plain-text answer.
        """
        return cls(
            code,
            text.encode("utf-8"),
            (("Content-Type", "text/plain; charset=utf-8"),) + tuple(headers),
        )

    @classmethod
    def json(cls, code, value, headers=()):
        """
        A JSON answer of C{value}.
        """
        body = json.dumps(value, separators=(",", ":")).encode("utf-8")
        return cls(code, body, (("Content-Type", "application/json"),) + tuple(headers))

    @classmethod
    def redirect(cls, location, code=302):
        """
        A redirect to C{location}.
        """
        return cls.text(code, "Moved to {}\n".format(location), (("Location", location),))

    @classmethod
    def error(cls, status, phrase, detail, headers=()):
        """
        An answer in the shape of proxyws's own error pages
        (L{proxyws.errors.errorPage}): C{"401 Unauthorized\\n\\n" +
        detail}.
        """
        text = "{} {}\n\n{}\n".format(status, phrase, detail)
        return cls(status, text.encode("utf-8"), tuple(headers) + (
            ("Content-Type", "text/plain; charset=utf-8"),
        ))


def checkResponse(response):
    """
    Check that a plugin's L{Response} can be written.

    @return: C{(phrase, fields, body)} as bytes.
    @raise ValueError: for a status out of range, a field that could split
        the head, or a body or phrase of the wrong type.
    """
    code = response.code
    if not isinstance(code, int) or isinstance(code, bool) or not 200 <= code <= 599:
        raise ValueError("{!r} is not a final status".format(code))
    fields = [_field(name, value) for name, value in response.headers]
    body = response.body.encode("utf-8") if isinstance(response.body, str) else response.body
    if not isinstance(body, bytes):
        raise ValueError("the body {!r} is not bytes or text".format(body))
    phrase = response.phrase or RESPONSES.get(code, b"Unknown")
    phrase = phrase.encode("latin-1") if isinstance(phrase, str) else phrase
    if not isinstance(phrase, bytes) or not _VALUE.fullmatch(phrase) or b"\t" in phrase:
        raise ValueError("{!r} is not a reason phrase".format(phrase))
    return phrase, fields, body


def writeResponse(request, response):
    """
    Answer C{request} with a plugin's L{Response}.

    @raise ValueError: when it cannot be written (see L{checkResponse}),
        before anything is written.
    """
    code = response.code
    phrase, fields, body = checkResponse(response)
    request.setResponseCode(code, phrase)
    headers = request.responseHeaders
    headers.setRawHeaders(b"Date", [datetimeToString()])
    for name, value in fields:
        headers.addRawHeader(name, value)
    if code not in (204, 304):
        headers.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
        request.write(body)
    request.finish()


@attr.s(frozen=True, slots=True)
class Identity:
    """
    Who the client is, as an authenticator found.

    @ivar user: the user name (goes to the access log's C{%u}).
    @ivar claims: what else the authenticator knows (a JWT's claims).
    """

    user = attr.ib()
    claims = attr.ib(factory=dict, eq=False, hash=False)


# Close codes a filter may close a websocket with (RFC 6455 7.4): the
# defined ones an endpoint may send, and 3000-4999 (registered and
# private).
_CLOSE_CODES = frozenset([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014])


@attr.s(frozen=True, slots=True)
class Close:
    """
    A websocket filter's answer: close both legs with this code and reason.

    @ivar code: 1000-1003, 1007-1014 or 3000-4999.
    @ivar reason: at most 123 bytes of UTF-8.
    """

    code = attr.ib()
    reason = attr.ib(default="")

    @code.validator
    def _checkCode(self, attribute, code):
        if code not in _CLOSE_CODES and not (isinstance(code, int) and 3000 <= code <= 4999):
            raise ValueError("{!r} is not a close code a filter may send".format(code))

    @reason.validator
    def _checkReason(self, attribute, reason):
        if not isinstance(reason, str) or len(reason.encode("utf-8")) > 123:
            raise ValueError("a close reason is text of at most 123 bytes")


# ---------------------------------------------------------------------------
# What plugins see.
# ---------------------------------------------------------------------------


class PluginRequest:
    """
    A request as plugins see it.

    @ivar route: the L{proxyws.values.Route} it took, or L{None} (the
        route's C{auth} sees it before dispatch).
    @ivar target: the backend request target (path and query); a request
        filter may set another one starting with C{/}.
    @ivar identity: the L{Identity} an authenticator found, or L{None}.
    @ivar state: a L{dict} the route's plugins share for this request (and
        its websocket).
    """

    __slots__ = ("_request", "route", "target", "identity", "state", "_subject")

    def __init__(self, request, route=None, target=None):
        """
        @param request: the L{proxyws.site.ProxyRequest}.
        """
        self._request = request
        self.route = route
        self.target = target
        self.identity = None
        self.state = {}
        self._subject = False
        if request.remoteUser is not None:
            self.identity = Identity(request.remoteUser.decode("utf-8", "surrogateescape"))

    @property
    def method(self):
        """
        The method, such as C{b"GET"}.
        """
        return self._request.method

    @property
    def uri(self):
        """
        The request target as the client sent it (path and query).
        """
        return self._request.uri

    @property
    def headers(self):
        """
        The client's request headers, a L{twisted.web.http_headers.Headers}
        whose changes reach the backend.
        """
        return self._request.requestHeaders

    @property
    def clientAddress(self):
        """
        The client's IP address as text (behind trusted proxies, the one
        they name).
        """
        return self._request.clientHost

    @property
    def scheme(self):
        """
        C{b"https"} or C{b"http"}: how the client reached the proxy.
        """
        return self._request.scheme

    @property
    def host(self):
        """
        The C{Host} header's value, or L{None}.
        """
        return self._request.hostHeader

    @property
    def webSocket(self):
        """
        Whether it is a websocket upgrade.
        """
        from .resource import isWebSocketUpgrade

        return isWebSocketUpgrade(self._request)

    @property
    def user(self):
        """
        The authenticated user's name, or L{None}.
        """
        return self.identity.user if self.identity is not None else None

    def authenticated(self, identity):
        """
        An authenticator found who the client is: later plugins see it, and
        the access log's C{%u} shows its user.

        @param identity: an L{Identity}.
        """
        self.identity = identity
        self._request.remoteUser = identity.user.encode("utf-8", "surrogateescape")

    @property
    def tlsSubject(self):
        """
        The subject (RFC 4514) of the client certificate the TLS listener
        verified, or L{None}.
        """
        if self._subject is False:
            from .tls import peerSubject

            channel = self._request.channel
            self._subject = peerSubject(channel.transport) if channel is not None else None
        return self._subject


class PluginResponse:
    """
    A backend's response head as response filters see it.

    @ivar code: the status.
    @ivar phrase: the reason phrase (L{bytes}).
    @ivar fields: the C{(name, value)} fields the client gets, in order.
    """

    __slots__ = ("code", "phrase", "fields")

    def __init__(self, code, phrase, fields):
        self.code = code
        self.phrase = phrase
        self.fields = fields

    @property
    def headers(self):
        """
        This response: its field methods are those of Twisted's
        L{Headers}.
        """
        return self

    def getRawHeaders(self, name, default=None):
        """
        @return: the values of the fields named C{name}, or C{default}.
        """
        name = _lower(name)
        values = [value for key, value in self.fields if key.lower() == name]
        return values or default

    def hasHeader(self, name):
        """
        @return: whether a field is named C{name}.
        """
        name = _lower(name)
        return any(key.lower() == name for key, _ in self.fields)

    def removeHeader(self, name):
        """
        Remove every field named C{name}.
        """
        name = _lower(name)
        self.fields = [field for field in self.fields if field[0].lower() != name]

    def setRawHeaders(self, name, values):
        """
        Replace the fields named C{name} with one field for each value, in
        the place of the first.
        """
        fields = [_field(name, value) for value in values]
        lower = _lower(name)
        out, placed = [], False
        for field in self.fields:
            if field[0].lower() != lower:
                out.append(field)
            elif not placed:
                out.extend(fields)
                placed = True
        if not placed:
            out.extend(fields)
        self.fields = out

    def addRawHeader(self, name, value):
        """
        Add a field at the end.
        """
        self.fields = self.fields + [_field(name, value)]


def _lower(name):
    return (name.encode("ascii") if isinstance(name, str) else name).lower()


# ---------------------------------------------------------------------------
# What websocket filters see (proxyws.wsmessages).
# ---------------------------------------------------------------------------


class Message:
    """
    One whole websocket message, as websocket filters see it.

    @ivar direction: C{"in"} (client to backend) or C{"out"} (backend to
        client).
    @ivar binary: whether it is a binary message (else text).
    @ivar payload: its payload, unmasked and inflated (L{bytes}).
    @ivar compressed: whether the sender compressed it.
    """

    __slots__ = ("direction", "binary", "payload", "compressed")

    def __init__(self, direction, binary, payload, compressed=False):
        self.direction = direction
        self.binary = binary
        self.payload = payload
        self.compressed = compressed

    @property
    def text(self):
        """
        The payload decoded as UTF-8.

        @raise UnicodeDecodeError: when it is not UTF-8.
        """
        return self.payload.decode("utf-8")

    def replace(self, payload, binary=None):
        """
        A message to send instead of this one, in its direction.

        @param payload: L{str} (a text message) or L{bytes}.
        @param binary: the type for L{bytes}: this message's by default.
        @return: a new L{Message}.
        """
        if isinstance(payload, str):
            return Message(self.direction, False, payload.encode("utf-8"), self.compressed)
        return Message(
            self.direction, self.binary if binary is None else binary, payload, self.compressed
        )

    def __repr__(self):
        return "<Message {} {} {!r}>".format(
            self.direction, "binary" if self.binary else "text", self.payload[:40]
        )


class WebSocketConnection:
    """
    A websocket as its filters see it.

    @ivar id: a random identifier (32 hex digits).
    @ivar request: the L{proxyws.plugins.PluginRequest} of the upgrade.
    @ivar subprotocol: the subprotocol the backend chose, or L{None}.
    @ivar route: the L{proxyws.values.Route}.
    @ivar clock: the reactor, as an C{IReactorTime}.
    @ivar state: a L{dict} for the filters' state of this connection.
    """

    __slots__ = ("id", "request", "subprotocol", "route", "clock", "state")

    def __init__(self, request, subprotocol, route, clock):
        self.id = uuid.uuid4().hex
        self.request = request
        self.subprotocol = subprotocol
        self.route = route
        self.clock = clock
        self.state = {}
