"""
The extension points of proxyws.

Each is a small interface; an implementation does one thing, and a wrapper
that adds a feature delegates to another implementation of the same
interface.  Where Twisted has an interface that fits, proxyws uses it
instead: backend TLS settings are C{IOpenSSLClientConnectionCreator}s, the
listener TLS context an C{IOpenSSLServerConnectionCreator}, request bodies
C{IBodyProducer}s, the resources C{IResource}s.
"""

from zope.interface import Attribute, Interface


class IAccessLog(Interface):
    """
    A sink for finished access-log lines.
    """

    def write(line):
        """
        Append one line to the log, whole.

        Failures to write are reported through the operational log and not
        raised: a full disk must not fail the request being logged.

        @param line: One formatted line, ending in C{b"\\n"}.
        @type line: L{bytes}
        """

    def reopen():
        """
        Open the log again at its path (after log rotation moved it).

        @raise OSError: when it cannot be opened; the log keeps its old file.
        """

    def close():
        """
        Release the log's resources; no L{write} may follow.
        """


class IRouter(Interface):
    """
    Chooses the route of each request.
    """

    hosts = Attribute("The virtual hosts (L{proxyws.config.Host}) routes are grouped by.")

    def route(host, target):
        """
        Find the route for a request.

        @param host: the request's C{Host} header value, or L{None}.
        @param target: the request target as received (path and query).
        @return: a L{proxyws.routing.RouteMatch}, or L{None} when no route
            matches.
        @raise proxyws.errors.BadRequest: when the target cannot be
            normalized.
        """

    def hostFor(hostName):
        """
        The virtual host a host name selects.

        @param hostName: a lower-cased host name without port.
        @return: the host's index, or L{None}.
        """


class IRouteHandler(Interface):
    """
    Relays the requests of one route: its plain HTTP requests, or its
    websocket upgrades.  The root resource routes a request, checks its
    access, and hands it to the route's handler.
    """

    route = Attribute("The L{proxyws.values.Route} whose requests it relays.")

    def proxy(request, target, body):
        """
        Relay C{request} to the route's backend and answer it.

        @param request: a L{proxyws.site.ProxyRequest} whose response has
            not started.
        @param target: the request target for the backend (path and
            query), as routing made it.
        @param body: the request's L{proxyws.httpproxy.RequestBody}, taken
            from it, or L{None} when it has no body.
        @return: L{twisted.web.server.NOT_DONE_YET}; the handler answers
            the request, now or later, and errors become responses (it
            raises nothing).
        """


class IGate(Interface):
    """
    Decides whether a request may reach its route's backend, and answers
    those that may not.
    """

    def admit(request, access):
        """
        Let C{request} through, or answer it (403, 401).

        @param request: the client's request.
        @param access: the route's L{proxyws.config.Access}.
        @return: L{True} or L{False}, or a L{Deferred} firing with one of
            them (a password check runs off the reactor thread).
        """


class IBackendPool(Interface):
    """
    Connections to backends, kept alive between requests.
    """

    def connection(backend, connectTimeout, fresh=False):
        """
        Get a connection to C{backend} to send one request on.

        @param backend: a L{proxyws.config.Backend}.
        @param connectTimeout: seconds allowed for a new connection.
        @param fresh: never take an idle connection.
        @return: a L{Deferred} firing with an idle
            L{proxyws.backend.BackendConnection}, or failing with the
            connection error.  Cancelling it gives up waiting.
        """

    def takeIdle(backend):
        """
        Take an idle connection to C{backend}, if one is at hand (asked
        before L{connection}, which the proxy calls when this gives none).

        @param backend: a L{proxyws.config.Backend}.
        @return: an idle L{proxyws.backend.BackendConnection}, or L{None}.
        """

    def release(connection):
        """
        The response on C{connection} is complete and it can take another
        request (the connection calls this).

        @param connection: a L{proxyws.backend.BackendConnection} that this
            pool gave out.
        """

    def lost(connection):
        """
        C{connection} closed, idle or in use: forget it (the connection
        calls this).

        @param connection: a L{proxyws.backend.BackendConnection} of this
            pool.
        """

    def closeIdle():
        """
        Close every idle connection (at shutdown).
        """
