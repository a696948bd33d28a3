"""
Route stores: where the routes added through the configurable-http-proxy
API are kept (L{proxyws.interfaces.IRouteStore}).

Every store keeps an L{proxyws.apiroutes.APIRouteTable} in memory, which
the proxy consults for each request, and its own copy:

  - L{MemoryRouteStore} (C{route_store = "memory"}, the default): the table
    is all there is; routes are gone after a restart, as with
    configurable-http-proxy's own store.
  - L{FileRouteStore} (C{"file"}): a JSON file, rewritten atomically
    (temporary file, fsync, rename) on every change, so routes survive a
    restart and a crash leaves either the old file or the new one whole.
  - L{proxyws.redisstore.RedisRouteStore} (C{"redis"}): a Redis server
    shared by several proxyws instances.

The times routes were last active (L{APIRouteTable.touch}, a dict store on
the request path) are written in batches every C{[admin]
activity_interval} seconds, never once per request.
"""

import json
import os
import tempfile

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import LoopingCall
from zope.interface import implementer

from .apiroutes import LAST_ACTIVITY, APIRouteTable, formatTime, parseTime
from .errors import InvalidRoute, RouteStoreError
from .interfaces import IRouteStore
from .logs import ProxyLogger

_log = ProxyLogger()

# The version of the file store's format, written in the file.
FILE_VERSION = 1


def makeRouteStore(settings, reactor, server=None):
    """
    The route store C{[admin]} asks for, not yet started.

    @param settings: an L{proxyws.values.AdminSettings}.
    @param reactor: the reactor (its C{seconds} gives the activity times).
    @param server: the L{proxyws.values.ServerSettings} whose timeouts
        the routes' L{proxyws.apiroutes.APIRoute.route} take, or L{None}.
    @return: an L{IRouteStore} provider.
    """
    table = APIRouteTable(hostRouting=settings.hostRouting, server=server)
    if settings.routeStore == "file":
        return FileRouteStore(
            settings.routeStoreFile, table, reactor, settings.activityInterval)
    if settings.routeStore == "redis":
        from .redisstore import RedisRouteStore

        return RedisRouteStore(
            settings.redisURL, table, reactor, keyPrefix=settings.redisKeyPrefix,
            interval=settings.activityInterval)
    return MemoryRouteStore(table, reactor)


@implementer(IRouteStore)
class MemoryRouteStore:
    """
    Routes kept only in memory, in the table itself.

    @ivar table: the L{APIRouteTable}.
    @ivar healthy: always L{True}.
    """

    healthy = True

    def __init__(self, table, reactor):
        """
        @param table: an empty L{APIRouteTable}.
        @param reactor: gives the time routes are added at.
        """
        self.table = table
        self._reactor = reactor

    def start(self):
        """
        Nothing to load.
        """
        return succeed(None)

    def stop(self):
        """
        Nothing to write.
        """
        return succeed(None)

    def add(self, prefix, data):
        """
        Add or replace a route at once.
        """
        try:
            return succeed(self.table.add(prefix, data, self._reactor.seconds()))
        except InvalidRoute:
            return fail()

    def remove(self, prefix):
        """
        Remove a route at once.
        """
        return succeed(self.table.remove(prefix))


def writeAtomically(path, data):
    """
    Replace a file's content so that a crash at any point leaves the old
    content or the new one whole: write a temporary file beside it, fsync
    it, rename it over the file, fsync the folder.

    @param path: the file.
    @param data: the new content (bytes).
    @raise OSError: when it cannot be written; the file is unchanged.
    """
    folder = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    folderDescriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(folderDescriptor)
    finally:
        os.close(folderDescriptor)


def fileDocument(table):
    """
    The file store's content for a table: the routes as C{GET /api/routes}
    shows them.

    @return: bytes of JSON.
    """
    document = {"version": FILE_VERSION, "routes": table.documents()}
    return json.dumps(document, indent=1, sort_keys=True).encode("utf-8") + b"\n"


def readFileDocument(path, table):
    """
    Read a file store's routes.

    @return: C{(routes, activity)}: L{proxyws.apiroutes.APIRoute}s and
        their last activity by prefix; nothing when the file does not
        exist.
    @raise RouteStoreError: when it exists but cannot be read or is not a
        route file.
    """
    try:
        with open(path, "rb") as f:
            document = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        return [], {}
    except (OSError, ValueError) as e:
        raise RouteStoreError(
            "cannot read the route file {!r}: {}; fix or remove it".format(path, e)) from None
    if not isinstance(document, dict) or not isinstance(document.get("routes"), dict):
        raise RouteStoreError(
            "{!r} is not a route file (no \"routes\" table); fix or remove it".format(path))
    routes, activity = [], {}
    for prefix, data in document["routes"].items():
        try:
            route = table.makeRoute(prefix, data)
            when = parseTime(data.get(LAST_ACTIVITY) or formatTime(0))
        except (InvalidRoute, ValueError, TypeError) as e:
            _log.warn("route file {path}: route {prefix} skipped: {why}",
                      path=path, prefix=prefix, why=e)
            continue
        routes.append(route)
        activity[route.prefix] = when
    return routes, activity


@implementer(IRouteStore)
class FileRouteStore:
    """
    Routes kept in a JSON file, rewritten atomically on each change (the
    changes of one reactor turn share one write) and every
    C{activity_interval} seconds when routes were active.

    @ivar table: the L{APIRouteTable}.
    @ivar healthy: L{False} after a write failed, until one succeeds.
    """

    healthy = True

    def __init__(self, path, table, reactor, interval=5.0):
        """
        @param path: the file.
        @param table: an empty L{APIRouteTable}.
        @param interval: seconds between writes of the last activity.
        """
        self.path = path
        self.table = table
        self._reactor = reactor
        self._interval = interval
        self._loop = None
        self._waiting = []
        self._scheduled = None

    def start(self):
        """
        Read the file (a missing file is an empty table) and start writing
        the last activity every interval.

        @return: a L{Deferred}, failing with L{RouteStoreError} for a file
            that exists but is not a readable route file.
        """
        try:
            routes, activity = readFileDocument(self.path, self.table)
        except RouteStoreError:
            return fail()
        self.table.replace(routes, activity)
        self._loop = LoopingCall(self.flushActivity)
        self._loop.clock = self._reactor
        self._loop.start(self._interval, now=False)
        return succeed(None)

    def stop(self):
        """
        Write the pending activity and stop.
        """
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        active = self.table.takeRecent()
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
            self._write()
        elif active:
            try:
                self._writeNow()
            except RouteStoreError:
                pass  # logged by _writeNow
        return succeed(None)

    def flushActivity(self):
        """
        Write the file if routes were active since the last write.
        """
        if self.table.takeRecent():
            self._changed(lambda: None)

    def add(self, prefix, data):
        """
        Add or replace a route; the L{Deferred} fires once the file has it.
        """
        old = self.table.get(prefix)
        oldActivity = self.table.lastActivity(old.prefix) if old else None
        try:
            route = self.table.add(prefix, data, self._reactor.seconds())
        except InvalidRoute:
            return fail()

        def undo():
            self.table.remove(route.prefix)
            if old is not None:
                self.table.put(old, oldActivity)

        return self._changed(undo).addCallback(lambda _: route)

    def remove(self, prefix):
        """
        Remove a route; the L{Deferred} fires once the file no longer has it.
        """
        old = self.table.get(prefix)
        if old is None:
            return succeed(False)
        oldActivity = self.table.lastActivity(old.prefix)
        self.table.remove(prefix)
        return self._changed(lambda: self.table.put(old, oldActivity)).addCallback(
            lambda _: True)

    def _changed(self, undo):
        """
        Write the table at the end of this reactor turn.

        @param undo: reverts this change if the write fails.
        @return: a L{Deferred} firing when written, or failing with
            L{RouteStoreError} (the change then undone).
        """
        done = Deferred()
        self._waiting.append((done, undo))
        if self._scheduled is None or not self._scheduled.active():
            self._scheduled = self._reactor.callLater(0, self._write)
        return done

    def _write(self):
        waiting, self._waiting = self._waiting, []
        try:
            self._writeNow()
        except RouteStoreError as e:
            for _, undo in reversed(waiting):
                undo()
            for done, _ in waiting:
                done.errback(e)
            return
        for done, _ in waiting:
            done.callback(None)

    def _writeNow(self):
        try:
            writeAtomically(self.path, fileDocument(self.table))
        except OSError as e:
            if self.healthy:
                _log.error("cannot write the route file {path}: {why}", path=self.path, why=e)
            self.healthy = False
            raise RouteStoreError(
                "cannot write the route file {!r}: {}".format(self.path, e.strerror or e)
            ) from None
        if not self.healthy:
            _log.info("route file {path} written again", path=self.path)
        self.healthy = True
