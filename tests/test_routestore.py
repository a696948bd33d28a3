"""
Tests for the route stores: L{proxyws.routestore} (memory, file) and
L{proxyws.redisstore} (Redis, against a real C{redis-server} started on a
free port).
"""

import json
import os
import shutil
import tempfile

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from proxyws.apiroutes import APIRouteTable, formatTime
from proxyws.errors import InvalidRoute, RouteStoreError
from proxyws.interfaces import IRouteStore
from proxyws.redisstore import RedisRouteStore, parseRedisURL
from proxyws.routestore import FileRouteStore, MemoryRouteStore, makeRouteStore
from proxyws.values import AdminSettings

from .adminhelpers import RedisServer
from .wsbackends import waitUntil

NOW = 1795000000.0
TARGET = {"target": "http://127.0.0.1:9001", "jupyterhub": True, "user": "alice"}


class InterfaceTests(SynchronousTestCase):
    """
    Every store provides L{IRouteStore}, and C{[admin] route_store} picks
    one.
    """

    def test_verify(self):
        """
        C{verifyObject} on each store.
        """
        clock = Clock()
        for store in [MemoryRouteStore(APIRouteTable(), clock),
                      FileRouteStore("/nonexistent/r.json", APIRouteTable(), clock),
                      RedisRouteStore("redis://127.0.0.1:1/0", APIRouteTable(), clock)]:
            self.assertTrue(verifyObject(IRouteStore, store))

    def test_makeRouteStore(self):
        """
        The kind named in the settings, with the settings' table options.
        """
        clock = Clock()
        for kind, cls in [("memory", MemoryRouteStore), ("file", FileRouteStore),
                          ("redis", RedisRouteStore)]:
            settings = AdminSettings(address="127.0.0.1", port=1, routeStore=kind,
                                     routeStoreFile="/tmp/r.json", hostRouting=True)
            store = makeRouteStore(settings, clock)
            self.assertIsInstance(store, cls)
            self.assertTrue(store.table.hostRouting)

    def test_redisURL(self):
        """
        Redis URLs give host, port, database, user and password.
        """
        for url, parsed in [
            ("redis://127.0.0.1:6379/0", ("127.0.0.1", 6379, None, None, None)),
            ("redis://redis.internal", ("redis.internal", 6379, None, None, None)),
            ("redis://:p%40ss@127.0.0.1:7000/3", ("127.0.0.1", 7000, 3, None, "p@ss")),
            ("redis://hub:pw@127.0.0.1/1", ("127.0.0.1", 6379, 1, "hub", "pw")),
        ]:
            self.assertEqual(parseRedisURL(url), parsed, url)


class MemoryStoreTests(SynchronousTestCase):
    """
    The memory store changes its table at once.
    """

    def test_addRemove(self):
        """
        Added routes are in the table, active at the reactor's time.
        """
        clock = Clock()
        clock.advance(NOW)
        store = MemoryRouteStore(APIRouteTable(), clock)
        self.successResultOf(store.start())
        route = self.successResultOf(store.add("/user/alice/", dict(TARGET)))
        self.assertEqual(route.prefix, "/user/alice")
        self.assertEqual(store.table.lastActivity("/user/alice"), NOW)
        self.failureResultOf(store.add("/x", {"target": "nope"}), InvalidRoute)
        self.assertTrue(self.successResultOf(store.remove("/user/alice")))
        self.assertFalse(self.successResultOf(store.remove("/user/alice")))
        self.successResultOf(store.stop())


class FileStoreTests(SynchronousTestCase):
    """
    The file store: routes survive a restart, and the file is always whole.
    """

    def setUp(self):
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.path = os.path.join(self.directory, "routes.json")
        self.clock = Clock()
        self.clock.advance(NOW)

    def store(self, interval=5.0):
        """
        A started file store on L{path}.
        """
        store = FileRouteStore(self.path, APIRouteTable(), self.clock, interval)
        self.successResultOf(store.start())
        self.addCleanup(store.stop)
        return store

    def added(self, store, prefix, data):
        """
        Add a route and write it (the write happens at the end of the
        reactor turn).
        """
        done = store.add(prefix, data)
        self.clock.advance(0)
        return self.successResultOf(done)

    def onDisk(self):
        """
        The file's routes.
        """
        with open(self.path) as f:
            return json.load(f)["routes"]

    def test_missingFile(self):
        """
        A missing file is an empty table.
        """
        self.assertEqual(len(self.store().table), 0)
        self.assertFalse(os.path.exists(self.path))

    def test_restart(self):
        """
        A new store on the same file has the routes, their data and their
        last activity.
        """
        first = self.store()
        self.added(first, "/user/alice", dict(TARGET))
        self.added(first, "/", {"target": "http://127.0.0.1:8081", "hub": True})
        first.table.touch("/user/alice", NOW + 42)
        self.successResultOf(first.stop())
        second = self.store()
        self.assertEqual(second.table.documents(), first.table.documents())
        self.assertEqual(second.table.lastActivity("/user/alice"), NOW + 42)
        self.assertEqual(second.table.lookup(None, b"/user/alice/api").prefix, "/user/alice")

    def test_removeWritten(self):
        """
        A removed route is gone from the file once the Deferred fires.
        """
        store = self.store()
        self.added(store, "/a", {"target": "http://127.0.0.1:1"})
        self.added(store, "/b", {"target": "http://127.0.0.1:1"})
        removed = store.remove("/a")
        self.clock.advance(0)
        self.assertTrue(self.successResultOf(removed))
        self.assertEqual(list(self.onDisk()), ["/b"])

    def test_oneWritePerTurn(self):
        """
        Changes made in one reactor turn share one write.
        """
        store = self.store()
        writes = []
        original = store._writeNow
        store._writeNow = lambda: (writes.append(1), original())[1]
        done = [store.add("/u{}".format(n), {"target": "http://127.0.0.1:1"}) for n in range(20)]
        self.clock.advance(0)
        for d in done:
            self.successResultOf(d)
        self.assertEqual((len(writes), len(self.onDisk())), (1, 20))

    def test_activityBatched(self):
        """
        Activity is written every interval when there was some, not per
        request.
        """
        store = self.store(interval=5.0)
        self.added(store, "/a", {"target": "http://127.0.0.1:1"})
        for n in range(100):
            store.table.touch("/a", NOW + n)
        self.assertEqual(self.onDisk()["/a"]["last_activity"], formatTime(NOW))
        self.clock.advance(5)
        self.assertEqual(self.onDisk()["/a"]["last_activity"], formatTime(NOW + 99))

    def test_crashMidWrite(self):
        """
        A write that fails before the rename (as a crash would stop it)
        leaves the old file whole, no temporary file, the change undone,
        and the store unhealthy until a write succeeds.
        """
        store = self.store()
        self.added(store, "/a", {"target": "http://127.0.0.1:1"})
        with open(self.path, "rb") as f:
            before = f.read()

        def crash(source, destination):
            raise OSError(28, "No space left on device")

        self.patch(os, "replace", crash)
        done = store.add("/b", {"target": "http://127.0.0.1:2"})
        self.clock.advance(0)
        failure = self.failureResultOf(done, RouteStoreError)
        self.assertIn("No space left on device", str(failure.value))
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(os.listdir(self.directory), ["routes.json"])
        self.assertIsNone(store.table.get("/b"))
        self.assertFalse(store.healthy)
        self.patch(os, "replace", shutil.move)
        self.added(store, "/b", {"target": "http://127.0.0.1:2"})
        self.assertTrue(store.healthy)
        self.assertEqual(sorted(self.onDisk()), ["/a", "/b"])

    def test_leftoverTemporary(self):
        """
        A temporary file left by a crash (half written) is not read.
        """
        store = self.store()
        self.added(store, "/a", {"target": "http://127.0.0.1:1"})
        with open(os.path.join(self.directory, ".routes.json.x1y2.tmp"), "w") as f:
            f.write('{"version": 1, "routes": {"/b": {"tar')
        self.assertEqual(list(self.store().table.documents()), ["/a"])

    def test_badFile(self):
        """
        A file that is not a route file stops the store with a message
        naming it.
        """
        for content, text in [("{not json", "cannot read the route file"),
                              ('{"version": 1}', "is not a route file")]:
            with open(self.path, "w") as f:
                f.write(content)
            store = FileRouteStore(self.path, APIRouteTable(), self.clock)
            failure = self.failureResultOf(store.start(), RouteStoreError)
            self.assertIn(text, str(failure.value))
            self.assertIn(repr(self.path), str(failure.value))

    def test_badRouteSkipped(self):
        """
        A route whose target cannot be used is skipped; the others load.
        """
        with open(self.path, "w") as f:
            json.dump({"version": 1, "routes": {
                "/a": {"target": "http://127.0.0.1:1", "last_activity": formatTime(NOW)},
                "/b": {"target": "gopher://x"}}}, f)
        self.assertEqual(list(self.store().table.documents()), ["/a"])


class RedisStoreTests(TestCase):
    """
    Two stores on one real Redis server, as two proxyws instances share it.
    """

    timeout = 60

    def setUp(self):
        from twisted.internet import reactor

        self.reactor = reactor
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.kill)

    @inlineCallbacks
    def startStore(self, interval=0.2):
        """
        A started Redis store on the test's server.
        """
        store = RedisRouteStore(self.redis.url, APIRouteTable(), self.reactor,
                                interval=interval, timeout=2.0)
        self.addCleanup(store.stop)
        yield store.start()
        return store

    @inlineCallbacks
    def test_shared(self):
        """
        A route added through one instance reaches the other; one removed
        through the other is gone from both.
        """
        first = yield self.startStore()
        second = yield self.startStore()
        self.assertTrue(first.healthy and second.healthy)
        yield first.add("/user/alice/", dict(TARGET))
        yield waitUntil(lambda: second.table.get("/user/alice") is not None, timeout=10)
        self.assertEqual(second.table.get("/user/alice").data, TARGET)
        self.assertEqual(second.table.lookup(None, b"/user/alice/api").prefix, "/user/alice")
        removed = yield second.remove("/user/alice")
        self.assertTrue(removed)
        yield waitUntil(lambda: first.table.get("/user/alice") is None, timeout=10)
        removed = yield second.remove("/user/alice")
        self.assertFalse(removed)

    @inlineCallbacks
    def test_loadedAtStart(self):
        """
        An instance started later loads the routes already in Redis.
        """
        first = yield self.startStore()
        yield first.add("/a", {"target": "http://127.0.0.1:1"})
        second = yield self.startStore()
        self.assertEqual(second.table.documents(), first.table.documents())

    @inlineCallbacks
    def test_activityMerged(self):
        """
        Activity recorded by one instance reaches the other in a batch; the
        later time wins.
        """
        first = yield self.startStore()
        second = yield self.startStore()
        route = yield first.add("/a", {"target": "http://127.0.0.1:1"})
        yield waitUntil(lambda: second.table.get("/a") is not None, timeout=10)
        later = first.table.lastActivity(route.prefix) + 3600
        first.table.touch("/a", later)
        second.table.touch("/a", later - 60)
        yield waitUntil(lambda: second.table.lastActivity("/a") == later, timeout=10)
        yield waitUntil(lambda: first.table.activity() == {"/a": later}, timeout=10)

    @inlineCallbacks
    def test_invalidRoute(self):
        """
        A bad target is refused before Redis is asked.
        """
        store = yield self.startStore()
        yield self.assertFailure(store.add("/a", {"target": "x"}), InvalidRoute)

    @inlineCallbacks
    def test_redisRestarted(self):
        """
        Redis killed: both instances keep their table, report themselves
        unhealthy and refuse changes; Redis back (empty, without
        persistence): the table is written back, both are healthy and
        changes flow again.
        """
        first = yield self.startStore()
        second = yield self.startStore()
        yield first.add("/user/alice", dict(TARGET))
        yield waitUntil(lambda: second.table.get("/user/alice") is not None, timeout=10)
        self.redis.kill()
        yield waitUntil(lambda: not first.healthy and not second.healthy, timeout=10)
        for store in (first, second):
            self.assertEqual(store.table.lookup(None, b"/user/alice/x").prefix, "/user/alice")
        yield self.assertFailure(first.add("/b", {"target": "http://127.0.0.1:1"}),
                                 RouteStoreError)
        yield self.assertFailure(second.remove("/user/alice"), RouteStoreError)
        self.redis.start()
        yield waitUntil(lambda: first.healthy and second.healthy, timeout=20)
        for store in (first, second):
            self.assertEqual(list(store.table.documents()), ["/user/alice"])
        yield second.add("/b", {"target": "http://127.0.0.1:2"})
        yield waitUntil(lambda: first.table.get("/b") is not None, timeout=10)
        third = yield self.startStore()
        self.assertEqual(sorted(third.table.documents()), ["/b", "/user/alice"])

    @inlineCallbacks
    def test_unreachableAtStart(self):
        """
        A store whose Redis is down at start serves an empty table,
        unhealthy, and loads the table once Redis comes.
        """
        self.redis.kill()
        store = yield self.startStore()
        self.assertFalse(store.healthy)
        self.assertEqual(len(store.table), 0)
        self.redis.start()
        yield waitUntil(lambda: store.healthy, timeout=20)
        yield store.add("/a", {"target": "http://127.0.0.1:1"})
        self.assertEqual(list(store.table.documents()), ["/a"])
