"""
JupyterHub drives proxyws as it drives configurable-http-proxy.

L{JupyterHubCallsTests}, without sockets: the requests JupyterHub's
C{ConfigurableHTTPProxy} sends, and what it makes of the answers.

L{JupyterHubTests}, end to end: a real JupyterHub (from a venv of its own,
L{tests.jupyterhubenv}) with C{ConfigurableHTTPProxy.should_start = False}
and C{api_url} on proxyws's admin listener, the dummy authenticator and the
local-process spawner; a user logs in, their server starts, their browser
logs in to it, a kernel runs C{1+1} over its websocket, the server stops,
everything through proxyws's public port, while the routes JupyterHub adds
and removes are checked on the admin listener.

JupyterHub polls proxyws's routes every L{ACTIVITY_INTERVAL} seconds (its
C{last_activity_interval}: C{GET /api/routes}, then its check of every
route), so every call its C{ConfigurableHTTPProxy} makes runs during the
test; a route it found missing, stale or wrong, or a call that failed,
shows in its log, which the test reads.
"""

import json
import os
import re
import signal
import subprocess
import time
import uuid
from datetime import datetime
from urllib.parse import quote, urlencode

from twisted.trial.unittest import SynchronousTestCase
from websockets.sync.client import connect

from proxyws.apiroutes import formatTime, parseTime

from .helpers import freePort
from .httpclient import Client
from .jupyterhubenv import ensureVenv
from .test_chpapi import APITestsMixin
from .test_twistd import startProxyProcess, temporaryDirectory, waitFor

# Seconds JupyterHub may take to start, and a user's server to start or
# stop: generous, for a loaded two-core machine.
SLOW = 240.0

# Seconds any other single wait may take.
WAIT = 60.0

# The user (a name that is percent-encoded in URLs, as JupyterHub's routes
# then are), the dummy authenticator's password, and the tokens.
USER = "zo\u00eb"
USER_PATH = quote(USER)
PASSWORD = "proxyws-test-password"
PROXY_TOKEN = "proxyws-admin-" + uuid.uuid4().hex
HUB_TOKEN = "proxyws-hub-" + uuid.uuid4().hex

# A file in the user's home, which their server serves.
HOME_FILE = "hello.txt"
HOME_TEXT = b"hello from the user's server\n"

# JupyterHub's last_activity_interval: how often it reads proxyws's routes.
ACTIVITY_INTERVAL = 2

# Lines in JupyterHub's log telling that a call to the proxy failed or that
# the routes it read back were not those it had added.
HUB_COMPLAINTS = (
    "api_request to the proxy failed",
    "api_request to proxy failed",
    "Adding missing route",
    "Deleting stale route",
    "Updating route",
    "Updating Hub route",
    "Found no user for route",
    "Found no spawner for route",
)

# The websocket subprotocol of kernels' binary message form.
KERNEL_V1 = "v1.kernel.websocket.jupyter.org"

# The debug line JupyterHub logs each time it checks the routes it read.
ROUTE_CHECK = "Checking routes"

# proxyws: one public listener, the admin listener with the token
# JupyterHub sends (CONFIGPROXY_AUTH_TOKEN), no route of its own.
PROXY_CONFIG = """\
[[listen]]
address = "127.0.0.1"
port = {public}

[admin]
address = "127.0.0.1"
port = {admin}
token_env = "CONFIGPROXY_AUTH_TOKEN"
"""

# JupyterHub: proxyws in place of configurable-http-proxy (the first three
# lines, and the token in CONFIGPROXY_AUTH_TOKEN, are what README.rst
# shows), served at proxyws's public URL; the hub's own API and a token
# for the test, which starts and stops the user's server with it.
HUB_CONFIG = """\
c = get_config()  # noqa: F821
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{admin}"
c.JupyterHub.bind_url = "http://127.0.0.1:{public}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub}
c.JupyterHub.db_url = "sqlite:///" + {directory!r} + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = {directory!r} + "/cookie_secret"
c.JupyterHub.pid_file = {directory!r} + "/jupyterhub.pid"
c.JupyterHub.last_activity_interval = {interval}
c.JupyterHub.log_level = "DEBUG"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allowed_users = {{{user!r}}}
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = {directory!r} + "/home/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = ["--allow-root"]
c.Spawner.start_timeout = {slow}
c.Spawner.http_timeout = {slow}
c.JupyterHub.services = [{{"name": "proxyws-test", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{
    "name": "proxyws-test",
    "scopes": ["admin:users", "admin:servers", "access:servers"],
    "services": ["proxyws-test"],
}}]
"""


def executeRequest(code):
    """
    A Jupyter C{execute_request} on the shell channel, in the websocket's
    JSON form (the protocol without a subprotocol).

    @return: C{(message id, text to send)}.
    """
    messageId = uuid.uuid4().hex
    message = {
        "header": {"msg_id": messageId, "username": USER, "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3", "date": ""},
        "parent_header": {},
        "metadata": {},
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        "channel": "shell",
        "buffers": [],
    }
    return messageId, json.dumps(message)


def packV1(text):
    """
    A message of L{executeRequest} in the binary form of the websocket
    subprotocol L{KERNEL_V1} (what JupyterLab speaks): the count of
    offsets, the offsets (little-endian 64-bit), the channel, the header,
    parent header, metadata and content as JSON.

    @return: bytes to send.
    """
    message = json.loads(text)
    parts = [message["channel"].encode("utf-8")] + [
        json.dumps(message[key]).encode("utf-8")
        for key in ("header", "parent_header", "metadata", "content")]
    offsets = [8 * (len(parts) + 2)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    head = b"".join(number.to_bytes(8, "little") for number in [len(offsets)] + offsets)
    return head + b"".join(parts)


def unpackV1(data):
    """
    Read a message in L{KERNEL_V1}'s binary form.

    @return: the message as the JSON form has it (C{channel}, C{header},
        C{parent_header}, C{metadata}, C{content}).
    """
    count = int.from_bytes(data[:8], "little")
    offsets = [int.from_bytes(data[8 * n:8 * n + 8], "little") for n in range(1, count + 1)]
    parts = [data[start:end] for start, end in zip(offsets, offsets[1:])]
    message = {"channel": parts[0].decode("utf-8")}
    for key, part in zip(("header", "parent_header", "metadata", "content"), parts[1:]):
        message[key] = json.loads(part)
    message["msg_type"] = message["header"]["msg_type"]
    return message


def executeResult(webSocket, messageId):
    """
    Read the kernel's messages (in either form) until the
    C{execute_result} answering C{messageId}.

    @return: its C{text/plain} data.
    """
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        data = webSocket.recv(timeout=WAIT)
        message = unpackV1(data) if isinstance(data, bytes) else json.loads(data)
        if message.get("parent_header", {}).get("msg_id") != messageId:
            continue
        if message.get("msg_type") == "execute_result":
            return message["content"]["data"]["text/plain"]
        if message.get("msg_type") == "error":
            raise AssertionError("the kernel failed: {!r}".format(message["content"]))
    raise AssertionError("no execute_result within {} s".format(WAIT))


def chpPath(routespec):
    """
    The API path JupyterHub 6.1.1 asks for a route with: its
    C{ConfigurableHTTPProxy._routespec_to_chp_path} (a leading C{/}, no
    trailing one but for the root), after C{/api/routes} (C{url_path_join}).

    @param routespec: a routespec, percent-encoded as JupyterHub makes them
        (C{/user/zo%C3%AB/}, or C{host/path/} with host routing).
    @return: the request target (bytes).
    """
    path = routespec if routespec.startswith("/") else "/" + routespec
    if path != "/":
        path = path.rstrip("/")
    return ("/api/routes" + path).encode("ascii")


def routespecOf(prefix, hostRouting=False):
    """
    The routespec JupyterHub 6.1.1 reads a prefix of C{GET /api/routes} as:
    its C{_routespec_from_chp_path}.
    """
    routespec = quote(prefix, safe="@/~")
    if hostRouting:
        routespec = routespec.lstrip("/")
    if not routespec.endswith("/"):
        routespec += "/"
    return routespec


# The routes JupyterHub adds (routespec, then the data it posts with the
# target, as Proxy.add_hub_route, add_user, add_service and extra_routes
# make them), for a hub without host routing.
JUPYTERHUB_ROUTES = [
    ("/", {"hub": True}),
    ("/user/zo%C3%AB/", {"user": USER, "server_name": ""}),
    ("/user/zo%C3%AB/lab%201/", {"user": USER, "server_name": "lab 1"}),
    ("/user/bob@example.org/", {"user": "bob@example.org", "server_name": ""}),
    ("/services/cull/", {"service": "cull"}),
    ("/extra/", {"extra": True}),
]

# The same with host routing (JupyterHub.subdomain_host): the hub's route
# stays "/".
JUPYTERHUB_HOST_ROUTES = [
    ("/", {"hub": True}),
    ("zoe.hub.example.org/user/zoe/", {"user": "zoe", "server_name": ""}),
]


class JupyterHubCallsMixin(APITestsMixin):
    """
    JupyterHub's calls to the API, in the order it makes them.
    """

    def jupyterHubRoutes(self):
        """
        C{get_all_routes}: C{GET /api/routes}, read as JupyterHub reads it.

        @return: routespec to C{(target, data)}, the data without
            C{target} and C{jupyterhub} (C{_reformat_routespec}).
        """
        routes = {}
        for prefix, data in self.routes().items():
            data = dict(data)
            self.assertIs(data.pop("jupyterhub"), True)
            # update_last_activity parses the time (with dateutil's parser).
            self.assertIsInstance(datetime.fromisoformat(data["last_activity"]), datetime)
            routes[routespecOf(prefix, self.hostRouting)] = (data.pop("target"), data)
        return routes

    def addRoute(self, routespec, target, data):
        """
        C{add_route}: the data with C{target} and C{jupyterhub}, POSTed.
        """
        body = dict(data, target=target, jupyterhub=True)
        answer = self.call(b"POST", chpPath(routespec), body)
        self.assertEqual(answer.code, 201, (routespec, answer.body))

    def deleteRoute(self, routespec):
        """
        C{delete_route}: a DELETE.

        @return: the status (404 is logged by JupyterHub, not raised).
        """
        return self.call(b"DELETE", chpPath(routespec)).code

    def checkCalls(self, routes):
        """
        Every route added is read back under its own routespec, with its
        target and data (so that C{check_routes} finds nothing missing,
        stale or changed); a route added again takes its new target; every
        route is deleted (204), and deleting it again is 404.
        """
        self.assertEqual(self.jupyterHubRoutes(), {})
        for n, (routespec, data) in enumerate(routes):
            self.addRoute(routespec, "http://127.0.0.1:{}".format(8000 + n), data)
        found = self.jupyterHubRoutes()
        for n, (routespec, data) in enumerate(routes):
            target, read = found.pop(routespec)
            self.assertEqual(target, "http://127.0.0.1:{}".format(8000 + n))
            expected = dict(data, last_activity=formatTime(self.clock.seconds()))
            if self.hostRouting and routespec != "/":
                # As configurable-http-proxy does, the host goes in the data.
                expected["host"] = routespec.split("/")[0]
            self.assertEqual(read, expected)
        self.assertEqual(found, {})
        routespec, data = routes[-1]
        self.addRoute(routespec, "http://127.0.0.1:9999", data)
        self.assertEqual(self.jupyterHubRoutes()[routespec][0], "http://127.0.0.1:9999")
        for routespec, _ in routes:
            self.assertEqual(self.deleteRoute(routespec), 204, routespec)
            self.assertEqual(self.deleteRoute(routespec), 404, routespec)
        self.assertEqual(self.jupyterHubRoutes(), {})


class JupyterHubCallsTests(JupyterHubCallsMixin, SynchronousTestCase):
    """
    JupyterHub 6.1.1's C{ConfigurableHTTPProxy} calls, host routing off.
    """

    token = PROXY_TOKEN

    def test_calls(self):
        """
        Adding, reading back, updating and deleting the routes of the hub,
        users (named servers and names JupyterHub percent-encodes included),
        services and extra routes.
        """
        self.checkCalls(JUPYTERHUB_ROUTES)

    def test_servedAsAdded(self):
        """
        A user's percent-encoded request path takes their route.
        """
        for routespec, data in JUPYTERHUB_ROUTES:
            self.addRoute(routespec, "http://127.0.0.1:8000", data)
        for path, prefix in [(b"/user/zo%C3%AB/api/kernels", "/user/zo\u00eb"),
                             (b"/user/zo%C3%AB/lab%201/api", "/user/zo\u00eb/lab 1"),
                             (b"/user/bob@example.org/tree", "/user/bob@example.org"),
                             (b"/hub/login", "/")]:
            match = self.store.table.lookup(None, path)
            self.assertEqual((match.prefix, match.target), (prefix, path))


class JupyterHubHostRoutingCallsTests(JupyterHubCallsMixin, SynchronousTestCase):
    """
    The same calls with JupyterHub's host routing (C{subdomain_host}) and
    proxyws's C{host_routing = true}.
    """

    token = PROXY_TOKEN
    hostRouting = True

    def test_calls(self):
        """
        Host routes are read back under JupyterHub's routespecs (without a
        leading C{/}), beside the hub's C{/}.
        """
        self.checkCalls(JUPYTERHUB_HOST_ROUTES)


class HubProcess:
    """
    A C{jupyterhub} subprocess and its log.
    """

    def __init__(self, testCase, venv, directory, environment):
        """
        Start it in C{directory} on its C{jupyterhub_config.py}; it is
        stopped (its user servers with it) when the test ends.
        """
        self._logPath = os.path.join(directory, "jupyterhub.log")
        with open(self._logPath, "wb") as output:
            self.process = subprocess.Popen(
                [os.path.join(venv, "bin", "jupyterhub"), "-f", "jupyterhub_config.py"],
                cwd=directory, env=environment, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        self.serverPids = []
        testCase.addCleanup(self.stop)

    def output(self):
        """
        @return: what it logged so far.
        """
        with open(self._logPath, errors="replace") as f:
            return f.read()

    def tail(self):
        """
        @return: the end of its log.
        """
        return self.output()[-6000:]

    def stop(self):
        """
        SIGTERM (JupyterHub stops the user servers it started), then kill
        whatever is left: the hub's process group, and the user servers
        (which run in sessions of their own).
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(WAIT)
        for pid in self.serverPids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class JupyterHubTests(SynchronousTestCase):
    """
    JupyterHub with proxyws in place of configurable-http-proxy.
    """

    def setUp(self):
        """
        Start proxyws, then JupyterHub pointing at its admin listener.
        """
        self.venv, _ = ensureVenv()
        self.public, self.admin, self.hubPort = freePort(), freePort(), freePort()
        os.environ["CONFIGPROXY_AUTH_TOKEN"] = PROXY_TOKEN
        try:
            self.proxy = startProxyProcess(
                self, PROXY_CONFIG.format(public=self.public, admin=self.admin))
        finally:
            del os.environ["CONFIGPROXY_AUTH_TOKEN"]
        self.proxy.waitForPort(self.admin, WAIT)
        directory = temporaryDirectory(self)
        home = os.path.join(directory, "home", USER)
        os.makedirs(home)
        with open(os.path.join(home, HOME_FILE), "wb") as f:
            f.write(HOME_TEXT)
        with open(os.path.join(directory, "jupyterhub_config.py"), "w") as f:
            f.write(HUB_CONFIG.format(
                admin=self.admin, public=self.public, hub=self.hubPort, directory=directory,
                interval=ACTIVITY_INTERVAL, password=PASSWORD, user=USER,
                singleuser=os.path.join(self.venv, "bin", "jupyterhub-singleuser"),
                slow=int(SLOW), token=HUB_TOKEN))
        environment = dict(os.environ, CONFIGPROXY_AUTH_TOKEN=PROXY_TOKEN,
                           PATH=os.path.join(self.venv, "bin") + os.pathsep + os.environ["PATH"])
        environment.pop("PYTHONPATH", None)
        self.hub = HubProcess(self, self.venv, directory, environment)
        self.routes = Client(self.admin, {"Authorization": "token " + PROXY_TOKEN})
        self.api = Client(self.public, {"Authorization": "token " + HUB_TOKEN})

    def logs(self):
        """
        @return: the end of JupyterHub's log and of proxyws's, for failures.
        """
        return "JupyterHub:\n{}\nproxyws:\n{}".format(self.hub.tail(), self.proxy.output()[-4000:])

    def wait(self, predicate, what, timeout=WAIT):
        """
        L{waitFor}, failing with both logs.
        """
        def waited():
            if self.hub.process.poll() is not None:
                raise AssertionError("JupyterHub exited:\n" + self.logs())
            self.assertUncomplaining()
            return predicate()

        return waitFor(waited, timeout, what, self.logs, step=0.1)

    def assertUncomplaining(self):
        """
        Fail when JupyterHub's log says that a call to proxyws failed or
        that the routes it read back were not those it had added.
        """
        output = self.hub.output()
        for complaint in HUB_COMPLAINTS:
            if complaint in output:
                raise AssertionError("JupyterHub: {!r}:\n{}".format(complaint, self.logs()))

    def route(self, prefix):
        """
        @param prefix: a prefix other than C{/} (for which the API answers
            with the whole table, as configurable-http-proxy does).
        @return: a route as C{GET /api/routes/PREFIX} on the admin listener
            shows it, or L{None} when it answers 404.
        """
        answer = self.routes.get("/api/routes" + quote(prefix))
        if answer.status == 404:
            return None
        self.assertEqual(answer.status, 200, answer)
        return answer.json()

    def table(self):
        """
        @return: every route, as C{GET /api/routes} shows them.
        """
        answer = self.routes.get("/api/routes")
        self.assertEqual(answer.status, 200, answer)
        return answer.json()

    def inactiveSince(self, when):
        """
        @return: the prefixes C{GET /api/routes?inactive_since=} lists for
            a time (seconds since the epoch).
        """
        answer = self.routes.get("/api/routes?" + urlencode({"inactive_since": formatTime(when)}))
        self.assertEqual(answer.status, 200, answer)
        return set(answer.json())

    def test_userSessionThroughProxyws(self):
        """
        Log in, start a server, open it, run C{1+1} in a kernel over its
        websocket, stop the server: through proxyws's public port, with
        JupyterHub adding and removing the routes on proxyws's admin
        listener.
        """
        started = time.monotonic()
        self.hubServed()
        browser = self.logIn()
        self.startServer()
        prefix = "/user/" + USER
        route = self.route(prefix)
        self.assertEqual(
            {key: route[key] for key in ("user", "server_name", "jupyterhub")},
            {"user": USER, "server_name": "", "jupyterhub": True})
        self.assertRegex(route["target"], r"^http://127\.0\.0\.1:\d+$")
        self.assertNotEqual(route["target"], "http://127.0.0.1:{}".format(self.hubPort))
        self.assertIn(prefix, self.table())
        checks = self.hub.output().count(ROUTE_CHECK)
        self.openServer(browser)
        self.runKernel(browser, prefix)
        # JupyterHub read the routes back (its activity poll and route
        # check) while the user's route was there, and found nothing to mend.
        self.wait(lambda: self.hub.output().count(ROUTE_CHECK) > checks, "a route check",
                  ACTIVITY_INTERVAL * 30)
        self.stopServer(prefix)
        self.assertUncomplaining()
        print("JupyterHub end to end: {:.1f} s".format(time.monotonic() - started))

    def hubServed(self):
        """
        JupyterHub added its own route (C{/}, to the hub) through the API,
        and proxyws serves the hub on its public port.
        """
        hub = self.wait(lambda: self.table().get("/"), "the hub's route", SLOW)
        self.assertEqual(hub, dict(hub, target="http://127.0.0.1:{}".format(self.hubPort),
                                   hub=True, jupyterhub=True))
        self.wait(lambda: self.api.status("/hub/api/") == 200, "the hub through proxyws")

    def logIn(self):
        """
        Log in through the hub's form (with its C{_xsrf} field and cookie)
        as a browser does: a wrong password is refused, the right one gives
        a session that the hub's pages accept.

        @return: the browser (a L{Client} with the session's cookies).
        """
        browser = Client(self.public)
        page = browser.get("/hub/login")
        self.assertEqual(page.status, 200, page)
        xsrf = re.search(rb'name="_xsrf" value="([^"]+)"', page.body).group(1).decode("ascii")
        self.assertIsNotNone(browser.cookie("_xsrf"))
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for password, status in ((PASSWORD + "x", 403), (PASSWORD, 302)):
            body = urlencode({"username": USER, "password": password, "_xsrf": xsrf})
            answer = browser.request("POST", "/hub/login", body.encode("utf-8"), form)
            self.assertEqual(answer.status, status, answer)
        self.assertIsNotNone(browser.cookie("jupyterhub-session-id"))
        home = browser.get("/hub/home")
        self.assertEqual(home.status, 200, home)
        self.assertIn(USER.encode("utf-8"), home.body)
        return browser

    def startServer(self):
        """
        Start the user's server through the hub's API and wait until the
        hub says it is ready (JupyterHub adds its route before that).
        """
        answer = self.api.request("POST", "/hub/api/users/{}/server".format(USER_PATH), b"")
        self.assertIn(answer.status, (201, 202), answer)

        def ready():
            server = self.api.get("/hub/api/users/" + USER_PATH).json()["servers"].get("")
            return server if server and server["ready"] else None

        server = self.wait(ready, "the user's server", SLOW)
        self.hub.serverPids.append(server["state"]["pid"])

    def openServer(self, browser):
        """
        The browser opens a file of the user's server: redirected to the
        hub's OAuth authorization and back to the server's callback, it
        gets the server's cookies (path C{/user/NAME/}) and the file.
        """
        answer = browser.follow("/user/{}/files/{}".format(USER_PATH, HOME_FILE))
        self.assertEqual((answer.status, answer.body), (200, HOME_TEXT), answer)
        self.assertIsNotNone(browser.cookie("jupyterhub-user-" + USER_PATH))

    def runKernel(self, browser, prefix):
        """
        Start a kernel through proxyws (the server's XSRF cookie sent back
        in its header), open its websocket channels through proxyws with
        the browser's cookies, run C{1+1} and read C{2}; the route's last
        activity moves with the websocket's messages, as C{inactive_since}
        shows.  Then the same in the binary form of JupyterLab's
        subprotocol, which the server picks.
        """
        base = "/user/{}/api/kernels".format(USER_PATH)
        xsrf = browser.cookie("_xsrf", "/user/{}/".format(USER_PATH))
        kernel = browser.request("POST", base, {"name": "python3"}, {"X-XSRFToken": xsrf})
        self.assertEqual(kernel.status, 201, kernel)
        path = "{}/{}/channels".format(base, kernel.json()["id"])
        with connect("ws://127.0.0.1:{}{}".format(self.public, path),
                     additional_headers={"Cookie": browser.cookieHeader(path)},
                     open_timeout=WAIT, max_size=None) as webSocket:
            before = parseTime(self.route(prefix)["last_activity"])
            # Only websocket messages reach the server from here on.
            waitFor(lambda: time.time() > before + 0.01, WAIT, "the clock", step=0.002)
            since = time.time()
            messageId, request = executeRequest("1+1")
            webSocket.send(request)
            self.assertEqual(executeResult(webSocket, messageId), "2")
            self.assertNotIn(prefix, self.inactiveSince(since))
            self.assertIn(prefix, self.inactiveSince(time.time() + 1))
            self.assertGreaterEqual(
                parseTime(self.route(prefix)["last_activity"]), formatSeconds(since))
        with connect("ws://127.0.0.1:{}{}".format(self.public, path), subprotocols=[KERNEL_V1],
                     additional_headers={"Cookie": browser.cookieHeader(path)},
                     open_timeout=WAIT, max_size=None) as webSocket:
            self.assertEqual(webSocket.subprotocol, KERNEL_V1)
            messageId, request = executeRequest("6*7")
            webSocket.send(packV1(request))
            self.assertEqual(executeResult(webSocket, messageId), "42")

    def stopServer(self, prefix):
        """
        Stop the user's server through the hub's API: JupyterHub removes its
        route, and proxyws no longer has it.
        """
        answer = self.api.request("DELETE", "/hub/api/users/{}/server".format(USER_PATH))
        self.assertIn(answer.status, (202, 204), answer)
        self.wait(lambda: self.route(prefix) is None, "the route's removal", SLOW)
        self.assertNotIn(prefix, self.table())
        self.assertIn("/", self.table())


def formatSeconds(when):
    """
    @return: C{when} as the API shows it (milliseconds), in seconds.
    """
    return parseTime(formatTime(when))
