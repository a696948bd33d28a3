"""
The errors of proxyws, in one hierarchy, and the error page that answers
them.

A L{ConfigError} stops start-up with one readable line.  An error that becomes
an HTTP response to the client carries its status and a short plain-text
explanation (the idea of h11's C{error_status_hint}); L{errorPage} sends it.
The other errors say what went wrong with a backend connection or a
websocket stream, for the module that turns them into a status or a close
code.
"""

from twisted.web.http import datetimeToString


class ProxyError(Exception):
    """
    Base class of every error proxyws raises on purpose.
    """


class ConfigError(ProxyError):
    """
    A configuration file that cannot be used.

    C{str(error)} is the one line shown to the operator::

        proxyws.toml: route[2].backend: 'htp://x' is not a URL with scheme
        http, https, ws or wss

    @ivar filename: the file the setting came from.
    @ivar keyPath: where in the file, such as C{"route[2].backend"}, or
        C{None} when the problem is with the file as a whole.
    @ivar message: what is wrong, and what was expected.
    """

    def __init__(self, filename, keyPath, message):
        self.filename = filename
        self.keyPath = keyPath
        self.message = message
        super().__init__(str(self))

    def __str__(self):
        """
        @return: C{"file: key.path: message"}.
        """
        if self.keyPath:
            return "{}: {}: {}".format(self.filename, self.keyPath, self.message)
        return "{}: {}".format(self.filename, self.message)


class ResponseError(ProxyError):
    """
    A failure that the proxy answers itself, with a status and a short text.

    @cvar status: the HTTP status code sent to the client.
    @cvar phrase: the reason phrase of that status.
    @ivar detail: a short plain-text explanation, safe to show to clients.
    @ivar fields: C{(name, value)} header fields the answer carries besides
        the error page's own (such as C{Retry-After}).
    @ivar kind: for a failure of the backend, its kind as the metrics count
        it (a key of L{proxyws.metrics.BACKEND_ERROR_KINDS}), else L{None}.
    """

    status = 500
    phrase = b"Internal Server Error"
    fields = ()
    kind = None

    def __init__(self, detail, kind=None):
        self.detail = detail
        if kind is not None:
            self.kind = kind
        super().__init__(detail)


class BadGateway(ResponseError):
    """
    The backend refused the connection, was unreachable, or broke the protocol.
    """

    status = 502
    phrase = b"Bad Gateway"


class GatewayTimeout(ResponseError):
    """
    The backend did not connect, answer or send data within its timeout.
    """

    status = 504
    phrase = b"Gateway Timeout"


class NotFound(ResponseError):
    """
    No route matches the request.
    """

    status = 404
    phrase = b"Not Found"


class BadRequest(ResponseError):
    """
    The request cannot be proxied as it stands (for example an invalid path).
    """

    status = 400
    phrase = b"Bad Request"


class ContentTooLarge(ResponseError):
    """
    The request body is larger than its route takes (C{max_body_size}).
    """

    status = 413
    phrase = b"Content Too Large"


class MisdirectedRequest(ResponseError):
    """
    The request names a host this server does not serve (RFC 9110 15.5.20).
    """

    status = 421
    phrase = b"Misdirected Request"


class Unauthorized(ResponseError):
    """
    The route needs a user name and password that the request lacks.
    """

    status = 401
    phrase = b"Unauthorized"


class Forbidden(ResponseError):
    """
    The request is not allowed (for example an Origin not on the allow-list).
    """

    status = 403
    phrase = b"Forbidden"


class ServiceUnavailable(ResponseError):
    """
    The proxy is shutting down and takes no new requests.
    """

    status = 503
    phrase = b"Service Unavailable"


class UpstreamUnavailable(ServiceUnavailable):
    """
    No member of an upstream can take the request: every member is down,
    draining (for a request without a sticky member) or already tried.
    The client gets 503 with C{Retry-After: retryAfter}.

    @ivar upstream: the upstream's name.
    @ivar retryAfter: whole seconds after which a member may be back (at
        least 1).
    """

    def __init__(self, upstream, retryAfter):
        ServiceUnavailable.__init__(
            self, "no member of upstream {} is available".format(upstream)
        )
        self.upstream = upstream
        self.retryAfter = retryAfter
        self.fields = ((b"Retry-After", b"%d" % retryAfter),)


class AccessRuleError(ProxyError, ValueError):
    """
    An address rule that cannot be used.

    C{str(error)} is the message alone, such as C{"'10.0.0.300/8' is not an IP
    address, a CIDR such as '10.0.0.0/8', or 'all'"}.

    @ivar keyPath: where the bad value is, such as C{"access.allow[2]"}.
    @ivar message: what is wrong, and what was expected.
    """

    def __init__(self, keyPath, message):
        self.keyPath = keyPath
        self.message = message
        super().__init__(message)


class BadResponse(ProxyError):
    """
    The backend's answer is not an HTTP/1.1 response the proxy can relay:
    the client gets 502 if nothing was sent to it yet.
    """


class ConnectionLost(ProxyError):
    """
    The backend connection closed before the response was complete.

    @ivar responded: whether any of the response had arrived.
    @ivar tlsFailed: whether the TLS handshake or the certificate check
        failed.
    """

    def __init__(self, responded, reason=None, tlsFailed=False):
        """
        @param reason: the L{twisted.python.failure.Failure} the connection
            was lost with, or L{None}.
        """
        detail = reason.getErrorMessage() if reason is not None else ""
        ProxyError.__init__(
            self, "the backend closed the connection" + (": " + detail if detail else "")
        )
        self.responded = responded
        self.tlsFailed = tlsFailed


class MessageTooBig(ProxyError):
    """
    A websocket data frame makes its message larger than the route allows.

    @ivar offset: where that frame's header starts in the bytes fed, or -1
        when part of it came with earlier bytes.
    """

    def __init__(self, offset):
        ProxyError.__init__(self, offset)
        self.offset = offset


class BadFrame(ProxyError, ValueError):
    """
    A websocket frame header that no peer may send (close 1002).

    @ivar offset: where that frame's header starts in the bytes fed, or -1
        when part of it came with earlier bytes.
    """

    offset = -1


class BadArgument(ProxyError, ValueError):
    """
    A query argument of the demo backend is malformed or out of range: a
    400 response.
    """


# Run-time routes (the configurable-http-proxy API) and their stores.


class InvalidRoute(ProxyError, ValueError):
    """
    A route given through the API that cannot be used: a target that is not
    a URL proxyws can send requests to.  The API answers it with 400.

    @ivar message: what is wrong, safe to show to the API client.
    """

    status = 400

    def __init__(self, message):
        self.message = message
        super().__init__(message)


class RouteStoreError(ProxyError):
    """
    The route store cannot take a change or cannot be read (its Redis server
    is unreachable, its file cannot be written).  The API answers a change
    it cannot store with 503, which API clients such as JupyterHub retry.
    """

    status = 503


# Configuration.


class ConfigProblems(ConfigError):
    """
    Every problem found in one configuration file.

    C{str(error)} is the first problem's line -- with one problem, exactly
    the line of that problem -- and C{filename}, C{keyPath} and C{message}
    are the first problem's.

    @ivar problems: a L{list} of L{ConfigError}, one per problem, each one
        line, in the order of the file.
    """

    def __init__(self, problems):
        """
        @param problems: the problems, at least one.
        """
        self.problems = list(problems)
        first = self.problems[0]
        super().__init__(first.filename, first.keyPath, first.message)


class Broken(ProxyError):
    """
    A table has problems, already recorded: skip what depends on it.
    """


# Requests from clients (proxyws.framing, proxyws.bodies).

# The reason phrases of the statuses the request parser refuses with (RFC 9110
# section 15).
PHRASES = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    505: b"HTTP Version Not Supported",
}


class HeadError(ResponseError):
    """
    A request head the proxy refuses; the client gets C{status} and the
    connection is closed.

    @ivar status: 400, 414, 431, 501 or 505.
    @ivar phrase: its reason phrase.
    @ivar detail: what was wrong, safe to show to the client.
    """

    def __init__(self, status, detail):
        ResponseError.__init__(self, detail)
        self.status = status
        self.phrase = PHRASES[status]


class BodyError(ResponseError):
    """
    A body that is not framed as it must be (400), or larger than its limit
    (413).  For a backend's response the proxy answers 502 or aborts.

    @ivar status: 400 or 413.
    @ivar phrase: its reason phrase.
    @ivar detail: what was wrong.
    """

    def __init__(self, status, detail):
        ResponseError.__init__(self, detail)
        self.status = status
        self.phrase = PHRASES[status]


# Backends.


class BadExtension(BadResponse):
    """
    The backend's C{Sec-WebSocket-Extensions} answer is not a valid
    acceptance of one of the offers it was made.
    """


# Plugins (proxyws.plugins): a plugin's failure fails what it was called
# for, and nothing else.


class PluginFailed(ResponseError):
    """
    A plugin raised, returned what its interface does not allow, or its
    L{Deferred} failed.  The failure was logged (once, with the plugin's name
    and the traceback); the request gets 500, a websocket is closed with
    1011.

    @ivar plugin: the plugin's name.
    """

    status = 500
    phrase = b"Internal Server Error"

    def __init__(self, plugin, detail="the request could not be handled (plugin error)"):
        ResponseError.__init__(self, detail)
        self.plugin = plugin


class PluginTimeout(PluginFailed):
    """
    A plugin's L{Deferred} did not fire in time: the request gets 504, a
    websocket is closed with 1011.
    """

    status = 504
    phrase = b"Gateway Timeout"

    def __init__(self, plugin):
        PluginFailed.__init__(self, plugin, "a plugin of this route did not answer in time")


class PluginOptionError(ProxyError, ValueError):
    """
    A plugin's factory was given an option it cannot use.  proxyws turns it
    into a L{ConfigError} naming the file and the whole key path, such as
    C{proxyws.toml: route[0].plugins[1].set.X-Frame-Options: 3 is not a
    header value}.

    @ivar key: the option's key path inside the plugin's table, such as
        C{"set.X-Frame-Options"}, or L{None} for the table as a whole.
    @ivar message: what is wrong (naming the bad value with C{!r}), what was
        expected, and the fix.
    """

    def __init__(self, key, message):
        self.key = key
        self.message = message
        super().__init__("{}: {}".format(key, message) if key else message)


def errorPage(request, error):
    """
    Answer C{request} with the status of a L{ResponseError} and a short
    plain-text body saying what went wrong.

    @param request: a L{proxyws.site.ProxyRequest} whose response has not
        started.
    @param error: a L{ResponseError}; its C{fields} go with the answer.
    """
    body = "{} {}\n\n{}\n".format(
        error.status, error.phrase.decode("ascii"), error.detail
    ).encode("utf-8")
    request.setResponseCode(error.status, error.phrase)
    headers = request.responseHeaders
    headers.setRawHeaders(b"Date", [datetimeToString()])
    headers.setRawHeaders(b"Content-Type", [b"text/plain; charset=utf-8"])
    headers.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
    for name, value in error.fields:
        headers.addRawHeader(name, value)
    request.write(body)
    request.finish()
