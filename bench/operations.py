#!/usr/bin/env python3
"""
How long a restart and a reload take with many open websockets, with
proxyws under supervisord as conf/supervisord-proxyws.conf runs it.

1. Reload: with 1,000 websockets open, the config file gains a route and
   proxyws gets SIGHUP (what C{supervisorctl signal HUP proxyws} sends).
   Measured: the time until the new route answers, how many of the 1,000
   websockets are still open afterwards (all must be) and how many of them
   echo a message.
2. Restart: with 1,000 websockets open, supervisord stops proxyws (SIGTERM,
   as C{supervisorctl restart proxyws} does, through supervisord's XML-RPC
   interface so that supervisorctl's own start-up is not counted) and
   starts it again.  Measured from the stop request: when the websockets
   got their 1001 (first, median, last), when the old process exited, when
   the proxy answered a request again, and when all 1,000 clients had
   opened a new websocket and echoed a message through it, as clients that
   reconnect do (Shiny's reconnect for 15 s).

Each is run C{--runs} times (default 3); each run's figures are printed,
then the least and the median of each.

The proxy runs the shipped program section (paths aside) under a
C{supervisord -n} of the script's own, in a temporary directory; the HTTP
backend (200 C{hello}) runs in this process, the websocket echo backend is
C{bench/wsecho.py}.  Run it from a checkout with a Python that has proxyws's
dependencies, C{websockets} and C{supervisor} (the test extra has both)::

    python3 -m venv /tmp/ops && /tmp/ops/bin/pip install -e '.[test]'
    /tmp/ops/bin/python bench/operations.py                 # both, 3 runs each
    /tmp/ops/bin/python bench/operations.py --only reload --runs 5

Each websocket holds two descriptors in the proxy and one here (two while
the clients reconnect): 1,000 need an open-file limit above 2,100.
"""

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client

from supervisor.xmlrpc import SupervisorTransport
from websockets.asyncio.client import connect

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
BIN = os.path.dirname(sys.executable)

# How many websockets are opened at once.
CONCURRENT_OPENS = 100

# Seconds between two polls of the proxy (a request, the old process).
POLL = 0.01

# Seconds anything may take before the run gives up.
LIMIT = 120

SUPERVISORD = """\
[unix_http_server]
file={directory}/supervisor.sock

[supervisord]
logfile={directory}/supervisord.log
pidfile={directory}/supervisord.pid
childlogdir={directory}
nodaemon=true
minfds={files}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{directory}/supervisor.sock

"""

# The proxy's config; a reload appends EXTRA_ROUTE.
PROXY = """\
[server]
access_log = "{directory}/access.log"
shutdown_timeout = 30

[[listen]]
address = "127.0.0.1"
port = {port}

[[route]]
path = "/ws/"
backend = "ws://127.0.0.1:{ws}/ws/"

[[route]]
path = "/"
backend = "http://127.0.0.1:{http}/"
"""

EXTRA_ROUTE = """
[[route]]
path = "/reload{n}/"
backend = "http://127.0.0.1:{http}/"
"""


def freePort():
    """
    @return: a TCP port of 127.0.0.1 that is free now.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def programSection(directory):
    """
    The shipped supervisord program section, running this Python's twistd
    on the config in C{directory}.
    """
    with open(os.path.join(TOP, "conf", "supervisord-proxyws.conf")) as f:
        text = f.read()
    text = text[text.index("[program:proxyws]") :]
    for shipped, used in [
        ("/opt/proxyws/venv/bin/twistd", os.path.join(BIN, "twistd")),
        ("/etc/proxyws/proxyws.toml", os.path.join(directory, "proxyws.toml")),
        ("/var/log/proxyws/proxyws.log", os.path.join(directory, "proxyws.log")),
        ("user=proxyws\n", ""),
    ]:
        text = text.replace(shipped, used)
    return text


async def serveHello(reader, writer):
    """
    The HTTP backend: 200 C{hello} to every request, kept alive.
    """
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    except asyncio.CancelledError:
        pass  # the script is ending
    writer.close()


async def answers(port, path):
    """
    @return: whether a GET of C{path} on a new connection is answered 200.
    """
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        writer.write(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        line = await asyncio.wait_for(reader.readline(), 2)
        return line.startswith(b"HTTP/1.1 200")
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        writer.close()


async def waitUntil(predicate, limit=LIMIT):
    """
    Poll the coroutine function C{predicate} every L{POLL} seconds.

    @return: the monotonic time at which it first returned true.
    @raise RuntimeError: after C{limit} seconds.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await predicate():
            return time.monotonic()
        await asyncio.sleep(POLL)
    raise RuntimeError("%r not true within %ds" % (predicate, limit))


class Clients:
    """
    The websockets opened through the proxy.

    @ivar open: the open connections.
    @ivar closedAt: for each connection the proxy closed, C{(monotonic
        time, close code)}.
    """

    def __init__(self, port):
        self._uri = "ws://127.0.0.1:%d/ws/echo" % port
        self.open = []
        self.closedAt = []

    async def openOne(self, limiter):
        """
        Open one websocket and echo one message through it.
        """
        async with limiter:
            websocket = await connect(
                self._uri, ping_interval=None, close_timeout=LIMIT, open_timeout=LIMIT
            )
            await websocket.send("hello")
            if await asyncio.wait_for(websocket.recv(), LIMIT) != "hello":
                raise RuntimeError("the echo did not match")
        self.open.append(websocket)
        asyncio.get_running_loop().create_task(self._watch(websocket))

    async def _watch(self, websocket):
        await websocket.wait_closed()
        self.closedAt.append((time.monotonic(), websocket.close_code))

    async def openAll(self, count):
        """
        Open C{count} websockets, L{CONCURRENT_OPENS} at a time.
        """
        limiter = asyncio.Semaphore(CONCURRENT_OPENS)
        await asyncio.gather(*[self.openOne(limiter) for _ in range(count)])

    async def echoing(self, text):
        """
        @return: how many of the open websockets echo C{text} back.
        """

        async def echo(websocket):
            try:
                await websocket.send(text)
                return await asyncio.wait_for(websocket.recv(), LIMIT) == text
            except Exception:
                return False

        return sum(await asyncio.gather(*[echo(w) for w in self.open]))

    def forget(self):
        """
        Drop the connections (after the proxy closed them).
        """
        self.open = []
        self.closedAt = []


class Supervised:
    """
    supervisord running proxyws, in a temporary directory.
    """

    def __init__(self, websockets, keep=False):
        self.directory = tempfile.mkdtemp(prefix="proxyws-ops-")
        self.keep = keep
        self.port, self.httpPort, self.wsPort = freePort(), freePort(), freePort()
        self.reloads = 0
        self.writeConfig()
        self._conf = os.path.join(self.directory, "supervisord.conf")
        files = max(4096, 3 * websockets + 1024)
        with open(self._conf, "w") as f:
            f.write(SUPERVISORD.format(directory=self.directory, files=files))
            f.write(programSection(self.directory))
        env = dict(os.environ, PYTHONPATH=TOP + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self._processes = []
        self._start([sys.executable, os.path.join(HERE, "wsecho.py"), str(self.wsPort)], env, "wsecho")
        self.supervisord = self._start(
            [os.path.join(BIN, "supervisord"), "-n", "-c", self._conf], env, "supervisord.out"
        )
        socketPath = os.path.join(self.directory, "supervisor.sock")
        self.rpc = xmlrpc.client.ServerProxy(
            "http://127.0.0.1", transport=SupervisorTransport(None, None, "unix://" + socketPath)
        )

    def _start(self, argv, env, log):
        with open(os.path.join(self.directory, log), "wb") as out:
            process = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        self._processes.append(process)
        return process

    def writeConfig(self):
        """
        Write the proxy's config, with a route for each reload so far.
        """
        text = PROXY.format(
            directory=self.directory, port=self.port, ws=self.wsPort, http=self.httpPort
        )
        for n in range(1, self.reloads + 1):
            text += EXTRA_ROUTE.format(n=n, http=self.httpPort)
        with open(os.path.join(self.directory, "proxyws.toml"), "w") as f:
            f.write(text)

    def pid(self):
        """
        @return: proxyws's process id, as supervisord knows it.
        """
        return self.rpc.supervisor.getProcessInfo("proxyws")["pid"]

    def log(self, name):
        """
        @return: the text of a log file in the directory.
        """
        try:
            with open(os.path.join(self.directory, name), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        """
        Stop supervisord (and proxyws with it) and the echo backend.
        """
        for process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self.keep:
            print("files kept in", self.directory)
        else:
            shutil.rmtree(self.directory, ignore_errors=True)


async def reloadOnce(supervised, clients):
    """
    One reload with the websockets open.

    @return: its figures.
    """
    supervised.reloads += 1
    supervised.writeConfig()
    path = "/reload%d/" % supervised.reloads
    started = time.monotonic()
    os.kill(supervised.pid(), signal.SIGHUP)
    served = await waitUntil(lambda: answers(supervised.port, path))
    stillOpen = sum(1 for w in clients.open if w.close_code is None)
    echoing = await clients.echoing("after reload %d" % supervised.reloads)
    return {
        "new route served, s": served - started,
        "websockets still open": stillOpen,
        "websockets echoing": echoing,
    }


async def restartOnce(supervised, clients, count):
    """
    One restart with C{count} websockets open; the clients open new ones
    once the proxy serves again.

    @return: its figures.
    """
    loop = asyncio.get_running_loop()
    oldPid = supervised.pid()
    started = time.monotonic()
    # supervisorctl restart: stop (SIGTERM, waiting for the exit), then start.
    restart = loop.run_in_executor(
        None,
        lambda: (supervised.rpc.supervisor.stopProcess("proxyws", True),
                 supervised.rpc.supervisor.startProcess("proxyws", False)),
    )

    async def down():
        return not await answers(supervised.port, "/")

    async def exited():
        try:
            os.kill(oldPid, 0)
        except ProcessLookupError:
            return True
        return False

    async def allClosed():
        return len(clients.closedAt) >= count

    wentDown = await waitUntil(down)
    oldExited = await waitUntil(exited)
    servedAgain = await waitUntil(lambda: answers(supervised.port, "/"))
    await waitUntil(allClosed)
    closes = sorted(t - started for t, _ in clients.closedAt)
    codes = {}
    for _, code in clients.closedAt:
        codes[code] = codes.get(code, 0) + 1
    clients.forget()
    await clients.openAll(count)
    allBack = time.monotonic()
    await restart
    return {
        "stopped accepting, s": wentDown - started,
        "first 1001, s": closes[0],
        "median 1001, s": statistics.median(closes),
        "last 1001, s": closes[-1],
        "close codes": codes,
        "old process exited, s": oldExited - started,
        "serving again, s": servedAgain - started,
        "all %d reconnected and echoing, s" % count: allBack - started,
    }


def show(name, run, figures):
    """
    Print one run's figures.
    """
    print("%s %d:" % (name, run))
    for key, value in figures.items():
        print("  %-40s %s" % (key, "%.3f" % value if isinstance(value, float) else value))


def summarize(name, runs):
    """
    Print the least and the median of each figure over the runs.
    """
    print("%s, %d runs (least / median):" % (name, len(runs)))
    for key in runs[0]:
        values = [run[key] for run in runs]
        if all(isinstance(v, (int, float)) for v in values):
            print("  %-40s %s / %s" % (key, _fmt(min(values)), _fmt(statistics.median(values))))
        else:
            print("  %-40s %s" % (key, values))


def _fmt(value):
    return "%.3f" % value if isinstance(value, float) else str(value)


async def run(options):
    """
    Start everything, measure, print.
    """
    supervised = Supervised(options.websockets, options.keep)
    results = {"reload": [], "restart": []}
    http = await asyncio.start_server(serveHello, "127.0.0.1", supervised.httpPort)
    try:
        await waitUntil(lambda: answers(supervised.port, "/"))
        clients = Clients(supervised.port)
        await clients.openAll(options.websockets)
        print("%d websockets open through proxyws (pid %d)" % (len(clients.open), supervised.pid()))
        if "reload" in options.only:
            for n in range(1, options.runs + 1):
                figures = await reloadOnce(supervised, clients)
                show("reload", n, figures)
                results["reload"].append(figures)
        if "restart" in options.only:
            for n in range(1, options.runs + 1):
                figures = await restartOnce(supervised, clients, options.websockets)
                show("restart", n, figures)
                results["restart"].append(figures)
        print()
        for name, runs in results.items():
            if runs:
                summarize(name, runs)
        stops = re.findall(r"stopped: proxyws \(([^)]*)\)", supervised.log("supervisord.log"))
        print("supervisord: proxyws stopped with", ", ".join(stops) or "-")
        for websocket in clients.open:
            await websocket.close()
    finally:
        supervised.stop()
        http.close()
    if options.output:
        with open(options.output, "w") as f:
            json.dump({"websockets": options.websockets, "results": results}, f, indent=1)
            f.write("\n")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--websockets", type=int, default=1000, help="websockets open (1000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each (3)")
    parser.add_argument(
        "--only", type=lambda v: v.split(","), default=["reload", "restart"],
        help="reload, restart or both (the default)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--output", help="write the figures to this JSON file")
    options = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * options.websockets + 1024
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    asyncio.run(run(options))


if __name__ == "__main__":
    main(sys.argv[1:])
