"""
Upstreams end to end: proxyws in this process (and in two C{twistd}
processes for the SockJS agreement) in front of several real members on
127.0.0.1 (L{tests.upstreambackends}: twisted.web sites answering with
their own name, counting their requests, relaying websockets to the
Autobahn echo server).

Balancing (the weighted spread over 10,000 requests, least connections with
open websockets), affinity (a SockJS session's transports, websocket and
reconnect on one member, in two processes too; the affinity cookie carried
onto the upgrade), health (a member killed mid-run, passive and active
checks, all members down) and the resend rules (a POST never reaches two
members; what goes to the next member and what does not).
"""

import collections
import http.client
import shutil
import socket
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from twisted.internet import ssl as twistedSSL
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from proxyws.affinity import NOCACHE, selectionRequest
from proxyws.config import parseConfig

from . import certs
from .helpers import freePort, startProxy
from .test_loopback_security import parseResponse
from .test_twistd import startProxyProcess
from .upstreambackends import (
    MemberServer,
    keepAliveClient,
    pipelined,
    request,
    startMembers,
    upstreamConfig,
)
from .wsbackends import connectAutobahn, connectRaw, reactor, upgradeRequest, waitUntil

# Seconds any wait of these tests may take before the test fails.
WAIT = 10.0


def sleep(seconds):
    """
    @return: a L{Deferred} that fires after C{seconds} on the reactor.
    """
    return deferLater(reactor(), seconds, lambda: None)


def refusedPort():
    """
    A port of 127.0.0.1 that refuses connections (nothing listens on it).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UpstreamTestCase(TestCase):
    """
    Members, a proxy over them, and shortcuts.
    """

    timeout = 60

    def startProxy(self, members, *lines, **more):
        """
        Start the proxy on an upstream C{app} over C{members} (see
        L{tests.upstreambackends.upstreamConfig}).

        @return: the proxy's port; C{self.service} and C{self.upstream}
            (the L{proxyws.upstream.Upstream}) are set.
        """
        self.service, port, self.accessLog = startProxy(
            self, upstreamConfig(members, *lines, **more)
        )
        self.upstream = self.service.upstreams.get("app")
        return port

    def member(self, name):
        """
        @return: the L{proxyws.members.MemberState} named C{name} (bytes).
        """
        return [m for m in self.upstream.members if m.name == name.decode("ascii")][0]

    @inlineCallbacks
    def get(self, port, path=b"/", headers=(), method=b"GET", body=None):
        """
        One request on a new connection.

        @return: its L{tests.test_loopback_security.Response}.
        """
        from .helpers import rawRequest

        raw = yield rawRequest(port, request(path, method, headers, body, close=True))
        return parseResponse(raw)


class SpreadTests(UpstreamTestCase):
    """
    New requests are spread by weight.
    """

    @inlineCallbacks
    def test_weightedSpread(self):
        """
        Over 10,000 requests (pipelined on 10 connections), members of
        weights 5, 3 and 2 get within 5 % of 50 %, 30 % and 20 % of them,
        as the members count them and as the answers show.
        """
        members = startMembers(self, b"a", b"b", b"c")
        port = self.startProxy(members, weights=[5, 3, 2])
        bodies = yield pipelined(port, 10000)
        seen = collections.Counter(bodies)
        for member, weight in zip(members, (5, 3, 2)):
            expected = 10000 * weight / 10
            self.assertLessEqual(abs(member.resource.total - expected), expected * 0.05)
            self.assertEqual(seen[member.name], member.resource.total)
        self.assertEqual(sum(seen.values()), 10000)
        for state in self.upstream.members:
            self.assertEqual((state.requests, state.connections), (0, 0))


class LeastConnectionsTests(UpstreamTestCase):
    """
    With C{policy = "least_conn"}, open websockets keep a member busy.
    """

    def websocketsOf(self, member):
        """
        @return: the member's echo connections still open.
        """
        return [p for p in member.resource.factory.protocols if not p.lost.happened]

    @inlineCallbacks
    def test_openWebSocketsSendNewOnesElsewhere(self):
        """
        Three websockets land on three members; when one closes, the next
        websocket and every plain request go to the member it left, while
        the others' websockets stay open.
        """
        members = startMembers(self, b"a", b"b", b"c")
        port = self.startProxy(members, 'policy = "least_conn"')
        clients = []
        for _ in range(3):
            clients.append((yield connectAutobahn(self, port, "/ws")))
        self.assertEqual([len(self.websocketsOf(m)) for m in members], [1, 1, 1])
        self.assertEqual([m.websockets for m in self.upstream.members], [1, 1, 1])
        self.assertEqual([m.requests for m in self.upstream.members], [0, 0, 0])
        # Close the websocket that reached b.
        [echo] = self.websocketsOf(members[1])
        echo.sendCloseFrame(1000)
        yield waitUntil(lambda: self.member(b"b").websockets == 0, WAIT)
        for _ in range(5):
            response = yield self.get(port)
            self.assertEqual(response.body, b"b")
        yield connectAutobahn(self, port, "/ws")
        self.assertEqual([len(self.websocketsOf(m)) for m in members], [1, 1, 1])
        self.assertEqual([m.connections for m in self.upstream.members], [1, 1, 1])


class CookieAffinityTests(UpstreamTestCase):
    """
    C{affinity = "cookie"}: the cookie the first answer sets keeps the
    client's requests, and its websocket upgrade, on one member.
    """

    @inlineCallbacks
    def test_cookieCarriedOntoTheUpgrade(self):
        """
        A first request gets the member's own C{Set-Cookie} and the affinity
        cookie naming the member, with C{Cache-Control: private}; requests
        and a websocket upgrade presenting it reach that member, which never
        sees the cookie, and their answers set no new one.
        """
        members = startMembers(self, b"a", b"b", b"c")
        for member in members:
            member.resource.ownCookie = b"own=" + member.name
        port = self.startProxy(members, 'affinity = "cookie"')
        first = yield self.get(port)
        name = first.body
        self.assertEqual(
            first.headers[b"set-cookie"],
            [b"own=" + name, b"proxyws_member=" + name + b"; Path=/; HttpOnly; SameSite=Lax"],
        )
        self.assertEqual(first.headers[b"cache-control"], [NOCACHE[1]])
        cookie = b"x=1; proxyws_member=" + name + b"; y=2"
        for _ in range(6):
            response = yield self.get(port, headers=[(b"Cookie", cookie)])
            self.assertEqual(response.body, name)
            self.assertEqual(response.headers[b"set-cookie"], [b"own=" + name])
        [sticky] = [m for m in members if m.name == name]
        self.assertEqual(sticky.resource.cookies[1:], [b"x=1; y=2"] * 6)
        client = yield connectAutobahn(
            self, port, "/ws", headers={"Cookie": cookie.decode("ascii")}
        )
        self.assertEqual(len(sticky.resource.factory.handshakes), 1)
        self.assertEqual(sticky.resource.factory.handshakes[0].headers["cookie"], "x=1; y=2")
        # Autobahn's client joins repeated fields: the echo's two cookies only.
        self.assertEqual(client.response.headers["set-cookie"], "a=1, b=2")

    @inlineCallbacks
    def test_upgradeWithoutCookieGetsOne(self):
        """
        A websocket upgrade without the cookie goes by the policy, and its
        101 carries the affinity cookie after the member's own cookies.
        """
        members = startMembers(self, b"a", b"b")
        port = self.startProxy(members, 'affinity = "cookie"')
        client = yield connectRaw(self, port, upgradeRequest(b"/ws", b"proxy.test"))
        head = parseResponse((yield client.head.wait()))
        self.assertEqual(head.status, 101)
        [reached] = [m for m in members if m.resource.factory.handshakes]
        self.assertEqual(
            head.headers[b"set-cookie"],
            [b"a=1", b"b=2", b"proxyws_member=" + reached.name + b"; Path=/; HttpOnly; SameSite=Lax"],
        )
        self.assertEqual(head.headers[b"cache-control"], [b"private"])


def sockjsPaths(robust, server=b"123", session=b"abcdefgh", reconnect=False):
    """
    The paths of one Shiny Server session's transports under C{/app/}.

    @param robust: the robust id (C{n=} on the first connection, C{o=} on
        a reconnect).
    @return: C{(xhr_streaming, xhr, xhr_send, websocket)} paths.
    """
    prefix = b"/app/__sockjs__/" + (b"o=" if reconnect else b"n=") + robust
    return tuple(
        b"/".join([prefix, server, session, transport])
        for transport in (b"xhr_streaming", b"xhr", b"xhr_send", b"websocket")
    )


class SockJSAffinityTests(UpstreamTestCase):
    """
    C{affinity = "sockjs"}: every request of a session, each transport, its
    websocket and its reconnect, reaches one member.
    """

    @inlineCallbacks
    def test_sessionOnOneMember(self):
        """
        For each of 12 sessions, the xhr transports (C{xhr_send} with a
        body), the websocket and the C{o=} reconnect's transports reach one
        member; the sessions are spread over the members.
        """
        members = startMembers(self, b"a", b"b", b"c")
        port = self.startProxy(members, 'affinity = "sockjs"', route='path = "/app/"')
        byName = {m.name: m for m in members}
        chosen = []
        for n in range(12):
            robust = b"R%dxq3Lr8ZkP0aBcD" % n
            streaming, xhr, send, ws = sockjsPaths(robust)
            answers = [
                (yield self.get(port, streaming, method=b"POST")).body,
                (yield self.get(port, xhr, method=b"POST")).body,
                (yield self.get(port, send, method=b"POST", body=b'["hi"]')).body,
            ]
            [name] = set(answers)
            before = len(byName[name].resource.factory.handshakes)
            yield connectAutobahn(self, port, ws.decode("ascii"))
            self.assertEqual(len(byName[name].resource.factory.handshakes), before + 1)
            streaming, xhr, send, ws = sockjsPaths(robust, b"456", b"zyxwvu", reconnect=True)
            again = yield self.get(port, xhr, method=b"POST")
            self.assertEqual(again.body, name)
            yield connectAutobahn(self, port, ws.decode("ascii"))
            self.assertEqual(len(byName[name].resource.factory.handshakes), before + 2)
            chosen.append(name)
        self.assertEqual(set(chosen), {b"a", b"b", b"c"})
        # Both websockets of each session are still open.
        self.assertEqual(
            [m.websockets for m in self.upstream.members],
            [chosen.count(name) * 2 for name in (b"a", b"b", b"c")],
        )


class _NamedHandler(BaseHTTPRequestHandler):
    """
    Answers every request with the server's name.
    """

    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = self.server.name
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format, *args):
        """
        Keep the test output clean.
        """


def startThreadedMember(testCase, name):
    """
    A member served from a thread (so that it answers while the test
    blocks), stopped in cleanup.

    @return: C{(name, port)}.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NamedHandler)
    server.daemon_threads = True
    server.name = name
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    testCase.addCleanup(thread.join, 5)
    testCase.addCleanup(server.server_close)
    testCase.addCleanup(server.shutdown)
    return name, server.server_address[1]


def fetch(port, path, method="POST"):
    """
    One request to 127.0.0.1:C{port}, blocking.

    @return: the answer's body.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request(method, path, body=b"" if method == "POST" else None)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise AssertionError("{} {}: {} {!r}".format(method, path, response.status, body))
        return body
    finally:
        connection.close()


class TwoProcessesTests(SynchronousTestCase):
    """
    Two C{twistd proxyws} processes with the same members send each SockJS
    session to the same member, without talking to each other.
    """

    def test_sameMemberInBothProcesses(self):
        """
        For 20 sessions (their xhr and reconnect paths), both processes
        answer from the same member, and the sessions are spread.
        """
        members = [startThreadedMember(self, name) for name in (b"a", b"b", b"c")]
        proxies = []
        for _ in range(2):
            port = freePort()
            text = upstreamConfig(members, 'affinity = "sockjs"', route='path = "/app/"')
            process = startProxyProcess(self, text.replace("port = 0", "port = {}".format(port)))
            proxies.append((process, port))
        for process, port in proxies:
            process.waitForPort(port)
        seen = []
        for n in range(20):
            robust = b"S%dk2Jd8Qa0ZpL" % n
            streaming, xhr, send, ws = sockjsPaths(robust)
            reconnect = sockjsPaths(robust, b"7", b"qwerty", reconnect=True)[1]
            answers = {
                fetch(port, path.decode("ascii"))
                for _, port in proxies
                for path in (streaming, xhr, send, reconnect)
            }
            self.assertEqual(len(answers), 1, (robust, answers))
            seen.extend(answers)
        self.assertEqual(set(seen), {b"a", b"b", b"c"})


class HealthTests(UpstreamTestCase):
    """
    A member killed mid-run: its traffic moves to the others without client
    errors, it is taken down (passive or active checks), and it comes back.
    """

    @inlineCallbacks
    def requests(self, client, count):
        """
        Send C{count} GETs one after the other on C{client}.

        @return: a L{collections.Counter} of the answers: members' names
            for 200s, the status for anything else.
        """
        seen = collections.Counter()
        for _ in range(count):
            response = yield client.request(request())
            seen[response.body if response.status == 200 else response.status] += 1
        return seen

    @inlineCallbacks
    def test_passive(self):
        """
        With the passive defaults (one failure takes a member down for
        C{fail_timeout}), the first request refused by the killed member
        goes to the next one: no client error; the member is down and gets
        nothing until C{fail_timeout} has passed, then it is back.
        """
        members = startMembers(self, b"a", b"b", b"c")
        port = self.startProxy(members, "fail_timeout = 1")
        client = yield keepAliveClient(self, port)
        seen = yield self.requests(client, 30)
        self.assertEqual(seen, {b"a": 10, b"b": 10, b"c": 10})
        yield members[1].kill()
        seen = yield self.requests(client, 30)
        self.assertEqual(set(seen), {b"a", b"c"})
        self.assertEqual(sum(seen.values()), 30)
        state = self.member(b"b")
        self.assertFalse(state.up)
        self.assertIn("connection refused", state.why)
        members[1].start()
        yield waitUntil(lambda: state.up, WAIT)
        seen = yield self.requests(client, 30)
        self.assertEqual(seen, {b"a": 10, b"b": 10, b"c": 10})

    @inlineCallbacks
    def test_active(self):
        """
        With passive checks off and active checks (every 0.1 s, fall 2,
        rise 2), the killed member's requests go to the next member (no
        client error) until the checks take it down, then it gets none
        (no more failures recorded); once it listens again, two passed
        checks bring it back.
        """
        members = startMembers(self, b"a", b"b", b"c")
        port = self.startProxy(
            members,
            "max_fails = 0",
            "check = { interval = 0.1, timeout = 0.5, fall = 2, rise = 2 }",
        )
        state = self.member(b"b")
        client = yield keepAliveClient(self, port)
        yield members[1].kill()
        seen = yield self.requests(client, 30)
        self.assertEqual(set(seen), {b"a", b"c"})
        yield waitUntil(lambda: not state.up, WAIT)
        self.assertIn("2 checks failed in a row", state.why)
        failures = len(state.failures)
        seen = yield self.requests(client, 30)
        self.assertEqual(seen, {b"a": 15, b"c": 15})
        self.assertEqual(len(state.failures), failures)
        members[1].start()
        yield waitUntil(lambda: state.up, WAIT)
        self.assertIn("2 checks passed in a row", state.why)
        seen = yield self.requests(client, 30)
        self.assertEqual(seen, {b"a": 10, b"b": 10, b"c": 10})

    @inlineCallbacks
    def test_checksRunWithTheService(self):
        """
        The active checks start with the service and stop once it has
        stopped.
        """
        members = startMembers(self, b"a", b"b")
        self.startProxy(members, "check = { interval = 0.1 }")
        yield waitUntil(lambda: all(m.lastCheck for m in self.upstream.members), WAIT)
        yield self.service.stopService()
        checked = [m.lastCheck for m in self.upstream.members]
        yield sleep(0.4)
        self.assertEqual([m.lastCheck for m in self.upstream.members], checked)

    @inlineCallbacks
    def test_killedUnderLoad(self):
        """
        Eight clients keep sending requests while a member is killed: every
        request is answered by a member, except at most those in flight to
        the killed one when it died (one per client at most).
        """
        members = startMembers(self, b"a", b"b", b"c")
        port = self.startProxy(members)
        clients = []
        for _ in range(8):
            clients.append((yield keepAliveClient(self, port)))
        outcomes = collections.Counter()

        @inlineCallbacks
        def loop(client):
            for _ in range(60):
                try:
                    response = yield client.request(request())
                except Exception:
                    outcomes["lost"] += 1
                    return
                outcomes[response.body if response.status == 200 else response.status] += 1

        loops = [loop(client) for client in clients]
        yield waitUntil(lambda: sum(outcomes.values()) >= 100, WAIT)
        yield members[1].kill()
        for done in loops:
            yield done
        answered = outcomes[b"a"] + outcomes[b"b"] + outcomes[b"c"]
        self.assertEqual(sum(outcomes.values()), 480)
        self.assertGreaterEqual(answered, 480 - 8, outcomes)
        self.assertFalse(self.member(b"b").up)


class ReloadTests(UpstreamTestCase):
    """
    A reload updates the running registry in place.
    """

    @inlineCallbacks
    def test_reloadKeepsMemberState(self):
        """
        A reload that keeps member a, drops b and adds c: a keeps its state
        (down, its failures), c starts up, requests go to c while a is
        down, and the same registry serves the new routes.
        """
        a, b, c = startMembers(self, b"a", b"b", b"c")
        port = self.startProxy([a, b], "fail_timeout = 30")
        registry = self.service.upstreams
        state = self.member(b"a")
        state.failed("refused")
        self.assertFalse(state.up)
        config = parseConfig(upstreamConfig([a, c], "fail_timeout = 30"), self.service.config.path)
        result = yield self.service.reload(config)
        self.assertTrue(result.succeeded, result)
        self.assertIs(self.service.upstreams, registry)
        self.assertIs(self.member(b"a"), state)
        self.assertFalse(state.up)
        self.assertEqual([m.name for m in self.upstream.members], ["a", "c"])
        for _ in range(4):
            response = yield self.get(port)
            self.assertEqual(response.body, b"c")
        self.assertEqual(b.resource.total, 0)
        status = self.service.status()["upstreams"]
        self.assertEqual([m["state"] for m in status[0]["members"]], ["down", "up"])


class UnavailableTests(UpstreamTestCase):
    """
    Every member down: 503 with C{Retry-After}.
    """

    @inlineCallbacks
    def test_allMembersDown(self):
        """
        The request that finds both members refusing tries each once and
        gets the 502 of the last; both are then down, and the next request
        gets 503 with the seconds until the first may be back.
        """
        port = self.startProxy([(b"a", refusedPort()), (b"b", refusedPort())], "fail_timeout = 30")
        first = yield self.get(port)
        self.assertEqual(first.status, 502)
        self.assertEqual(first.body, b"502 Bad Gateway\n\nconnection refused by the backend\n")
        self.assertEqual([m.up for m in self.upstream.members], [False, False])
        second = yield self.get(port)
        self.assertEqual(second.status, 503)
        self.assertEqual(second.headers[b"retry-after"], [b"30"])
        self.assertEqual(
            second.body, b"503 Service Unavailable\n\nno member of upstream app is available\n"
        )
        client = yield connectRaw(self, port, upgradeRequest(b"/ws", b"proxy.test"))
        head = parseResponse((yield client.head.wait()))
        self.assertEqual((head.status, head.headers[b"retry-after"]), (503, [b"30"]))
        self.assertEqual([m.connections for m in self.upstream.members], [0, 0])


# Certificates for the TLS members: one signed by the CA the route trusts,
# one by a CA it does not.
CA = certs.makeAuthority("proxyws upstream CA")
STRANGER = certs.makeAuthority("a CA nobody trusts")


class ResendTests(UpstreamTestCase):
    """
    What goes to the next member, and what never does: the backends count
    what reaches them.
    """

    @inlineCallbacks
    def test_postNeverReachesTwoMembers(self):
        """
        A POST that a member took and then dropped (its process died) is a
        502: it is not sent to another member, which never sees it.
        """
        members = startMembers(self, b"a", b"b")
        members[0].resource.hold = True
        port = self.startProxy(members)
        answer = self.get(port, method=b"POST", body=b"x" * 1000)
        yield waitUntil(lambda: members[0].resource.held, WAIT)
        yield members[0].kill()
        response = yield answer
        self.assertEqual(response.status, 502)
        self.assertEqual(members[0].resource.requests, {b"POST": 1})
        self.assertEqual(members[1].resource.requests, {})
        # The member is down: the next POSTs go to the other, once each.
        for _ in range(3):
            response = yield self.get(port, method=b"POST", body=b"y")
            self.assertEqual(response.body, b"b")
        self.assertEqual(members[1].resource.requests, {b"POST": 3})

    @inlineCallbacks
    def test_startedAnswerNotResent(self):
        """
        A GET whose answer had started when the member died is a 502, not
        sent again.
        """
        members = startMembers(self, b"a", b"b")
        members[0].resource.hold = True
        port = self.startProxy(members)
        answer = self.get(port)
        yield waitUntil(lambda: members[0].resource.held, WAIT)
        members[0].resource.held[0].channel.transport.write(b"HTTP/1.1 200 OK\r\nContent-")
        yield sleep(0.05)
        yield members[0].kill()
        response = yield answer
        self.assertEqual(response.status, 502)
        self.assertEqual(members[1].resource.requests, {})

    @inlineCallbacks
    def test_refusedGoesToNextMember(self):
        """
        A member that refuses connections sends every request, a POST with
        its body and a websocket upgrade included, to the next member.
        """
        good = startMembers(self, b"b")[0]
        port = self.startProxy([(b"a", refusedPort()), good], "max_fails = 0")
        for _ in range(4):
            response = yield self.get(port, method=b"POST", body=b"z" * 100000)
            self.assertEqual(response.body, b"b")
            yield connectAutobahn(self, port, "/ws")
        self.assertEqual(good.resource.requests, {b"POST": 4})
        self.assertEqual(len(good.resource.factory.handshakes), 4)
        self.assertEqual(self.member(b"a").lastFailure, "connection refused by the backend")

    @inlineCallbacks
    def test_noRetries(self):
        """
        With C{retries = 0}, a request refused by its member is a 502.
        """
        good = startMembers(self, b"b")[0]
        port = self.startProxy([(b"a", refusedPort()), good], "retries = 0", "max_fails = 0")
        statuses = collections.Counter()
        for _ in range(4):
            statuses[(yield self.get(port)).status] += 1
        self.assertEqual(statuses, {200: 2, 502: 2})


class TLSResendTests(UpstreamTestCase):
    """
    A member whose TLS handshake fails: the request goes to the next member
    only when nothing of it went out.
    """

    def setUp(self):
        """
        Write the CA the route trusts.
        """
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.ca = certs.writeFile(
            self.directory, "ca.pem", certs.certificatePem(CA.certificate)
        )

    def tlsMember(self, name, issuer):
        """
        An HTTPS member whose certificate for 127.0.0.1 C{issuer} signed.
        """
        pair = certs.makeCertificate(issuer, ["127.0.0.1"])
        options = twistedSSL.CertificateOptions(
            privateKey=pair.key, certificate=pair.certificate
        )
        return MemberServer(self, name, tls=options)

    def keyFor(self, name):
        """
        @return: an C{X-Key} value that the upstream hashes to member C{name}.
        """
        for n in range(1000):
            key = b"key-%d" % n
            view = selectionRequest("127.0.0.1", [(b"X-Key", [key])], b"/")
            if self.upstream.choose(view).member.name == name.decode("ascii"):
                return key
        raise AssertionError("no key for {!r}".format(name))

    @inlineCallbacks
    def test_refusedHandshake(self):
        """
        A member whose certificate fails the check sends a GET, and a POST
        without a body, to the next member; a POST with a body goes out on
        the connection before the handshake fails, so it is a 502.
        """
        bad = self.tlsMember(b"a", STRANGER)
        good = self.tlsMember(b"b", CA)
        port = self.startProxy(
            [bad, good],
            'policy = "hash"',
            'hash = "header:X-Key"',
            "max_fails = 0",
            route='path = "/"\nbackend_tls = {{ ca = "{}" }}'.format(self.ca),
            scheme="https",
        )
        key = [(b"X-Key", self.keyFor(b"a"))]
        response = yield self.get(port, headers=key)
        self.assertEqual(response.body, b"b")
        response = yield self.get(port, headers=key, method=b"POST")
        self.assertEqual(response.body, b"b")
        response = yield self.get(port, headers=key, method=b"POST", body=b"data")
        self.assertEqual(response.status, 502)
        self.assertEqual(
            response.body, b"502 Bad Gateway\n\nthe TLS handshake with the backend failed\n"
        )
        self.assertEqual(good.resource.requests, {b"GET": 1, b"POST": 1})
        self.assertEqual(bad.resource.requests, {})
        self.assertEqual(self.member(b"a").lastFailure, "the TLS handshake with the backend failed")
