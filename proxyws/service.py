"""
The running server: listeners, the site, the backend pool and the logs, and
a graceful stop.

Listening sockets are bound by L{bindListeners} while the command line is
parsed, before twistd daemonizes or anything starts, so that a port already
in use stops start-up with one clear line.  L{ProxyService} adopts them.
"""

import signal
import socket

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.protocols.haproxy import proxyEndpoint
from twisted.protocols.tls import TLSMemoryBIOFactory

from .accesslog import AccessLog
from .errors import ConfigError
from .gate import Gate
from .httpproxy import HTTPRouteHandler
from .internals import quietAutobahnDebugLogs
from .logs import ProxyLogger
from .plugins import buildPlugins
from .pool import BackendPool
from .resource import ReverseProxyResource
from .routing import Router
from .site import ProxySite
from .timers import Deadline
from .tls import BackendTLSPolicy, serverContext
from .wsproxy import WebSocketRouteHandler

_log = ProxyLogger()


def bindListeners(config):
    """
    Bind and listen on every socket the config asks for.

    @param config: a L{proxyws.config.Config}.
    @return: a L{list} of C{(listener, socket)}, with the demo backend's
        socket last when the config has one (its listener is the
        L{proxyws.config.DemoSettings}).
    @raise ConfigError: when an address cannot be bound.
    """
    wanted = [("listen[{}]".format(i), l) for i, l in enumerate(config.listeners)]
    if config.demo is not None:
        wanted.append(("demo", config.demo))
    bound = []
    try:
        for keyPath, listener in wanted:
            bound.append((listener, _bind(config, keyPath, listener)))
    except ConfigError:
        for _, sock in bound:
            sock.close()
        raise
    return bound


def bindWorkers(config, count):
    """
    Bind the listeners once per worker, and the demo backend once.

    @return: C{(demo, perWorker)}: the demo's C{(settings, socket)} list
        (empty without a demo) and, for each worker, its list of
        C{(listener, socket)} in the order of the config's listeners.
    @raise ConfigError: when an address cannot be bound.
    """
    from .workers import bindShared

    copies = []
    try:
        for index, listener in enumerate(config.listeners):
            copies.append(bindShared(config, "listen[{}]".format(index), listener, count))
        demo = []
        if config.demo is not None:
            demo.append((config.demo, _bind(config, "demo", config.demo)))
    except ConfigError:
        for sockets in copies:
            for sock in sockets:
                sock.close()
        raise
    perWorker = [
        [(listener, copies[n][worker]) for n, listener in enumerate(config.listeners)]
        for worker in range(count)
    ]
    return demo, perWorker


def _bind(config, keyPath, listener, port=None, reusePort=False):
    family = socket.AF_INET6 if ":" in listener.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reusePort:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # "::" means IPv6 only; list "0.0.0.0" too for IPv4.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((listener.address, listener.port if port is None else port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise ConfigError(
            config.path,
            keyPath,
            "cannot listen on {} port {}: {}".format(
                listener.address, listener.port, e.strerror or e
            ),
        ) from None
    return sock


def buildRoot(config, reactor, pool=None, plugins=None):
    """
    Build the root resource every listener serves, and the backend pool.

    @param pool: the L{proxyws.interfaces.IBackendPool} to use instead of a
        L{BackendPool} built from the config.
    @param plugins: the L{proxyws.plugins.PluginSet} to use instead of
        building the config's plugins.
    @return: C{(root, pool)}.
    @raise ConfigError: when a plugin cannot be built.
    """
    server = config.server
    backendPolicy = BackendTLSPolicy(config)
    if pool is None:
        pool = BackendPool(
            reactor,
            maxIdle=server.backendKeepalive,
            idleTimeout=server.backendIdleTimeout,
            maxConnections=server.backendMaxConnections,
            tlsPolicy=backendPolicy,
        )
    handlers = {route.index: HTTPRouteHandler(reactor, pool, route) for route in config.routes}
    webSockets = {
        route.index: WebSocketRouteHandler(reactor, route, backendPolicy)
        for route in config.routes
    }
    # Plugins: only the handlers of routes that have them change.
    if plugins is None:
        plugins = buildPlugins(config, reactor)
    plugins.install(handlers, webSockets)
    root = ReverseProxyResource(
        Router(config.routes, config.hosts),
        handlers,
        webSockets,
        gate=Gate.forConfig(config, reactor),
        unknownHost=server.unknownHost,
    )
    return root, pool


def buildSite(config, reactor, accessLog, listener=None, pool=None, plugins=None):
    """
    Build a site serving C{config}, and its backend pool.

    @param listener: the L{proxyws.config.Listener} the site serves.
    @param pool: see L{buildRoot}.
    @param plugins: see L{buildRoot}.
    @return: C{(site, pool)}.
    """
    root, pool = buildRoot(config, reactor, pool, plugins)
    site = ProxySite(
        root,
        accessLog,
        reactor,
        config.server.clientTimeout,
        listener=listener,
        trustedProxies=config.server.trustedProxies,
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


class ProxyService(Service):
    """
    Serves a config on pre-bound sockets until stopped.

    @ivar site: the L{ProxySite}, once started.
    @ivar ports: the listening ports, once started.
    """

    site = None
    _stopped = None

    def __init__(self, config, sockets, reactor, accessLog=None):
        """
        @param config: a L{proxyws.config.Config}.
        @param sockets: the result of L{bindListeners}.
        @param reactor: the reactor to run on.
        @param accessLog: an C{IAccessLog} to use instead of opening the
            config's C{access_log}.
        """
        self.config = config
        self._sockets = sockets
        self._reactor = reactor
        self.ports = []
        self.sites = []
        self._pool = None
        self._accessLog = accessLog

    def startService(self):
        """
        Open the access log, build the site and start listening.
        """
        Service.startService(self)
        quietAutobahnDebugLogs()
        if self._accessLog is None:
            self._accessLog = AccessLog.open(self.config.server.accessLog)
            onSignal(signal.SIGUSR1, self._reactor, self.reopenLogs)
        root, self._pool = buildRoot(self.config, self._reactor)
        for index, (listener, sock) in enumerate(self._sockets):
            factory = self._factoryFor(listener, root)
            family = sock.family
            # The endpoint takes the descriptor over (and closes it).
            endpoint = AdoptedStreamServerEndpoint(self._reactor, sock.detach(), family)
            if getattr(listener, "proxyProtocol", False):
                # Connections start with a PROXY protocol header (v1 or v2).
                endpoint = proxyEndpoint(endpoint)
            endpoint.listen(factory).addCallback(self.ports.append)
            port = self.ports[-1]
            address = port.getHost()
            _log.info(
                "proxyws listening on {address} port {port}{tls}",
                address=address.host,
                port=address.port,
                tls=" (TLS)" if getattr(listener, "tls", None) else "",
            )
        self._sockets = []

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

    def _factoryFor(self, listener, root):
        if listener is self.config.demo:
            from .demo import demoSite

            return demoSite(self._reactor)
        site = ProxySite(
            root,
            self._accessLog,
            self._reactor,
            self.config.server.clientTimeout,
            listener=listener,
            trustedProxies=self.config.server.trustedProxies,
        )
        self.sites.append(site)
        if self.site is None:
            self.site = site
        factory = site
        if listener.tls is not None:
            factory = TLSMemoryBIOFactory(serverContext(self.config, listener), False, factory)
        return factory

    def stopService(self):
        """
        Stop gracefully: stop accepting, let requests in flight finish until
        the shutdown deadline, then close what is left.

        @return: a L{Deferred} that fires when everything is closed.
        """
        if self._stopped is not None:
            return self._stopped
        Service.stopService(self)
        for _, sock in self._sockets:
            sock.close()
        if self.site is None:
            return None
        _log.info("proxyws stopping: waiting for requests in flight")
        self.site.resource.stopping = True
        stopped = DeferredList([port.stopListening() for port in self.ports])
        drained = DeferredList([site.drain() for site in self.sites])
        deadline = Deadline(self._reactor)
        deadline.start(self.config.server.shutdownTimeout, self._deadline)
        finished = self._stopped = Deferred()

        def done(_):
            deadline.cancel()
            self._pool.closeIdle()
            self._accessLog.close()
            _log.info("proxyws stopped")
            finished.callback(None)

        DeferredList([stopped, drained]).addCallback(done)
        return finished

    def _deadline(self):
        _log.warn("shutdown deadline reached: closing the remaining connections")
        for site in self.sites:
            site.abortAll()
