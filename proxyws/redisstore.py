"""
A route store on a Redis server (C{[admin] route_store = "redis"}), so that
several proxyws instances behind a TCP balancer or DNS share one table of
API routes.

Keys, under C{[admin] redis_key_prefix} (C{P}, default C{proxyws}):

  - C{P:routes}, a hash: route prefix to the JSON of its data (target
    included);
  - C{P:activity}, a hash: route prefix to its last activity (seconds since
    the epoch);
  - C{P:epoch}, a string written with the first route table: when it is
    missing after a reconnection, Redis lost its data (a restart without
    persistence) and the first instance to notice writes its table back;
  - C{P:changes}, a pub/sub channel: one JSON message per change,
    C{{"prefix", "data", "activity"}} (C{data} null for a removal).

Every change is one Lua script that writes and publishes, so all instances
see changes in the order Redis applied them, a few milliseconds later.
Each instance sends the activity its proxy recorded every C{activity_interval}
seconds (the later time wins, in Redis) and reads back everyone's.

When Redis cannot be reached the store keeps serving the last table it had,
reports itself unhealthy (C{/healthz} says degraded), refuses changes
(L{RouteStoreError}: the API answers 503, which JupyterHub retries), and
reconnects with a growing delay; it logs once when Redis goes and once when
it comes back, and then loads the table again.

C{txredisapi} imports the global reactor when it is imported, so it is
imported only when a store starts (by then the reactor is installed).
"""

import json
import os
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import Deferred, DeferredList, fail, inlineCallbacks, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from zope.interface import implementer

from .apiroutes import cleanPrefix
from .errors import InvalidRoute, RouteStoreError
from .interfaces import IRouteStore
from .logs import ProxyLogger

_log = ProxyLogger()

# KEYS: routes, activity.  ARGV: prefix, data JSON, activity, channel,
# message.
ADD_SCRIPT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""

# KEYS: routes, activity.  ARGV: prefix, channel, message.  Returns
# whether the route existed.
REMOVE_SCRIPT = """
local existed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if existed == 1 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return existed
"""

# KEYS: routes, activity.  ARGV: prefix, time, prefix, time...  The later
# time wins; routes removed meanwhile are not brought back.
MERGE_SCRIPT = """
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    local old = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0')
    if tonumber(ARGV[i + 1]) > old then
      redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    end
  end
end
return 1
"""

# KEYS: routes, activity, epoch.  ARGV: new epoch, then prefix, data JSON,
# time for each route this instance knows.  Writes them only when Redis
# has no epoch (it lost its data, or is new); returns the epoch in force.
SEED_SCRIPT = """
local epoch = redis.call('GET', KEYS[3])
if epoch then return epoch end
redis.call('SET', KEYS[3], ARGV[1])
for i = 2, #ARGV, 3 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
end
return ARGV[1]
"""

# Reconnection delays: from RETRY_FIRST seconds, growing by RETRY_FACTOR
# up to RETRY_MAX.
RETRY_FIRST = 0.2
RETRY_FACTOR = 2.0
RETRY_MAX = 5.0


def parseRedisURL(url):
    """
    @param url: C{redis://[[user]:password@]host[:port][/db]}.
    @return: C{(host, port, db, username, password)}; C{db} is L{None} for
        database 0.
    """
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0)
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    return parts.hostname, parts.port or 6379, database or None, username, password


_classes = []


def _protocolClasses():
    """
    The txredisapi protocols the store uses, made on first use (importing
    txredisapi imports the global reactor).

    @return: C{(command protocol class, subscriber protocol class)}.
    """
    if _classes:
        return _classes
    import txredisapi

    class CommandProtocol(txredisapi.RedisProtocol):
        """
        The connection commands are sent on.
        """

        def connectionLost(self, why):
            txredisapi.RedisProtocol.connectionLost(self, why)
            self.factory.connection.lost(self, why)

    class SubscriberProtocol(txredisapi.SubscriberProtocol):
        """
        The connection subscribed to the change channel.
        """

        def messageReceived(self, pattern, channel, message):
            self.factory.store._changeReceived(message)

        def connectionLost(self, why):
            txredisapi.SubscriberProtocol.connectionLost(self, why)
            self.factory.connection.lost(self, why)

    _classes[:] = [CommandProtocol, SubscriberProtocol]
    return _classes


class _Factory(Factory):
    """
    Builds the store's Redis protocols with its credentials and database.
    (C{stopTrying} and C{connectionError} are what txredisapi's protocol
    calls on its factory when authentication or C{SELECT} fails.)

    @ivar connection: the L{_Connection} its protocols belong to.
    """

    noisy = False
    isLazy = True
    connection = None

    def __init__(self, store, protocolClass):
        self.store = store
        self.protocolClass = protocolClass

    def buildProtocol(self, addr):
        _, _, database, username, password = self.store._redis
        protocol = self.protocolClass(
            charset="utf-8", password=password, dbid=database, convertNumbers=False,
            username=username)
        protocol.factory = self
        return protocol

    def stopTrying(self):
        """
        Keep retrying: the store reconnects until it is stopped.
        """

    def connectionError(self, why):
        """
        Authentication or database selection failed.
        """
        self.store._setHealthy(False, why)


class _Connection:
    """
    One connection to Redis kept open: connected again after it is lost or
    an attempt fails, after a delay growing from L{RETRY_FIRST} by
    L{RETRY_FACTOR} up to L{RETRY_MAX} seconds.  (Twisted's C{ClientService}
    does the same but logs every attempt; the store logs once.)

    @ivar protocol: the connected protocol, once L{ready} accepted it.
    """

    protocol = None

    def __init__(self, reactor, endpoint, factory, ready, down):
        """
        @param ready: called with a new protocol; returns a L{Deferred}
            (a failure closes the connection).
        @param down: called with the reason when an attempt fails or the
            connection is lost.
        """
        self._reactor = reactor
        self._endpoint = endpoint
        self._factory = factory
        factory.connection = self
        self._ready = ready
        self._down = down
        self._failures = 0
        self._attempt = self._retry = None
        self._stopped = None

    def start(self):
        """
        Connect.
        """
        self._retry = None
        self._attempt = self._endpoint.connect(self._factory)
        self._attempt.addCallbacks(self._connected, self._failed)

    def _connected(self, protocol):
        self._attempt = None

        def accepted(_):
            self._failures = 0
            self.protocol = protocol

        def refused(failure):
            if protocol.transport is not None:
                protocol.transport.abortConnection()
            self._down(failure.getErrorMessage())

        self._ready(protocol).addCallbacks(accepted, refused)

    def _failed(self, failure):
        self._attempt = None
        if self._stopped is None:
            self._down(failure.getErrorMessage())
            self._again()

    def lost(self, protocol, why):
        """
        The connection of C{protocol} was lost.
        """
        if protocol is self.protocol:
            self.protocol = None
        if self._stopped is not None:
            if not self._stopped.called:
                self._stopped.callback(None)
            return
        self._down(why.getErrorMessage())
        self._again()

    def _again(self):
        delay = min(RETRY_MAX, RETRY_FIRST * RETRY_FACTOR ** self._failures)
        self._failures += 1
        if self._retry is None or not self._retry.active():
            self._retry = self._reactor.callLater(delay, self.start)

    def stop(self):
        """
        Stop connecting and close the connection.

        @return: a L{Deferred} firing once it is closed.
        """
        self._stopped = Deferred()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._attempt is not None:
            self._attempt.cancel()
        protocol = self.protocol
        if protocol is None or protocol.transport is None:
            self._stopped.callback(None)
        else:
            protocol.transport.loseConnection()
        return self._stopped


@implementer(IRouteStore)
class RedisRouteStore:
    """
    Routes kept in Redis and shared by every instance using the same keys.

    @ivar table: the L{proxyws.apiroutes.APIRouteTable}.
    @ivar healthy: whether Redis is reachable and the table loaded from it.
    """

    healthy = False

    def __init__(self, url, table, reactor, keyPrefix="proxyws", interval=5.0, timeout=5.0):
        """
        @param url: C{[admin] redis_url}.
        @param table: an empty L{proxyws.apiroutes.APIRouteTable}.
        @param keyPrefix: C{[admin] redis_key_prefix}.
        @param interval: seconds between two exchanges of last activity.
        @param timeout: seconds a connection attempt or a command may take
            before Redis counts as unreachable.
        """
        self.url = url
        self.table = table
        self._redis = parseRedisURL(url)
        self._reactor = reactor
        self._interval = interval
        self._timeout = timeout
        self._keys = [keyPrefix + ":routes", keyPrefix + ":activity", keyPrefix + ":epoch"]
        self._channel = keyPrefix + ":changes"
        self._command = self._subscriber = None
        self._connections = []
        self._synced = self._syncing = self._stopping = False
        self._reported = None
        self._epoch = None
        self._unsent = {}
        self._started = None
        self._loop = None

    def start(self):
        """
        Connect (two connections: commands and the change channel) and load
        the table.

        @return: a L{Deferred} firing once the table is loaded, or once the
            first attempt to connect failed (the store then serves an empty
            table and keeps trying).
        """
        command, subscriber = _protocolClasses()
        self._started = Deferred()
        host, port = self._redis[:2]
        for protocolClass, ready in ((command, self._commandReady),
                                     (subscriber, self._subscriberReady)):
            endpoint = HostnameEndpoint(self._reactor, host, port, timeout=self._timeout)
            connection = _Connection(
                self._reactor, endpoint, _Factory(self, protocolClass), ready, self._down)
            self._connections.append(connection)
            connection.start()
        self._loop = LoopingCall(self.flushActivity)
        self._loop.clock = self._reactor
        self._loop.start(self._interval, now=False)
        return self._started

    def stop(self):
        """
        Send the pending activity (when Redis is reachable) and disconnect.
        """
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        done = self.flushActivity() if self.healthy else succeed(None)

        def disconnect(_):
            self._stopping = True
            return DeferredList([connection.stop() for connection in self._connections])

        return done.addBoth(disconnect).addCallback(lambda _: None)

    # Changes ---------------------------------------------------------------

    def add(self, prefix, data):
        """
        Store a route in Redis, then in the table.
        """
        if not self.healthy:
            return fail(RouteStoreError(self._unreachable()))
        try:
            route = self.table.makeRoute(prefix, data)
            body = json.dumps(route.data)
        except (InvalidRoute, TypeError, ValueError):
            return fail()
        now = self._reactor.seconds()
        message = json.dumps({"prefix": route.prefix, "data": route.data, "activity": now})
        stored = self._call("eval", ADD_SCRIPT, self._keys[:2],
                            [route.prefix, body, repr(now), self._channel, message])

        def added(_):
            self.table.put(route, now)
            return route

        return stored.addCallback(added)

    def remove(self, prefix):
        """
        Remove a route from Redis, then from the table.
        """
        if not self.healthy:
            return fail(RouteStoreError(self._unreachable()))
        prefix = cleanPrefix(prefix)
        message = json.dumps({"prefix": prefix, "data": None})
        removed = self._call("eval", REMOVE_SCRIPT, self._keys[:2],
                             [prefix, self._channel, message])
        return removed.addCallback(lambda existed: self.table.remove(prefix) or bool(existed))

    def _changeReceived(self, message):
        """
        A change made by any instance (this one included) reached the
        channel: apply it to the table.
        """
        try:
            change = json.loads(message)
            prefix, data = change["prefix"], change["data"]
            if data is None:
                self.table.remove(prefix)
                return
            route = self.table.makeRoute(prefix, data)
            when = float(change.get("activity") or 0.0)
        except (ValueError, KeyError, TypeError, InvalidRoute) as e:
            _log.warn("route store: change {message!r} from Redis ignored: {why}",
                      message=message, why=e)
            return
        known = self.table.lastActivity(route.prefix) if self.table.get(route.prefix) else 0.0
        self.table.put(route, max(when, known))

    # Activity --------------------------------------------------------------

    def flushActivity(self):
        """
        Send the activity recorded since the last call (the later time
        wins) and read back every instance's.

        @return: a L{Deferred} firing when done (never failing).
        """
        for prefix, when in self.table.takeRecent().items():
            if when > self._unsent.get(prefix, 0.0):
                self._unsent[prefix] = when
        if not (self.healthy and self._synced):
            self._maybeSync()
            return succeed(None)
        sending = dict(self._unsent)
        arguments = []
        for prefix, when in sending.items():
            arguments += [prefix, repr(when)]
        sent = self._call("eval", MERGE_SCRIPT, self._keys[:2], arguments) if arguments else succeed(None)

        def forget(_):
            for prefix, when in sending.items():
                if self._unsent.get(prefix) == when:
                    del self._unsent[prefix]
            return self._call("hgetall", self._keys[1])

        def merge(activity):
            self.table.mergeActivity(_times(activity))

        return sent.addCallback(forget).addCallback(merge).addErrback(lambda _: None)

    # Connections -----------------------------------------------------------

    def _commandReady(self, protocol):
        def ready(_):
            self._command = protocol
            self._maybeSync()

        return self._timed(protocol.whenConnected()).addCallback(ready)

    def _subscriberReady(self, protocol):
        def subscribe(_):
            return self._timed(protocol.subscribe(self._channel))

        def ready(_):
            self._subscriber = protocol
            self._maybeSync()

        return self._timed(protocol.whenConnected()).addCallback(subscribe).addCallback(ready)

    def _down(self, why):
        """
        A connection attempt failed or a connection was lost.
        """
        self._command = self._connections[0].protocol
        self._subscriber = self._connections[1].protocol
        self._synced = False
        if not self._stopping:
            self._setHealthy(False, why)

    def _maybeSync(self):
        if self._command is None or self._subscriber is None or self._synced or self._syncing:
            return
        self._syncing = True
        self._sync().addCallbacks(self._syncDone, self._syncFailed)

    @inlineCallbacks
    def _sync(self):
        """
        Load the table from Redis (the change channel is already
        subscribed, so no change is missed), after writing this instance's
        table back if Redis lost its data.
        """
        fresh = os.urandom(8).hex()
        arguments = [fresh]
        activity = self.table.activity()
        for route in self.table.routes():
            arguments += [route.prefix, json.dumps(route.data), repr(activity[route.prefix])]
        epoch = yield self._call("eval", SEED_SCRIPT, self._keys, arguments)
        if epoch == fresh and self._epoch is not None:
            _log.warn("route store: Redis at {url} had lost the routes; wrote back the {count} "
                      "this instance knew", url=self.url, count=len(self.table))
        self._epoch = epoch
        stored = yield self._call("hgetall", self._keys[0])
        times = yield self._call("hgetall", self._keys[1])
        routes = []
        for prefix, body in stored.items():
            try:
                routes.append(self.table.makeRoute(prefix, json.loads(body)))
            except (ValueError, InvalidRoute) as e:
                _log.warn("route store: route {prefix} in Redis skipped: {why}", prefix=prefix, why=e)
        self.table.replace(routes, _times(times))
        self.table.mergeActivity(self._unsent)

    def _syncDone(self, _):
        self._syncing = False
        self._synced = True
        self._setHealthy(True)

    def _syncFailed(self, failure):
        self._syncing = False
        self._setHealthy(False, failure.getErrorMessage())

    def _setHealthy(self, healthy, why=None):
        self.healthy = healthy
        if healthy != self._reported:
            if healthy:
                _log.info("route store: Redis at {url} reachable{again}, {count} routes",
                          url=self.url, count=len(self.table),
                          again=" again" if self._reported is False else "")
            else:
                _log.warn("route store: Redis at {url} unreachable ({why}); serving the {count} "
                          "routes known and retrying", url=self.url, why=why, count=len(self.table))
            self._reported = healthy
        if self._started is not None and not self._started.called and (healthy or why):
            self._started.callback(None)

    def _unreachable(self):
        return "the route store (Redis at {}) is unreachable".format(self.url)

    # Commands --------------------------------------------------------------

    def _timed(self, deferred):
        return deferred.addTimeout(self._timeout, self._reactor)

    def _call(self, name, *arguments):
        """
        Send a command; a timeout or a lost connection closes the
        connection (the reconnection then loads the table again).

        @return: a L{Deferred} of the reply, failing with L{RouteStoreError}.
        """
        protocol = self._command
        if protocol is None:
            return fail(RouteStoreError(self._unreachable()))
        try:
            reply = getattr(protocol, name)(*arguments)
        except Exception as e:
            return fail(RouteStoreError("{}: {}".format(self._unreachable(), e)))

        def failed(failure):
            if protocol.transport is not None and protocol.connected:
                # A reply that never came leaves the replies that follow
                # out of step: this connection cannot be used any more.
                protocol.transport.abortConnection()
            raise RouteStoreError("{}: {}".format(self._unreachable(), failure.getErrorMessage()))

        return self._timed(reply).addErrback(failed)


def _times(activity):
    """
    Activity times as Redis returns them (text) as floats; bad ones are
    left out.
    """
    times = {}
    for prefix, text in (activity or {}).items():
        try:
            times[prefix] = float(text)
        except (TypeError, ValueError):
            continue
    return times
