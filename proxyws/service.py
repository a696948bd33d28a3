"""
The running server: listeners, sites, the backend pool and the logs; a
reload in place; a graceful stop.

Listening sockets are bound (L{proxyws.sockets}) while the command line is
parsed, before twistd daemonizes or anything starts, so that a port already
in use stops start-up with one clear line; L{ProxyService} adopts them.

A reload (SIGHUP, or C{POST /reload} on the admin listener) reads and checks
the whole new config first, certificates, htpasswd files and new listening
addresses included, and changes nothing if anything is wrong.  Then it
builds a new root resource and hands it to every site: new requests take
the new routes, requests in flight finish on the old ones, and open
websockets and keep-alive connections stay up.  A websocket whose route is
gone (L{proxyws.changes}) is closed with 1001 after C{reload_grace}
seconds.
"""

import signal

import attr
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.haproxy import proxyEndpoint

from . import __version__
from .accesslog import AccessLog
from .admin import ReloadResult, adminService
from .apirouting import APIHandlers, APIRouter
from .changes import (
    certificateChanges,
    certificateFiles,
    listenerChanges,
    listenerKey,
    routeChanges,
    routeIdentity,
    summary,
)
from .config import loadAndCheck, problemsOf
from .errors import ConfigError
from .gate import Gate
from .internals import quietAutobahnDebugLogs
from .logs import ProxyLogger, setLevel
from .metrics import API_ROUTE, Metrics, routeLabel
from .plugins import buildPlugins
from .pool import BackendPool
from .resource import ReverseProxyResource
from .routestore import makeRouteStore
from .routing import Router
from .site import ProxySite
from .sockets import _bind
from .timers import Deadline
from .tls import BackendTLSPolicy, ListenerTLSFactory, serverContext
from .upstream import Upstreams
from .upstreamproxy import httpHandler, webSocketHandler

_log = ProxyLogger()

# Seconds the route store is given to write its last activity at a stop.
STORE_STOP_TIMEOUT = 2.0


def buildRoot(
    config,
    reactor,
    pool=None,
    backendPolicy=None,
    gate=None,
    upstreams=None,
    plugins=None,
    metrics=None,
    apiRoutes=None,
):
    """
    Build the root resource every listener serves, and the backend pool.

    @param pool: the L{proxyws.interfaces.IBackendPool} to use instead of a
        L{BackendPool} built from the config.
    @param backendPolicy: the config's L{BackendTLSPolicy}, when built.
    @param gate: the config's L{Gate}, when built.
    @param upstreams: the L{Upstreams} registry the upstream routes choose
        members from (the service's, updated to C{config}), or L{None} to
        build one from the config (not started).  It is the root's
        C{upstreams}.
    @param plugins: the config's L{proxyws.plugins.PluginSet}, when built.
    @param metrics: the server's L{proxyws.metrics.Metrics}, or L{None}.
    @param apiRoutes: the L{proxyws.apiroutes.APIRouteTable} of the routes
        added through the admin API, or L{None}.
    @return: C{(root, pool)}.
    """
    server = config.server
    if backendPolicy is None:
        backendPolicy = BackendTLSPolicy(config)
    if gate is None:
        gate = Gate.forConfig(config, reactor)
    if pool is None:
        pool = BackendPool(
            reactor,
            maxIdle=server.backendKeepalive,
            idleTimeout=server.backendIdleTimeout,
            maxConnections=server.backendMaxConnections,
            tlsPolicy=backendPolicy,
        )
    if upstreams is None:
        upstreams = Upstreams.fromConfig(config, reactor, backendPolicy)
    handlers = {
        route.index: httpHandler(reactor, pool, route, upstreams) for route in config.routes
    }
    webSockets = {
        route.index: webSocketHandler(reactor, route, backendPolicy, upstreams)
        for route in config.routes
    }
    # Plugins: only the handlers of the routes that have some change.
    if plugins is None:
        plugins = buildPlugins(config, reactor)
    plugins.install(handlers, webSockets)
    router = Router(config.routes, config.hosts)
    apiHandlers = None
    if apiRoutes is not None:
        router = APIRouter(router, apiRoutes)
        apiHandlers = APIHandlers(
            apiRoutes,
            lambda route: httpHandler(reactor, pool, route, upstreams),
            lambda route: webSocketHandler(reactor, route, backendPolicy, upstreams),
        )
    routeMetrics = {}
    if metrics is not None:
        routeMetrics = {route.index: metrics.forRoute(routeLabel(route)) for route in config.routes}
        routeMetrics[None] = metrics.forRoute(API_ROUTE)
    root = ReverseProxyResource(
        router,
        handlers,
        webSockets,
        gate=gate,
        unknownHost=server.unknownHost,
        apiHandlers=apiHandlers,
        routeMetrics=routeMetrics,
    )
    root.upstreams = upstreams
    return root, pool


def buildSite(config, reactor, accessLog, listener=None, pool=None, plugins=None):
    """
    Build a site serving C{config}, and its backend pool.

    @param listener: the L{proxyws.config.Listener} the site serves.
    @param pool: see L{buildRoot}.
    @param plugins: see L{buildRoot}.
    @return: C{(site, pool)}.
    """
    root, pool = buildRoot(config, reactor, pool, plugins=plugins)
    site = ProxySite(
        root,
        accessLog,
        reactor,
        config.server.clientTimeout,
        listener=listener,
        trustedProxies=config.server.trustedProxies,
        server=config.server,
    )
    return site, pool


def onSignal(signum, reactor, action):
    """
    Run C{action} in the reactor when the process gets C{signum}, after
    whatever handled it before (twistd rotates its own log on SIGUSR1).
    """
    previous = signal.getsignal(signum)

    def handler(number, frame):
        reactor.callFromThread(action)
        if callable(previous):
            previous(number, frame)

    signal.signal(signum, handler)


def stopOnSignals(reactor):
    """
    Stop the reactor on SIGTERM and SIGINT, for a graceful stop that ends
    with exit status 0.

    The reactor's own handlers note the signal so that twistd ends by
    raising it again (status -15/-2); the contract promises 0 after a
    graceful stop.  These replace them once the reactor runs.
    """

    stopping = []

    def handler(number, frame):
        # One graceful stop, however often the signals come.
        if not stopping:
            stopping.append(number)
            reactor.callFromThread(reactor.stop)

    def install():
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, handler)

    reactor.callWhenRunning(install)


def prepare(config, reactor=None):
    """
    Build what serving C{config} needs beyond parsing it, checking it as
    start-up does: the TLS contexts of its listeners, the backend TLS
    settings, the htpasswd files, the plugins.

    @return: C{(contexts, backendPolicy, gate, plugins)}; C{contexts} maps
        each TLS listener's key to its context factory.
    @raise ConfigError: for the first problem found.
    """
    contexts = {}
    for listener in config.listeners:
        if listener.tls is not None:
            contexts[listenerKey(listener)] = serverContext(config, listener)
    policy, gate = BackendTLSPolicy(config), Gate.forConfig(config, reactor)
    return contexts, policy, gate, buildPlugins(config, reactor)


class ListenerFactory(Factory):
    """
    What a listening port builds its connections with: its site, behind
    TLS when the listener has it.  A reload swaps what is behind it, for
    new connections.

    @ivar site: the L{ProxySite}.
    @ivar tls: the C{TLSMemoryBIOFactory} wrapping the site, or L{None}.
    """

    noisy = False

    def __init__(self, site, tls=None):
        self.site = site
        self.tls = tls

    def buildProtocol(self, addr):
        """
        @return: a connection of the site, behind TLS when there is TLS.
        """
        return (self.tls or self.site).buildProtocol(addr)

    def logPrefix(self):
        """
        @return: the site's, for the port's log lines.
        """
        return self.site.logPrefix()

    def startFactory(self):
        """
        The port listens: start the site.
        """
        self.site.doStart()

    def stopFactory(self):
        """
        The port is closed: stop the site.
        """
        self.site.doStop()


class ProxyService(Service):
    """
    Serves a config on pre-bound sockets until stopped; reloads in place.

    @ivar config: the config in force.
    @ivar state: C{"serving"}, or C{"stopping"} once a graceful stop began.
    @ivar sites: every L{ProxySite}, one per listener (those a reload
        removed included, until the stop).
    @ivar ports: the listening ports, once started.
    @ivar pool: the L{BackendPool}, kept across reloads.
    @ivar upstreams: the L{Upstreams} registry (members' states and active
        checks), kept across reloads (each updates it); it stops after the
        last request.
    @ivar metrics: the L{Metrics} served by the admin listener, or L{None}
        without C{[admin]}; kept across reloads.
    @ivar store: the L{proxyws.interfaces.IRouteStore} of the routes added
        through the admin API, or L{None} without C{[admin]}.
    @ivar admin: the L{proxyws.admin.AdminService}, or L{None}.
    """

    site = None
    upstreams = None
    metrics = None
    store = None
    admin = None
    state = "serving"
    # Bind the listeners a reload adds with SO_REUSEPORT (in a worker).
    reusePort = False
    _stopped = None

    def __init__(self, config, sockets, reactor, accessLog=None):
        """
        @param config: a L{proxyws.config.Config}.
        @param sockets: the result of L{proxyws.sockets.bindListeners}.
        @param reactor: the reactor to run on.
        @param accessLog: an C{IAccessLog} to use instead of opening the
            config's C{access_log}.
        """
        self.config = config
        self._sockets = sockets
        self._reactor = reactor
        self.ports = []
        self.sites = []
        self._listening = {}
        self.pool = None
        self._accessLog = accessLog
        self._ownLog = accessLog is None
        self._reloading = False
        self.generation = 0
        self.startedAt = self.loadedAt = None

    @property
    def _pool(self):
        return self.pool

    def startService(self):
        """
        Open the access log, build the site and start listening.
        """
        Service.startService(self)
        quietAutobahnDebugLogs()
        reactor = self._reactor
        self.startedAt = self.loadedAt = reactor.seconds()
        if self._accessLog is None:
            self._accessLog = AccessLog.open(self.config.server.accessLog)
            onSignal(signal.SIGUSR1, reactor, self.reopenLogs)
        contexts, policy, gate, plugins = prepare(self.config, reactor)
        self._certificates = certificateFiles(self.config)
        server = self.config.server
        self.pool = BackendPool(
            reactor,
            maxIdle=server.backendKeepalive,
            idleTimeout=server.backendIdleTimeout,
            maxConnections=server.backendMaxConnections,
            tlsPolicy=policy,
        )
        self.upstreams = Upstreams.fromConfig(self.config, reactor, policy)
        self.upstreams.start()
        adminSocket = self._startAdmin()
        root = self._root(self.config, policy, gate, plugins)
        for listener, sock in self._sockets:
            if listener is self.config.demo:
                from .demo import demoSite

                self._listen(listener, sock, demoSite(reactor))
            elif listener is not self.config.admin:
                self._listen(listener, sock, self._factory(listener, root, contexts))
        self._sockets = []
        if adminSocket is not None:
            self.admin = adminService(
                self.config.admin, self, reactor, self.metrics, self.store, adminSocket)
            self.admin.startService()

    def _startAdmin(self):
        """
        With C{[admin]}: make the metrics and start the route store.

        @return: the admin listener's socket, or L{None}.
        """
        admin = self.config.admin
        if admin is None:
            return None
        self.metrics = Metrics(
            upstreamMembers=self._memberGauges,
            apiRouteCount=lambda: len(self.store.table),
        )
        self.store = makeRouteStore(admin, self._reactor, server=self.config.server)
        started = self.store.start()
        if started is not None:
            started.addErrback(lambda f: _log.failure("the route store did not start", f))
        for listener, sock in self._sockets:
            if listener is admin:
                return sock
        return None

    @property
    def _apiRoutes(self):
        """
        The table of the routes added through the admin API, or L{None}
        without C{[admin]}.
        """
        return self.store.table if self.store is not None else None

    def _memberGauges(self):
        """
        The rows of the upstream members' gauges, each member labelled by
        its URL as the config gives it.
        """
        return [
            (upstream.name, member.settings.url, member.up, member.connections)
            for upstream in self.upstreams
            for member in upstream.members
        ]

    def _root(self, config, policy, gate, plugins):
        """
        The root resource serving C{config}, with the service's pool,
        upstreams, metrics and API routes.
        """
        root, _ = buildRoot(
            config,
            self._reactor,
            self.pool,
            policy,
            gate,
            upstreams=self.upstreams,
            plugins=plugins,
            metrics=self.metrics,
            apiRoutes=self._apiRoutes,
        )
        return root

    def _listen(self, listener, sock, factory):
        # The endpoint takes the descriptor over (and closes it).
        endpoint = AdoptedStreamServerEndpoint(self._reactor, sock.detach(), sock.family)
        if getattr(listener, "proxyProtocol", False):
            # Connections start with a PROXY protocol header (v1 or v2).
            endpoint = proxyEndpoint(endpoint)
        ports = []
        endpoint.listen(factory).addCallback(ports.append)
        port = ports[0]
        self.ports.append(port)
        if isinstance(factory, ListenerFactory):
            self._listening[listenerKey(listener)] = (port, factory)
            factory.site.port = port
        address = port.getHost()
        _log.info(
            "proxyws listening on {address} port {port}{tls}",
            address=address.host,
            port=address.port,
            tls=" (TLS)" if getattr(listener, "tls", None) else "",
        )

    def _factory(self, listener, root, contexts):
        server = self.config.server
        site = ProxySite(
            root,
            self._accessLog,
            self._reactor,
            server.clientTimeout,
            listener=listener,
            trustedProxies=server.trustedProxies,
            server=server,
        )
        site.generation = self.generation
        site.metrics = self.metrics
        site.apiRoutes = self._apiRoutes
        self.sites.append(site)
        if self.site is None:
            self.site = site
        return ListenerFactory(site, self._tlsFactory(listener, site, contexts))

    @staticmethod
    def _tlsFactory(listener, site, contexts):
        if listener.tls is None:
            return None
        return ListenerTLSFactory(contexts[listenerKey(listener)], site)

    def reopenLogs(self):
        """
        Open the access log file again (SIGUSR1, as for nginx): after
        logrotate has moved it away, lines go to a new file at its path.
        """
        try:
            self._accessLog.reopen()
        except OSError as e:
            _log.error(
                "cannot reopen the access log {path}: {error}",
                path=self.config.server.accessLog,
                error=e,
            )
        else:
            _log.info("access log reopened")

    # Reloading.

    def reload(self, config=None):
        """
        Read the config file again and apply it in place (SIGHUP).

        @param config: an already loaded L{proxyws.config.Config} to apply
            instead (a worker gets the one its parent checked).
        @return: a L{Deferred} firing with a L{ReloadResult}; a config that
            does not load changes nothing.
        """
        if self.state != "serving" or self._reloading:
            why = "the server is stopping" if self.state != "serving" else "a reload is running"
            return succeed(ReloadResult(False, problems=(why,)))
        self._reloading = True
        try:
            try:
                if config is None:
                    # Every check start-up runs, every problem reported.
                    config = loadAndCheck(self.config.path)
                self._checkAdmin(config)
                prepared = prepare(config, self._reactor)
                sockets = self._bindNew(config)
            except ConfigError as e:
                result = self._refused(e)
            else:
                result = self._apply(config, prepared, sockets)
        finally:
            self._reloading = False
        if self.metrics is not None:
            self.metrics.reloadDone(result.succeeded)
        return succeed(result)

    def _checkAdmin(self, config):
        """
        Refuse a reload that changes the admin listener or its route store,
        which keep their settings until a restart; its token may change.

        @raise ConfigError: when the C{[admin]} table changes otherwise.
        """
        old, new = self.config.admin, config.admin
        if old is None and new is None:
            return
        if old is None or new is None or attr.evolve(old, token=None, tokenEnv=None) != attr.evolve(
            new, token=None, tokenEnv=None
        ):
            raise ConfigError(
                config.path,
                "admin",
                "the admin listener and its route store change only on a restart (its "
                "token_env may change on a reload); restore the [admin] table or restart proxyws",
            )

    def _refused(self, error):
        problems = tuple(str(p) for p in problemsOf(error))
        for problem in problems:
            _log.error("reload: {problem}", problem=problem)
        _log.error("reload refused: the config in force is unchanged")
        return ReloadResult(False, problems=problems)

    def _bindNew(self, config):
        """
        Bind the listeners C{config} adds (a port that cannot be bound fails
        the whole reload).
        """
        bound = []
        try:
            for index, listener in enumerate(config.listeners):
                if listenerKey(listener) not in self._listening:
                    keyPath = "listen[{}]".format(index)
                    sock = _bind(config, keyPath, listener, reusePort=self.reusePort)
                    bound.append((listener, sock))
        except ConfigError:
            for _, sock in bound:
                sock.close()
            raise
        return bound

    def _apply(self, config, prepared, sockets):
        old = self.config
        contexts, policy, gate, plugins = prepared
        certificates = certificateFiles(config)
        changes = {
            "routes": routeChanges(old, config),
            "listeners": listenerChanges(old, config),
            "certificates": certificateChanges(self._certificates, certificates),
        }
        self.config = config
        self._certificates = certificates
        self.generation += 1
        self.loadedAt = self._reactor.seconds()
        setLevel(config.server.logLevel)
        self._reopenAccessLog(old, config)
        server = config.server
        self.pool.configure(
            maxIdle=server.backendKeepalive,
            idleTimeout=server.backendIdleTimeout,
            maxConnections=server.backendMaxConnections,
            tlsPolicy=policy,
        )
        # Members whose URL and TLS settings stay keep their state.
        self.upstreams.update(config, policy)
        if self.store is not None:
            self.store.table.configure(server)
            self.admin.resource.token = config.admin.token
        if self.metrics is not None:
            # The series of removed routes end (once their websockets do).
            self.metrics.retain([routeLabel(route) for route in config.routes])
        root = self._root(config, policy, gate, plugins)
        self._updateListeners(config, root, contexts)
        for listener, sock in sockets:
            self._listen(listener, sock, self._factory(listener, root, contexts))
        changes["closing"] = self._retire(old, config)
        _log.info("reload: {summary}", summary=summary(changes))
        return ReloadResult(True, changes)

    def _reopenAccessLog(self, old, config):
        if not self._ownLog or old.server.accessLog == config.server.accessLog:
            return
        previous = self._accessLog
        self._accessLog = AccessLog.open(config.server.accessLog)
        for site in self.sites:
            site.accessLog = self._accessLog
        previous.close()

    def _updateListeners(self, config, root, contexts):
        """
        Give every site the new root and settings; stop listening where
        the new config has no listener.
        """
        listeners = {listenerKey(l): l for l in config.listeners}
        server = config.server
        for site in self.sites:
            site.resource = root
            site.configure(server)
            site.generation = self.generation
        for key, (port, factory) in list(self._listening.items()):
            listener = listeners.get(key)
            if listener is None:
                del self._listening[key]
                self.ports.remove(port)
                port.stopListening()
                continue
            factory.site.listener = listener
            factory.tls = self._tlsFactory(listener, factory.site, contexts)

    def _retire(self, old, config):
        """
        Close, after the grace period, the websockets whose route the new
        config no longer has.

        @return: how many.
        """
        kept = {routeIdentity(config, route) for route in config.routes}
        count = 0
        for site in self.sites:
            for relay in site.relays():
                if relay.route.index is None:
                    continue  # an API route's: the API's table outlives reloads
                if routeIdentity(old, relay.route) not in kept and not relay.retiring:
                    relay.retire(config.server.reloadGrace)
                    count += 1
        return count

    # Status.

    def status(self):
        """
        What C{GET /status} shows.

        @return: a L{dict} of plain values.
        """
        now = self._reactor.seconds()
        routes = {route.index: [0, 0] for route in self.config.routes}
        held = [0, 0]
        for site in self.sites:
            for channel, generation in site.channelGenerations():
                if generation < self.generation:
                    held[0] += 1
            for relay in site.relays():
                counts = routes.get(relay.route.index)
                if counts is not None:
                    counts[1] += 1
                if relay.generation < self.generation:
                    held[1] += 1
        for route in self.config.routes:
            routes[route.index][0] = self._inFlight(route)
        return {
            "version": __version__,
            "uptime_seconds": round(now - self.startedAt, 3),
            "config": {"path": self.config.path, "loaded_at": self.loadedAt},
            "listeners": [
                {"address": l.address, "port": l.port, "tls": l.tls is not None}
                for l in self.config.listeners
            ],
            "routes": [_routeStatus(route, *routes[route.index]) for route in self.config.routes],
            "held_past_reload": {"connections": held[0], "websockets": held[1]},
            "upstreams": list(self.upstreams.snapshot().values()) if self.upstreams else [],
        }

    def _inFlight(self, route):
        root = self.site.resource if self.site is not None else None
        handler = getattr(root, "_http", {}).get(route.index)
        return getattr(handler, "inFlight", 0)

    # Stopping.

    def stopService(self):
        """
        Stop gracefully: stop accepting, let requests in flight finish until
        the shutdown deadline, then close what is left.

        @return: a L{Deferred} that fires when everything is closed.
        """
        if self._stopped is not None:
            return self._stopped
        Service.stopService(self)
        self.state = "stopping"
        for _, sock in self._sockets:
            sock.close()
        if self.site is None:
            if self.upstreams is not None:
                self.upstreams.stop()
            return None
        _log.info("proxyws stopping: waiting for requests in flight")
        for site in self.sites:
            site.resource.stopping = True
        stopped = DeferredList([port.stopListening() for port in self.ports])
        drained = DeferredList([site.drain() for site in self.sites])
        deadline = Deadline(self._reactor)
        deadline.start(self.config.server.shutdownTimeout, self._deadline)
        finished = self._stopped = Deferred()

        def done(_):
            deadline.cancel()
            self.pool.closeIdle()
            self.upstreams.stop()
            self._accessLog.close()
            _log.info("proxyws stopped")
            finished.callback(None)

        def stopAdmin(_):
            # Last: /healthz says "stopping" while requests drain.
            if self.admin is None:
                return None
            # A store that cannot say goodbye (Redis hung) does not hold
            # the stop up for long.
            store = maybeDeferred(self.store.stop).addTimeout(STORE_STOP_TIMEOUT, self._reactor)
            store.addErrback(lambda f: _log.warn(
                "the route store did not stop cleanly: {why}", why=f.getErrorMessage()))
            return DeferredList([maybeDeferred(self.admin.stopService), store], consumeErrors=True)

        DeferredList([stopped, drained]).addCallback(stopAdmin).addCallback(done)
        return finished

    def _deadline(self):
        _log.warn("shutdown deadline reached: closing the remaining connections")
        for site in self.sites:
            site.abortAll()


def _routeStatus(route, connections, websockets):
    """
    A route as C{/status} shows it.
    """
    entry = {"route": "route[{}]".format(route.index)}
    if route.name:
        entry["name"] = route.name
    if route.prefix is not None:
        entry["path"] = route.prefix.decode("utf-8", "replace")
    else:
        entry["match"] = route.match.pattern.decode("utf-8", "replace")
    upstream = getattr(route, "upstream", None)
    if upstream:
        entry["upstream"] = upstream
    else:
        entry["backend"] = route.backend.url
    entry["connections"] = connections
    entry["websockets"] = websockets
    return entry
