"""
The errors of proxyws, in one hierarchy.

A L{ConfigError} stops start-up with one readable line.  An error that becomes
an HTTP response to the client carries its status and a short plain-text
explanation (the idea of h11's C{error_status_hint}).
"""


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
    """

    status = 500
    phrase = b"Internal Server Error"

    def __init__(self, detail):
        self.detail = detail
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
