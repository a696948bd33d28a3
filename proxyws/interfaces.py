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


# ---------------------------------------------------------------------------
# Upstreams (proxyws.upstream, proxyws.balancing).
# ---------------------------------------------------------------------------


class IUpstreamMember(Interface):
    """
    One member of an upstream, as a balancing policy sees it.  The
    attributes are read-only for a policy: the upstream keeps them.
    """

    name = Attribute("The member's stable name (L{str}): configured, or derived from its URL.")
    index = Attribute("Its position in the upstream's members, from 0, in config order.")
    weight = Attribute("Its weight, a whole number from 1 to 1000.")
    connections = Attribute(
        "How many requests it is serving now plus how many websockets to it are open."
    )
    seed = Attribute(
        "A 64-bit number derived from C{name}, the same in every process, for "
        "hashing (L{proxyws.balancing.rendezvous})."
    )


class IBackendSelector(Interface):
    """
    A balancing policy: chooses the member of an upstream that takes a new
    request or session.

    The upstream makes one selector per upstream (again on a reload that
    changes it) and asks it only when affinity has not already decided:
    a sticky session goes to its member without a selector.  A selector
    may keep state between calls (round robin's counters); it runs on the
    reactor thread and must return at once: no I/O, no blocking, no
    Deferreds.
    """

    def select(candidates, request):
        """
        Choose one of C{candidates}.

        @param candidates: the members that may take a new request: up and
            not draining, in config order, never empty; a L{tuple} of
            L{IUpstreamMember}.  Members the request already failed on are
            left out.
        @param request: the L{proxyws.affinity.SelectionRequest} (client
            address, headers, path, the route's match captures, cookies),
            or L{None} when the upstream's settings need nothing of the
            request (the policy is not C{hash} and there is no affinity).
        @return: one of C{candidates}.
        """


# The admin listener: what the running server shows and does through it,
# and where the routes added through the configurable-http-proxy API live.


class IServerStatus(Interface):
    """
    The running server as the admin listener sees it (L{proxyws.admin}).
    """

    state = Attribute(
        'C{"serving"}, C{"stopping"} (a graceful stop has begun) or '
        'C{"degraded"} (serving, but something it depends on is failing).'
    )

    def status():
        """
        What C{GET /status} shows, as JSON-able plain values.

        Expected keys (each optional; C{version} and C{state} are added by
        the admin resource): C{uptime_seconds}, C{config} (C{{"path",
        "loaded_at"}}), C{listeners} (a list of C{{"address", "port",
        "tls"}}), C{routes} (a list of C{{"route", "path" or "match",
        "backend" or "upstream", "connections", "websockets"}}), C{upstreams}
        (a list of C{{"name", "members": [{"url", "up", "connections"}]}}),
        C{backends} (a list of C{{"url", "errors": {kind: count}}}),
        C{held_past_reload} (C{{"connections", "websockets"}}).

        @return: a L{dict}.
        """

    def reload():
        """
        Read the config file again and apply it in place, as on SIGHUP.

        @return: a L{Deferred} firing with a L{proxyws.admin.ReloadResult}:
            what changed, or the problems that kept the old config in force.
        """


class IRouteStore(Interface):
    """
    Where the routes added through the configurable-http-proxy API are
    kept.  The proxy routes requests with the store's L{table}, an
    L{proxyws.apiroutes.APIRouteTable} that is always in memory; the store
    keeps it and its own copy (memory, a file, Redis) in step.

    Prefixes given to these methods are cleaned by
    L{proxyws.apiroutes.cleanPrefix} first.
    """

    table = Attribute("The L{proxyws.apiroutes.APIRouteTable} the proxy consults.")

    healthy = Attribute(
        "Whether the store's own copy is reachable: L{False} while a Redis "
        "server is unreachable (the table then keeps the last known routes)."
    )

    def start():
        """
        Load the routes and begin keeping them in step.

        @return: a L{Deferred} firing when the first load is done (or, for a
            store that cannot be reached, once it has given up waiting and
            serves its table as it is).
        @raise proxyws.errors.RouteStoreError: (through the Deferred) when
            the store's copy exists but cannot be used.
        """

    def stop():
        """
        Write what is pending (the last activity of routes) and stop.

        @return: a L{Deferred} firing when done.
        """

    def add(prefix, data):
        """
        Add a route, or replace the route of that prefix.

        @param prefix: the route's prefix, such as C{"/user/alice"}.
        @param data: a L{dict} with C{"target"} (a URL) and any other
            JSON-able data to keep with it.
        @return: a L{Deferred} firing with the added
            L{proxyws.apiroutes.APIRoute} once it is stored.
        @raise proxyws.errors.InvalidRoute: (through the Deferred) for a
            target proxyws cannot use.
        @raise proxyws.errors.RouteStoreError: (through the Deferred) when
            it cannot be stored; nothing changed.
        """

    def remove(prefix):
        """
        Remove the route of a prefix.

        @return: a L{Deferred} firing with L{True}, or L{False} when there
            was no such route.
        @raise proxyws.errors.RouteStoreError: (through the Deferred) when
            the change cannot be stored; nothing changed.
        """


# ---------------------------------------------------------------------------
# Plugins (proxyws.plugins): what installed packages provide through the
# "proxyws.plugins" entry-point group.  Each entry point names a factory that
# takes its options table (a proxyws.plugins.PluginOptions) and returns a
# provider of one or more of these interfaces (and of IBackendSelector, for
# an upstream's policy).  Every call runs on the reactor thread; the time it
# takes is measured, and a call over proxyws.plugins.SLOW_CALL seconds is
# logged.  A call that raises fails what it was called for (500, or 1011 for
# a websocket), is logged once with the plugin's name and the traceback,
# and nothing else.  Where a Deferred may be returned, it is waited for at
# most [server] plugin_timeout seconds (then 504, or 1011), and what it
# fires with counts as if it had been returned.
# ---------------------------------------------------------------------------


class IRequestFilter(Interface):
    """
    Sees each request of its routes before it is proxied, websocket
    upgrades included, after the route's address rules and C{auth} and the
    plugins listed before it; may change it, answer it itself, or let it
    pass.
    """

    def filterRequest(request):
        """
        Look at C{request}, and change it or answer it.

        @param request: a L{proxyws.plugins.PluginRequest}: C{method},
            C{uri}, C{headers} (the client's, a
            L{twisted.web.http_headers.Headers} to change in place: the
            backend gets them, less the hop-by-hop ones, with
            C{X-Forwarded-*}), C{target} (the backend request target, path
            and query, which the filter may set to another C{/...} target on
            the same backend), C{clientAddress}, C{route}, C{tlsSubject},
            C{identity} (from an authenticator before it), C{webSocket} and
            C{state} (a L{dict} shared with the route's other plugins for
            this request).
        @return: L{None} to let the request go on (with whatever changes
            were made); a L{proxyws.plugins.Response} to answer it instead
            (a 403, a redirect, a JSON error: the backend never sees it); or
            a L{Deferred} firing with one of those (the request body waits
            meanwhile).
        @raise Exception: anything: the client gets 500.
        """


class IResponseFilter(Interface):
    """
    Sees the status and header fields of each response a backend gives to
    its routes' plain HTTP requests before they go to the client, and may
    change the fields.  Bodies stream untouched.  Response filters run in
    the reverse order of the route's plugins list (the first listed sees
    the response last, as layers around the backend).
    """

    def filterResponse(request, response):
        """
        Look at C{response}, and change its fields in place.

        @param request: the L{proxyws.plugins.PluginRequest} the request
            filters saw (its C{state} included).
        @param response: a L{proxyws.plugins.PluginResponse}: C{code},
            C{phrase} and C{headers}, the fields the client gets in their
            order, with C{getRawHeaders}, C{setRawHeaders},
            C{addRawHeader}, C{removeHeader} and C{hasHeader} as Twisted's
            L{Headers} has them.  Framing fields (C{Content-Length},
            C{Transfer-Encoding}, C{Connection}) set here are dropped: the
            proxy frames the body it relays.
        @return: L{None}.  Not a L{Deferred}: the body follows the head at
            once, so a response filter must decide at once (a L{Deferred}
            is a plugin error).
        @raise Exception: anything: the client gets 500 instead of the
            response, and the backend connection is closed.
        """


class IWebSocketFilter(Interface):
    """
    Sees each websocket of its routes: the opening, each whole message in
    each direction, and the close.  Messages are whole: unmasked,
    reassembled from their frames and inflated when compressed.  A route
    with a websocket filter relays messages, not frames: each message a
    filter lets through is written to the other side as a frame of the
    proxy's own (compressed again when the sender compressed it); a route
    without one relays frames as they are.  Control frames (pings, pongs)
    pass at once; a close frame passes after the messages before it.

    One provider serves every websocket of its routes: per-connection
    state goes in C{connection.state}.
    """

    def opened(connection):
        """
        A websocket opened: both handshakes are done, no message has been
        relayed yet.

        @param connection: a L{proxyws.wsmessages.WebSocketConnection}:
            C{request} (the L{proxyws.plugins.PluginRequest} of the
            upgrade), C{subprotocol} (the one the backend chose, or
            L{None}), C{route}, C{id}, C{clock} and C{state}.
        @return: L{None}; or a L{proxyws.plugins.Close} to close both legs
            at once; or a L{Deferred} firing with one of those (messages
            wait meanwhile).
        @raise Exception: anything: both legs are closed with 1011.
        """

    def message(connection, message):
        """
        A whole message, on its way from one side to the other.  Messages
        of one direction reach the filter in order, one at a time (the next
        waits for a L{Deferred} to fire).

        @param connection: the L{proxyws.wsmessages.WebSocketConnection}.
        @param message: a L{proxyws.wsmessages.Message}: C{direction}
            (C{"in"}, client to backend, or C{"out"}), C{binary},
            C{payload} (L{bytes}) and C{text} (the payload decoded as
            UTF-8).
        @return: L{None} to pass it; another
            L{proxyws.wsmessages.Message} (C{message.replace(payload)}) to
            send that instead; L{proxyws.plugins.DROP} to drop it; a
            L{proxyws.plugins.Close} to close both legs with its code and
            reason; or a L{Deferred} firing with one of those.
        @raise Exception: anything: both legs are closed with 1011.
        """

    def closed(connection, code, reason):
        """
        The websocket is over: both connections are closed.

        @param connection: the L{proxyws.wsmessages.WebSocketConnection}.
        @param code: the code of the first close frame either side (or the
            proxy) sent, or 1006 when a connection ended without one.
        @param reason: that close frame's reason (L{str}), or C{""}.
        @return: ignored (a L{Deferred}'s failure is logged).
        """


class IAuthenticator(Interface):
    """
    Decides who the client of a request is.  The route's C{auth = {
    htpasswd = ... }} is one (L{proxyws.gate.HtpasswdAuthenticator}); a
    plugin in a route's C{plugins} list that provides this interface
    authenticates the requests that reach it there (after the plugins listed
    before it, so that a CORS preflight can be answered before it).
    """

    def authenticate(request):
        """
        Authenticate C{request}, or refuse it.

        @param request: a L{proxyws.plugins.PluginRequest}; the
            authenticator may change its headers (set a header naming the
            user for the backend, remove the credentials).
        @return: a L{proxyws.plugins.Identity} to let the request go on (its
            C{user} goes to the access log's C{%u}, and later plugins see
            it as C{request.identity}); a L{proxyws.plugins.Response} to
            refuse it (a 401 with a C{WWW-Authenticate} challenge, a 403);
            or a L{Deferred} firing with one of those (a password check in
            a thread, a call to an identity service).
        @raise Exception: anything: the client gets 500.
        """
