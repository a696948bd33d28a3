"""
Persistent HTTP/1.1 connections to backends.

One L{BackendPool} serves the whole server.  For each backend it keeps the
idle keep-alive connections (at most C{maxIdle}, each closed after
C{idleTimeout} seconds unused) and, when C{maxConnections} is set, makes
requests wait for a connection once that many are busy, as nginx's upstream
C{max_conns} with a queue does.

Connections are L{proxyws.backend.BackendConnection}s.  The pool never
repeats a request by itself: L{proxyws.httpproxy} decides when a request that
failed on a stale idle connection may be sent again.
"""

import ipaddress
from collections import deque

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.protocol import Factory
from zope.interface import implementer

from .backend import BackendConnection
from .interfaces import IBackendPool
from .timers import Deadline


class _PooledFactory(Factory):
    """
    Builds L{BackendConnection}s for one backend.
    """

    noisy = False

    def __init__(self, pool, key):
        self._pool = pool
        self._key = key

    def buildProtocol(self, addr):
        """
        @return: a L{BackendConnection} that reports to the pool.
        """
        protocol = BackendConnection()
        protocol.pool = self._pool
        protocol.backendKey = self._key
        protocol.deadline = Deadline(self._pool._reactor)
        return protocol


def backendEndpoint(reactor, backend, timeout, tlsPolicy=None):
    """
    A client endpoint for a backend.

    @param backend: a L{proxyws.config.Backend}.
    @param timeout: the connect timeout in seconds.
    @param tlsPolicy: a callable taking the backend and returning the
        C{IOpenSSLClientConnectionCreator} for C{https}/C{wss} backends.
    """
    host, port = backend.host, backend.port
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        endpoint = HostnameEndpoint(reactor, host.encode("idna"), port, timeout=timeout)
    else:
        endpointType = TCP4ClientEndpoint if version == 4 else TCP6ClientEndpoint
        endpoint = endpointType(reactor, host, port, timeout=timeout)
    if backend.secure:
        endpoint = wrapClientTLS(tlsPolicy(backend), endpoint)
    return endpoint


@implementer(IBackendPool)
class BackendPool:
    """
    Keep-alive connections to every backend, with limits.

    @ivar _idle: backend key -> list of idle connections, most recent last.
    @ivar _idleSet: the idle connections (each closes itself when its
        C{deadline} expires).
    @ivar _busy: backend key -> number of open connections not idle.
    @ivar _waiting: backend key -> deque of C{(Deferred, connect)} waiting
        for the connection limit.
    """

    def __init__(
        self, reactor, maxIdle=32, idleTimeout=60.0, maxConnections=0, tlsPolicy=None
    ):
        """
        @param reactor: the reactor (clock and TCP).
        @param maxIdle: idle connections kept per backend.
        @param idleTimeout: seconds an idle connection is kept.
        @param maxConnections: open connections per backend, 0 for no limit.
        @param tlsPolicy: see L{backendEndpoint}.
        """
        self._reactor = reactor
        self._maxIdle = maxIdle
        self._idleTimeout = idleTimeout
        self._maxConnections = maxConnections
        self._tlsPolicy = tlsPolicy
        self._idle = {}
        self._idleSet = set()
        self._busy = {}
        self._waiting = {}
        self._factories = {}

    def configure(self, maxIdle, idleTimeout, maxConnections, tlsPolicy):
        """
        Take new limits and TLS settings (a reload): connections kept now
        stay, new ones follow them.
        """
        self._maxIdle = maxIdle
        self._idleTimeout = idleTimeout
        self._maxConnections = maxConnections
        self._tlsPolicy = tlsPolicy

    def connection(self, backend, connectTimeout, fresh=False):
        """
        Get a connection to C{backend} to send one request on.

        @param backend: a L{proxyws.config.Backend}.
        @param connectTimeout: seconds allowed for a new connection.
        @param fresh: never take an idle connection.
        @return: a L{Deferred} firing with an idle
            L{proxyws.backend.BackendConnection}, or failing with the
            connection error.  Cancelling it gives up waiting.
        """
        key = backend.key
        if not fresh:
            protocol = self.takeIdle(backend)
            if protocol is not None:
                return succeed(protocol)
        limit = self._maxConnections
        if limit and self._busy.get(key, 0) + len(self._idle.get(key, ())) >= limit:
            waiter = Deferred(lambda d: self._forget(key, entry))
            entry = (waiter, backend, connectTimeout)
            self._waiting.setdefault(key, deque()).append(entry)
            return waiter
        return self._connect(backend, connectTimeout)

    def takeIdle(self, backend):
        """
        Take an idle connection to C{backend}, if one is at hand.

        @return: a L{proxyws.backend.BackendConnection}, or L{None}.
        """
        key = backend.key
        idle = self._idle.get(key)
        while idle:
            protocol = idle.pop()
            self._idleSet.discard(protocol)
            protocol.deadline.stop()
            transport = protocol.transport
            if not (protocol.idle and transport.connected and not transport.disconnecting):
                # Closing (its idle timer fired, or the backend closed
                # it): forget it now, not when it is gone.
                protocol.pool = None
                transport.loseConnection()
                continue
            self._busy[key] = self._busy.get(key, 0) + 1
            protocol.reused = True
            return protocol
        return None

    def _forget(self, key, entry):
        """
        A waiter gave up (its client left) before it got a connection.
        """
        waiting = self._waiting.get(key)
        if waiting and entry in waiting:
            waiting.remove(entry)

    def _handOver(self, waiter, protocol):
        """
        Give an idle connection to a waiter, or back to the pool when the
        waiter gave up meanwhile.
        """
        if waiter.called:
            self.release(protocol)
        else:
            waiter.callback(protocol)

    def _connect(self, backend, connectTimeout):
        key = backend.key
        factory = self._factories.get(key)
        if factory is None:
            factory = self._factories[key] = _PooledFactory(self, key)
        endpoint = backendEndpoint(self._reactor, backend, connectTimeout, self._tlsPolicy)
        self._busy[key] = self._busy.get(key, 0) + 1

        def failed(reason):
            self._free(key)
            return reason

        return endpoint.connect(factory).addErrback(failed)

    def _free(self, key):
        """
        One busy connection of C{key} is gone: let a waiter connect.
        """
        self._busy[key] -= 1
        waiting = self._waiting.get(key)
        if waiting:
            waiter, backend, connectTimeout = waiting.popleft()
            self._connect(backend, connectTimeout).chainDeferred(waiter)

    def release(self, protocol):
        """
        A response is complete and C{protocol} can take another request:
        keep it idle, or hand it to a request waiting for a connection.

        @param protocol: a L{proxyws.backend.BackendConnection} this pool
            lent out.
        """
        key = protocol.backendKey
        self._busy[key] -= 1
        waiting = self._waiting.get(key)
        if waiting:
            # Hand it over on the next turn of the event loop (not a
            # timeout): the connection finishes cleaning up the previous
            # response after this call returns.
            waiter = waiting.popleft()[0]
            self._busy[key] += 1
            protocol.reused = True
            self._reactor.callLater(0, self._handOver, waiter, protocol)
            return
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self._maxIdle:
            protocol.pool = None
            protocol.transport.loseConnection()
            return
        idle.append(protocol)
        self._idleSet.add(protocol)
        protocol.deadline.start(self._idleTimeout, protocol.transport.loseConnection)

    def lost(self, protocol):
        """
        C{protocol}'s connection closed: forget it.

        @param protocol: a L{proxyws.backend.BackendConnection} of this
            pool, idle or lent out.
        """
        key = protocol.backendKey
        protocol.pool = None
        if protocol in self._idleSet:
            # Idle: closed by the backend, or by its own idle timer.
            self._idleSet.discard(protocol)
            self._idle[key].remove(protocol)
        else:
            self._free(key)

    def idleCount(self, backend):
        """
        @return: how many idle connections to C{backend} are kept now.
        """
        return len(self._idle.get(backend.key, ()))

    def closeIdle(self):
        """
        Close every idle connection (at shutdown).
        """
        for protocol in list(self._idleSet):
            protocol.transport.loseConnection()
