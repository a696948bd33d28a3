"""
Pure header rules for the proxy: what is forwarded, what is added, what is
rewritten.

Request headers travel as C{(name, values)} pairs, the shape of Twisted's
C{Headers.getAllRawHeaders()}: one entry per name, the repeated values of the
name (Set-Cookie, for one) kept separate in their order.  Response headers
travel as the backend sent them, C{(name, value)} fields in their order.
"""

from functools import lru_cache

# RFC 9110 section 7.6.1: hop-by-hop headers concern one connection and are
# never forwarded; neither is any header that Connection names, nor any
# Proxy-* header (credentials and settings meant for this proxy).  Upgrade is
# forwarded only by the websocket path, which writes its own.
HOP_BY_HOP = frozenset(
    [
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ]
)

# Headers the proxy sets itself on requests to the backend; a client's own
# values of these are replaced (X-Forwarded-For is extended instead).
_REPLACED_ON_REQUEST = frozenset(
    [b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port"]
)

# Response headers holding a URL of the backend that the client must see as a
# URL of the proxy (Apache ProxyPassReverse rewrites the same three).
URL_HEADERS = frozenset([b"location", b"content-location", b"uri"])

# The fields that frame a message on its connection, which the proxy always
# writes itself.
FRAMING = frozenset([b"content-length", b"transfer-encoding", b"connection"])

# A field name (RFC 9110 5.1 and 5.6.2), as a regular expression.
TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"

# Response fields the client does not get as the backend sent them.
_NOT_RELAYED = HOP_BY_HOP | {b"content-length"}


def connectionTokens(values):
    """
    The lower-cased header names listed by C{Connection} header values.

    @param values: the values of the C{Connection} header, or L{None}.
    @return: a L{frozenset} of L{bytes}.
    """
    if not values:
        return frozenset()
    if len(values) == 1:
        return _tokensOf(values[0])
    return frozenset().union(*map(_tokensOf, values))


# Nearly every message has one Connection field, with one of a few values
# ("keep-alive", "close", "Upgrade"): each is parsed once.  Bounded, so that
# a peer sending new values each time only pushes older ones out.
@lru_cache(maxsize=256)
def _tokensOf(value):
    return frozenset(token.strip().lower() for token in value.split(b","))


def _notCopied(dropped):
    """
    The lower-cased names of client headers never copied to the backend as
    they are: the hop-by-hop ones, those the proxy replaces, and C{dropped}.
    """
    dropped = frozenset(dropped)
    notCopied = _NOT_COPIED.get(dropped)
    if notCopied is None:
        notCopied = _NOT_COPIED[dropped] = HOP_BY_HOP | _REPLACED_ON_REQUEST | dropped
    return notCopied


# dropped -> the result of _notCopied (a route's few sets of names).
_NOT_COPIED = {}


def requestHeaders(
    items,
    clientAddress,
    scheme,
    frontHost,
    frontPort,
    backendHost,
    preserveHost,
    dropped=frozenset(),
    added=(),
):
    """
    The headers to send to the backend for a client's request.

    @param items: the client's headers as C{(name, values)} pairs (a list).
    @param clientAddress: the client's IP address as L{bytes}.
    @param scheme: C{b"http"} or C{b"https"}: how the client reached us.
    @param frontHost: the client's C{Host} header value, or L{None}.
    @param frontPort: the port the client connected to, as L{bytes}.
    @param backendHost: the C{Host} header naming the backend.
    @param preserveHost: send the client's C{Host} rather than the backend's
        (Apache's ProxyPreserveHost).
    @param dropped: lower-cased names of further client headers not to copy.
    @param added: C{(name, values)} pairs of the proxy's own to send.
    @return: a L{list} of C{(name, values)} pairs.
    """
    out = [
        (b"Host", [frontHost if preserveHost and frontHost else backendHost]),
    ]
    notCopied = _notCopied(dropped)
    forwardedFor = None
    connection = None
    for item in items:
        lower = item[0].lower()
        if lower in notCopied or lower.startswith(b"proxy-"):
            if lower == b"x-forwarded-for":
                forwardedFor = b", ".join(item[1]) + b", " + clientAddress
            elif lower == b"connection":
                connection = list(item[1]) if connection is None else connection + list(item[1])
            continue
        out.append(item)
    if connection is not None:
        # What Connection names is hop-by-hop too; it may come before
        # Connection, so it is taken out once every header is seen (in one
        # loop over them, as the names it lists are nearly always hop-by-hop
        # already: keep-alive, close, upgrade).
        named = connectionTokens(connection)
        if not named <= notCopied:
            out[1:] = [item for item in out[1:] if item[0].lower() not in named]
    out.extend(added)
    out.append((b"X-Forwarded-For", [forwardedFor or clientAddress]))
    out.append((b"X-Forwarded-Proto", [scheme]))
    if frontHost:
        out.append((b"X-Forwarded-Host", [frontHost]))
    out.append((b"X-Forwarded-Port", [frontPort]))
    return out


def rewriteURL(value, backendOrigin, frontOrigin, reverse):
    """
    Map a URL of the backend to the URL of the proxy that reaches it
    (Apache's ProxyPassReverse).

    An absolute URL under the backend's origin and path prefix becomes an
    absolute URL under the front origin and prefix; a path-absolute URL
    (C{/base/x}) under the backend path prefix becomes one under the front
    prefix.  Anything else is returned unchanged.

    @param value: the header value.
    @param backendOrigin: C{b"http://backend:port"}, lower case.
    @param frontOrigin: C{b"https://front.example"} as the client named it.
    @param reverse: C{(backendPrefix, frontPrefix)} paths, or L{None}.
    @return: the rewritten value.
    """
    if reverse is None:
        return value
    backendPrefix, frontPrefix = reverse
    if value[:1] == b"/" and value[:2] != b"//":
        if value.startswith(backendPrefix) and backendPrefix != frontPrefix:
            return frontPrefix + value[len(backendPrefix) :]
        return value
    origin = value[: len(backendOrigin)]
    if origin.lower() == backendOrigin:
        path = value[len(backendOrigin) :] or b"/"
        # The origin must end here: "http://b" is not "http://bad.example".
        if path[:1] == b"/" and path.startswith(backendPrefix):
            return frontOrigin + frontPrefix + path[len(backendPrefix) :]
    return value


def responseFields(fields, backendOrigin, frontOrigin, reverse):
    """
    The header fields to send to the client for a backend's response.

    @param fields: the backend's header fields as C{(name, value)} pairs,
        in the order received.
    @param backendOrigin: see L{rewriteURL}.
    @param frontOrigin: see L{rewriteURL}.
    @param reverse: see L{rewriteURL}.
    @return: a L{list} of C{(name, value)} pairs in the same order, without
        the hop-by-hop fields, those C{Connection} names, C{Proxy-*} and
        C{Content-Length} (which the proxy writes from the body it relays),
        the URL fields mapped back.
    """
    out = []
    connection = None
    for field in fields:
        lower = field[0].lower()
        if lower in _NOT_RELAYED or lower.startswith(b"proxy-"):
            if lower == b"connection":
                connection = [field[1]] if connection is None else connection + [field[1]]
            continue
        if lower in URL_HEADERS:
            field = (field[0], rewriteURL(field[1], backendOrigin, frontOrigin, reverse))
        out.append(field)
    if connection is not None:
        # As in requestHeaders: what Connection names goes too, once every
        # field is seen.
        named = connectionTokens(connection)
        if not named <= _NOT_RELAYED:
            out = [field for field in out if field[0].lower() not in named]
    return out


def headerValue(text):
    """
    Text (such as a certificate subject) as a header value, or L{None} when
    it has none or holds control characters that would break the header.
    """
    if text is None:
        return None
    value = text.encode("utf-8")
    if any(byte < 0x20 or byte == 0x7F for byte in value):
        return None
    return value
