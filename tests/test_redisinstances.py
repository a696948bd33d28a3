"""
Two C{twistd proxyws} processes sharing one Redis route store, as several
instances behind a TCP balancer share it: a route added through one
instance's API is served by the other, one removed through the other is
gone from both, and when Redis dies and comes back both keep serving the
routes they knew, report themselves degraded, and then take changes again.

A real C{redis-server} (without persistence) runs on a free port; the
instances and the backend run on 127.0.0.1.
"""

import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from twisted.trial.unittest import SynchronousTestCase

from .adminhelpers import RedisServer
from .helpers import freePort
from .httpclient import Client
from .test_twistd import WAIT, startProxyProcess, waitFor

# An instance: a public listener and an admin listener (loopback, no
# token) with the Redis route store; no route of its own, so a path no API
# route covers gets 404.
CONFIG = """\
[[listen]]
address = "127.0.0.1"
port = {public}

[admin]
address = "127.0.0.1"
port = {admin}
route_store = "redis"
redis_url = "{url}"
redis_key_prefix = "proxyws-test"
activity_interval = 0.5
"""

# Routes added to measure how long a route takes to reach the other
# instance.
PROPAGATION_ROUNDS = 10

# What the logs say when Redis goes and when it is back.
GONE = "unreachable ("
BACK = "reachable again"


class _EchoPath(BaseHTTPRequestHandler):
    """
    Answers every GET with C{done PATH}, in one write (written in two, the
    answer would wait for a delayed ACK, 40 ms, in every measured delay).
    """

    protocol_version = "HTTP/1.1"
    wbufsize = 65536

    def do_GET(self):
        """
        Answer with the path.
        """
        body = "done {}\n".format(self.path).encode("ascii")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        """
        Keep the test output clean.
        """


def startBackend(testCase):
    """
    Serve L{_EchoPath} on 127.0.0.1 from a thread until the test ends.

    @return: its URL.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoPath)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()
        thread.join(WAIT)

    testCase.addCleanup(stop)
    return "http://127.0.0.1:{}".format(server.server_address[1])


class Instance:
    """
    One proxyws process: its process, and clients of its public and admin
    listeners.
    """

    def __init__(self, testCase, redisURL):
        """
        Start it on free ports (it is killed when the test ends).

        @param redisURL: the C{redis://} URL of the shared store.
        """
        self.publicPort, self.adminPort = freePort(), freePort()
        self.process = startProxyProcess(testCase, CONFIG.format(
            public=self.publicPort, admin=self.adminPort, url=redisURL))
        self.public = Client(self.publicPort)
        self.admin = Client(self.adminPort)

    def waitUntilListening(self):
        """
        Wait for both listeners.
        """
        self.process.waitForPort(self.publicPort)
        self.process.waitForPort(self.adminPort)

    def serves(self, path):
        """
        @return: whether a GET of C{path} reaches the backend.
        """
        answer = self.public.get(path)
        return answer.status == 200 and answer.body == "done {}\n".format(path).encode("ascii")

    def health(self):
        """
        @return: C{GET /healthz}'s body, as text.
        """
        return self.admin.get("/healthz").body.decode("utf-8")

    def add(self, prefix, target):
        """
        Add a route through the API.

        @return: the status.
        """
        return self.admin.request("POST", "/api/routes" + prefix, {"target": target}).status

    def remove(self, prefix):
        """
        Remove a route through the API.

        @return: the status.
        """
        return self.admin.request("DELETE", "/api/routes" + prefix).status


class TwoInstancesTests(SynchronousTestCase):
    """
    Two instances on one Redis.
    """

    def setUp(self):
        """
        Start Redis, a backend and the two instances.
        """
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.kill)
        self.target = startBackend(self)
        self.first = Instance(self, self.redis.url)
        self.second = Instance(self, self.redis.url)
        for instance in (self.first, self.second):
            instance.waitUntilListening()
            waitFor(lambda: instance.health() == "ok\n", what="the route store", step=0.002)

    def servedByBoth(self, path):
        """
        Whether both instances serve C{path}.
        """
        return all(instance.serves(path) for instance in (self.first, self.second))

    def test_addOnOneServedByOther(self):
        """
        A route added through one instance's API is served by the other,
        within a delay measured here; one removed through the other stops
        being served by the first.
        """
        delays = []
        for n in range(PROPAGATION_ROUNDS):
            prefix = "/user/u{}".format(n)
            self.assertEqual(self.first.add(prefix, self.target), 201)
            answered = time.monotonic()
            waitFor(lambda: self.second.serves(prefix + "/x"), what="the new route", step=0.002)
            delays.append(time.monotonic() - answered)
        self.assertTrue(self.first.serves("/user/u0/x"))
        self.assertEqual(self.second.remove("/user/u0"), 204)
        waitFor(lambda: self.first.public.get("/user/u0/x").status == 404, what="the removal", step=0.002)
        self.assertEqual(self.first.remove("/user/u0"), 404)
        self.assertTrue(self.first.serves("/user/u1/x"))
        self.assertEqual(self.first.admin.get("/api/routes").json().keys(),
                         self.second.admin.get("/api/routes").json().keys())
        print("from the POST's 201 on one instance to a request served by the other "
              "(that request included): "
              "median {:.1f} ms, max {:.1f} ms over {}".format(
                  statistics.median(delays) * 1000, max(delays) * 1000, len(delays)))

    def test_redisKilledAndRestarted(self):
        """
        Redis killed: both instances keep serving the routes they knew,
        C{/healthz} says degraded and API changes get 503.  Redis back
        (empty): both recover, the routes are written back, a new route
        added through one is served by the other, and each instance logged
        Redis going and coming back once.
        """
        self.assertEqual(self.first.add("/kept", self.target), 201)
        waitFor(lambda: self.servedByBoth("/kept/x"), what="the route on both", step=0.002)
        self.redis.kill()
        for instance in (self.first, self.second):
            waitFor(lambda: instance.health().startswith("degraded"), what="degraded", step=0.002)
        self.assertTrue(self.servedByBoth("/kept/x"))
        self.assertEqual(self.first.add("/new", self.target), 503)
        self.assertEqual(self.second.remove("/kept"), 503)
        self.assertEqual(list(self.second.admin.get("/api/routes").json()), ["/kept"])
        self.redis.start()
        for instance in (self.first, self.second):
            waitFor(lambda: instance.health() == "ok\n", WAIT * 2, "recovery", step=0.002)
        self.assertTrue(self.servedByBoth("/kept/x"))
        self.assertEqual(self.second.add("/new", self.target), 201)
        waitFor(lambda: self.first.serves("/new/x"), what="the new route", step=0.002)
        for instance in (self.first, self.second):
            self.assertEqual(sorted(instance.admin.get("/api/routes").json()), ["/kept", "/new"])
            output = instance.process.output()
            self.assertEqual((output.count(GONE), output.count(BACK)), (1, 1), output)
