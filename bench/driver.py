"""
The proxyws benchmark: direct, nginx and proxyws side by side on the same
backends, one run, one table.

Run through C{bench/run}, which installs what is needed and pins this
driver (and so every load client it starts) to the load core.  See
C{bench/README.rst} for what each row measures.

Pinning (two cores): the proxies under test (nginx's one worker, proxyws)
run on core 0 (C{PROXY_CPU}); the backends (a second nginx for HTTP, the
asyncio websocket echo server), wrk, the Python load clients and this driver
run on core 1 (C{LOAD_CPU}).
"""

import argparse
import datetime
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
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from clients import cpuSeconds  # noqa: E402

CLOCK_TICK = os.sysconf("SC_CLK_TCK")

# Other processes keeping the machine busier than this (in cores, averaged
# over a measurement) make its numbers suspect: the run says so.
FOREIGN_LIMIT = 0.15

# In the full run, a disturbed measurement is taken again up to this many
# times (the least disturbed attempt counts), within RETRY_BUDGET seconds
# of retries per run, so that the run stays under 15 minutes.
RETRIES = 2
RETRY_BUDGET = 240

# The rows with targets that depend on speed (small GETs, small websocket
# messages, the two latencies) are taken in this many rounds, the targets
# taking turns, so that the machine's speed drifting in the meantime weighs
# on every target alike; each figure is the median of its rounds.
ROUNDS = 5

# Before each measurement the driver waits for other processes to go quiet,
# within this many seconds per run in all (then it stops waiting).
QUIET_BUDGET = {"quick": 10, "full": 150}

PROXY_CPU = 0
LOAD_CPU = 1

# Durations and sizes of the two modes.  "idle" is the number of idle
# websockets; the full run lowers it when the open-file limit cannot hold
# two descriptors per relayed websocket in the proxy (see idleCount).
MODES = {
    "quick": dict(seconds=5, warmup=1, latencySamples=2000, idle=1000),
    "full": dict(seconds=10, warmup=2, latencySamples=5000, idle=10000),
}

SMALL_PATH = "/small"  # backend answers 200 "hello"
# The same answer through the proxies' 3-member upstream of the HTTP backend
# (its nginx listens on UP_MEMBERS ports); direct, the backend answers it.
UP_PATH = "/up/small"
UP_MEMBERS = 3
# The same answer through a route added with configurable-http-proxy's API
# (prefix API_PREFIX, to the HTTP backend): the whole path goes to the
# backend, which answers API_PATH as it answers SMALL_PATH.
API_PREFIX = "/chp"
API_PATH = API_PREFIX + SMALL_PATH
POST_PATH = "/post"  # backend reads and discards the body, answers 200 "ok"
BIG_PATH = "/big.bin"  # static file of BIG_SIZE bytes
BIG_SIZE = 100 * 2**20
WS_PATH = "/ws/bench"
WS_SMALL = 32  # bytes per small websocket message
WS_BIG = 2**20  # bytes per large websocket message
WS_CONNS = 32  # websockets doing ping-pong of small messages
WS_BIG_CONNS = 2  # websockets doing ping-pong of large messages
HANDSHAKE_CONNS = 4  # concurrent open/close loops
WRK_CONNS = 32

# HOOK(workers): proxyws variants measured side by side, each a name and
# extra [server] keys.  When "[server] workers" exists, add a row here, e.g.
#     ("proxyws-2w", {"workers": 2}),
# or pass "--variant proxyws-2w:workers=2" to bench/run without editing this
# file.  Every variant gets its own column, its ratios to nginx and direct,
# and its target marks; its CPU and RSS are summed over the whole process
# tree of the twistd it starts, so worker processes are counted.  If the
# workers should run on more than core 0, change the variant's "cpus" below.
PROXYWS_VARIANTS = [
    ("proxyws", {}),
]

# The measurements, in the order they run (names for --only).
TESTS = (
    "smallget", "smallup", "metrics", "apiroute", "post64k", "download", "httplat", "wsmsgs",
    "wslat", "wsbig", "wshs", "wsidle",
)

# The table: key in the results, label, unit, which way is better, and the
# spec's target for the proxyws/nginx ratio ("ge" 0.15: proxyws >= 0.15 x
# nginx; "le" 4: proxyws <= 4 x nginx), or None.
ROWS = [
    ("smallget.rps", "small GET keep-alive (wrk -c32)", "req/s", "high", ("ge", 0.15)),
    ("smallget.proxy_cpu_us", "  proxy CPU per request", "us/req", "low", None),
    ("smallget.load_cpu_us", "  load side CPU per request", "us/req", "low", None),
    ("smallup.rps", "small GET via 3-member upstream", "req/s", "high", None),
    ("smallup.proxy_cpu_us", "  proxy CPU per request", "us/req", "low", None),
    ("smallup.single_rps", "  same rounds, single backend", "req/s", "high", None),
    ("smallup.single_proxy_cpu_us", "  same rounds, proxy CPU per request", "us/req", "low", None),
    ("metrics.rps", "small GET, [admin] metrics on", "req/s", "high", None),
    ("metrics.proxy_cpu_us", "  proxy CPU per request", "us/req", "low", None),
    ("metrics.off_rps", "  same rounds, metrics off", "req/s", "high", None),
    ("metrics.off_proxy_cpu_us", "  same rounds, proxy CPU per request", "us/req", "low", None),
    ("metrics.added_cpu_us", "  CPU on - off, median of rounds", "us/req", "low", None),
    ("apiroute.rps", "small GET via CHP API route", "req/s", "high", None),
    ("apiroute.proxy_cpu_us", "  proxy CPU per request", "us/req", "low", None),
    ("apiroute.config_rps", "  same rounds, config route", "req/s", "high", None),
    ("apiroute.config_proxy_cpu_us", "  same rounds, proxy CPU per request", "us/req", "low", None),
    ("post64k.rps", "64 KiB POST (wrk -c32)", "req/s", "high", None),
    ("download.best_mibps", "100 MiB HTTP download, best of 3", "MiB/s", "high", ("ge", 0.55)),
    ("httplat.p50_us", "HTTP latency p50, 1 conn", "us", "low", None),
    ("httplat.added_p50_us", "HTTP added latency p50", "us", "low", ("le", 4.0)),
    ("wsmsgs.messages_per_s", "ws 32 B msgs relayed, 32 conns", "msg/s", "high", None),
    ("wsmsgs.proxy_cpu_us_per_message", "  proxy CPU per ws message", "us/msg", "low", ("le", 2.5)),
    ("wslat.p50_us", "ws echo latency p50, 1 conn", "us", "low", None),
    ("wslat.added_p50_us", "ws added latency p50", "us", "low", ("le", 4.0)),
    ("wsbig.mib_per_s", "ws 1 MiB msgs relayed, 2 conns", "MiB/s", "high", ("ge", 0.55)),
    ("wshs.per_s", "ws handshakes (open+close), 4 loops", "/s", "high", None),
    ("wshs.proxy_cpu_us_per_handshake", "  proxy CPU per handshake", "us", "low", None),
    ("wsidle.mib_per_1000", "idle ws RSS per 1000", "MiB", "low", ("le", 0.7)),
]


# -- processes ---------------------------------------------------------------


class Processes:
    """
    Every process the benchmark starts, each in its own session so that it
    can be stopped with its children (nginx's workers) by process group.
    Their group ids are also kept in C{pidFile}, so that C{bench/run} can
    stop them even if this driver is killed.
    """

    def __init__(self, pidFile):
        self._pidFile = pidFile
        self._running = []

    def start(self, argv, cpu, log, env=None):
        """
        Start C{argv} pinned to C{cpu}, output to the file C{log}.

        @return: the L{subprocess.Popen}.
        """
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ["taskset", "-c", str(cpu)] + argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        proc.logFile = log
        self._running.append(proc)
        self._save()
        return proc

    def _save(self):
        """
        Write the group ids still running to C{pidFile}, so that bench/run
        never signals a recycled id of a process already stopped.
        """
        with open(self._pidFile, "w") as f:
            f.writelines("%d\n" % proc.pid for proc in self._running)

    def stop(self, proc, grace=10):
        """
        SIGTERM the process group of C{proc}, SIGKILL it after C{grace}
        seconds.
        """
        if proc in self._running:
            self._running.remove(proc)
            self._save()
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            # The group leader is gone; its children may not be.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return

    def running(self):
        """
        @return: the processes started and not stopped.
        """
        return list(self._running)

    def stopAll(self):
        """
        Stop everything still running, the last started first.
        """
        for proc in reversed(list(self._running)):
            self.stop(proc)


def freePort():
    """
    @return: a TCP port of 127.0.0.1 that is free now.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StartError(Exception):
    """
    A server exited or did not listen in time when started.
    """


def waitForPort(port, proc, timeout=30):
    """
    Wait until something accepts connections on C{port}.

    @raise StartError: if C{proc} exits or C{timeout} passes first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartError(
                "%s exited with status %s:\n%s" % (proc.args, proc.returncode, tail(proc.logFile))
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise StartError("%s: nothing listens on port %d after %ds" % (proc.args, port, timeout))


def tail(path, lines=20):
    """
    @return: the last C{lines} lines of a file.
    """
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def combineRounds(results):
    """
    One result from the results of several rounds of a measurement: counts
    (samples, errors) are summed, every other number is the median of the
    rounds, and C{rounds} keeps each round's result.

    @return: the combined result, or L{None} when a round gave none.
    """
    if any(not isinstance(r, dict) for r in results):
        return None
    combined = {"rounds": results}
    for name, value in results[0].items():
        values = [r.get(name) for r in results]
        if name in ("samples", "errors") and all(isinstance(v, int) for v in values):
            combined[name] = sum(values)
        elif all(isinstance(v, dict) for v in values):
            # Counts by kind (wrk's errors) are summed; other tables are
            # kept per round only.
            counts = [n for v in values for n in v.values()]
            if all(isinstance(n, int) for n in counts):
                combined[name] = {
                    kind: sum(v.get(kind, 0) for v in values) for kind in set().union(*values)
                }
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            combined[name] = statistics.median(values)
    return combined


def childrenCpuSeconds():
    """
    @return: CPU seconds (user and system) of the children of this process
        that have been waited for (wrk runs as one).
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def children(pid):
    """
    @return: the ids of all descendants of C{pid}.
    """
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


# -- the servers ---------------------------------------------------------------


def nginxBinary():
    """
    @return: the path of nginx (often in /usr/sbin, not on a user's PATH).
    """
    return shutil.which("nginx") or "/usr/sbin/nginx"


def nginxCommon(prefix, name, connections):
    """
    The top of an nginx config: one worker, no daemon, files in C{prefix}.
    """
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return """
user root;
daemon off;
worker_processes 1;
worker_rlimit_nofile {files};
pid {prefix}/{name}.pid;
error_log {prefix}/{name}-error.log warn;
events {{ worker_connections {connections}; }}
""".format(prefix=prefix, name=name, files=files, connections=connections)


def nginxTemps(prefix, name):
    return "".join(
        "    {kind}_temp_path {prefix}/{name}-{kind};\n".format(kind=kind, prefix=prefix, name=name)
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


def backendNginxConfig(prefix, port, morePorts=()):
    """
    The HTTP backend: a small answer, a POST sink, and the big static file;
    on C{port} and C{morePorts} (the members of the proxies' upstream).
    """
    return nginxCommon(prefix, "backend", 4096) + """
http {{
{temps}
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
{listen}
        client_max_body_size 0;
        location = {small} {{ default_type text/plain; return 200 "hello"; }}
        location = {up} {{ default_type text/plain; return 200 "hello"; }}
        location = {api} {{ default_type text/plain; return 200 "hello"; }}
        location = {post} {{ default_type text/plain; return 200 "ok"; }}
        location / {{ root {prefix}/www; }}
    }}
}}
""".format(
        temps=nginxTemps(prefix, "backend"),
        listen="\n".join(
            "        listen 127.0.0.1:%d backlog=4096;" % p for p in (port,) + tuple(morePorts)
        ),
        small=SMALL_PATH,
        up=UP_PATH,
        api=API_PATH,
        post=POST_PATH,
        prefix=prefix,
    )


def proxyNginxConfig(prefix, port, httpPort, wsPort, connections, upPorts=()):
    """
    nginx as the reverse proxy under test, set up as fairly as we can
    against proxyws: HTTP/1.1 keep-alive to the backend (32 idle), bodies
    streamed both ways (no buffering, 64 KiB reads like Twisted's), the
    same X-Forwarded-* headers proxyws adds, an access log to a file, and
    websocket upgrades passed through.  C{/up/} goes round robin to an
    upstream of the backend on C{upPorts}.
    """
    forwarded = """
            proxy_http_version 1.1;
            proxy_set_header Host $proxy_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_buffer_size 64k;
            proxy_buffers 4 64k;
            proxy_busy_buffers_size 128k;"""
    return nginxCommon(prefix, "nginx", connections) + """
http {{
{temps}
    access_log {prefix}/nginx-access.log combined;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_max_body_size 0;
    upstream httpbackend {{
        server 127.0.0.1:{httpPort};
        keepalive 32;
        keepalive_requests 100000000;
    }}
    upstream wsbackend {{
        server 127.0.0.1:{wsPort};
    }}
    upstream httpthree {{
{upServers}
        keepalive 32;
        keepalive_requests 100000000;
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' '';
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location /ws/ {{
            proxy_pass http://wsbackend;{forwarded}
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
        location /up/ {{
            proxy_pass http://httpthree/;{forwarded}
            proxy_set_header Connection "";
        }}
        location / {{
            proxy_pass http://httpbackend;{forwarded}
            proxy_set_header Connection "";
        }}
    }}
}}
""".format(
        temps=nginxTemps(prefix, "nginx"),
        prefix=prefix,
        port=port,
        httpPort=httpPort,
        wsPort=wsPort,
        forwarded=forwarded,
        upServers="\n".join(
            "        server 127.0.0.1:%d;" % p for p in (tuple(upPorts) or (httpPort,))
        ),
    )


def tomlValue(value):
    """
    @return: C{value} written as TOML.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def proxywsConfig(prefix, name, port, httpPort, wsPort, extra, upPorts=(), adminPort=None):
    """
    proxyws in front of the same backends, the access log to a file;
    C{/up/} to an upstream of the HTTP backend on C{upPorts} (round robin);
    with C{adminPort}, an C{[admin]} listener there (no token, loopback):
    metrics on, and configurable-http-proxy's API.
    """
    server = {"access_log": "%s/%s-access.log" % (prefix, name), "shutdown_timeout": 2}
    server.update(extra)
    lines = ["[server]"]
    lines += ["%s = %s" % (key, tomlValue(value)) for key, value in server.items()]
    lines += [
        "",
        "[[listen]]",
        'address = "127.0.0.1"',
        "port = %d" % port,
        "",
        "[[upstream]]",
        'name = "three"',
        "members = [%s]"
        % ", ".join('"http://127.0.0.1:%d/"' % p for p in (tuple(upPorts) or (httpPort,))),
        "",
        "[[route]]",
        'path = "/up/"',
        'upstream = "three"',
        "",
        "[[route]]",
        'path = "/ws/"',
        'backend = "http://127.0.0.1:%d/ws/"' % wsPort,
        "",
        "[[route]]",
        'path = "/"',
        'backend = "http://127.0.0.1:%d/"' % httpPort,
        "",
    ]
    if adminPort is not None:
        lines += ["[admin]", 'address = "127.0.0.1"', "port = %d" % adminPort, ""]
    return "\n".join(lines)


class Target:
    """
    One column of the table: where the clients connect, and which processes
    are the proxy (for CPU and RSS).

    @ivar kind: C{"direct"}, C{"nginx"} or C{"proxyws"}.
    @ivar proc: the proxy's process, or L{None} for direct.
    """

    def __init__(self, name, kind, httpPort, wsPort, proc=None, start=None):
        self.name = name
        self.kind = kind
        self.httpPort = httpPort
        self.wsPort = wsPort
        self.proc = proc
        self._start = start

    def pids(self):
        """
        @return: the processes whose CPU and memory count for the proxy:
            nginx's workers; proxyws's twistd and all its descendants.
        """
        if self.proc is None:
            return []
        if self.kind == "nginx":
            return children(self.proc.pid)
        return [self.proc.pid] + children(self.proc.pid)

    def restart(self):
        """
        Stop the proxy and start a fresh one on the same port.
        """
        if self._start is not None:
            self.proc = self._start(restart=self.proc)


class Bench:
    """
    One run: the servers, the measurements, the table.
    """

    def __init__(self, options):
        self.options = options
        self.mode = MODES[options.mode]
        self.tmp = tempfile.mkdtemp(prefix="proxyws-bench-")
        self.procs = Processes(options.pid_file or os.path.join(self.tmp, "pids"))
        self.venv = options.venv
        self.problems = []
        self.results = {}
        self.targets = []
        self.backendProcs = {}
        self.idle = None
        self.noisy = []
        # Each proxyws variant's twin with an [admin] listener (metrics on),
        # by the variant's name: not a column, measured beside it.
        self.twins = {}
        self.turns = {}
        # Twin name -> the twin once the API route was added to it, or
        # None when its API refused the route.
        self.apiRouted = {}

    # -- starting --

    def startAll(self):
        """
        Start the backends and the proxies, and wait until they listen.
        """
        www = os.path.join(self.tmp, "www")
        os.makedirs(www)
        with open(os.path.join(www, BIG_PATH.lstrip("/")), "wb") as f:
            for _ in range(BIG_SIZE // 2**20):
                f.write(os.urandom(2**20))
        self.httpPort, self.wsPort = freePort(), freePort()
        self.upPorts = [self.httpPort] + [freePort() for _ in range(UP_MEMBERS - 1)]
        conf = self._write(
            "backend.conf", backendNginxConfig(self.tmp, self.httpPort, self.upPorts[1:])
        )
        self.backends = {
            "HTTP backend (nginx)": (
                [nginxBinary(), "-p", self.tmp, "-c", conf], "backend", self.httpPort
            ),
            "websocket echo backend": (
                [sys.executable, os.path.join(HERE, "wsecho.py"), str(self.wsPort)],
                "wsecho",
                self.wsPort,
            ),
        }
        self.backendProcs = {name: self._startBackend(name) for name in self.backends}
        self.targets.append(Target("direct", "direct", self.httpPort, self.wsPort))
        self.targets.append(self._startNginx(freePort()))
        for name, extra in PROXYWS_VARIANTS + self.options.variant:
            self.targets.append(self._startProxyws(name, extra, freePort()))
            # [admin] runs with one worker only (a config with both is refused).
            single = extra.get("workers", 1) == 1
            wanted = {"metrics", "apiroute"}
            if single and (not self.options.only or wanted & set(self.options.only)):
                self.twins[name] = self._startProxyws(
                    name + "-metrics", extra, freePort(), adminPort=freePort()
                )

    def _startBackend(self, name):
        argv, log, port = self.backends[name]
        proc = self.procs.start(argv, LOAD_CPU, self._log(log))
        waitForPort(port, proc)
        return proc

    def checkBackends(self, test):
        """
        Are the backends still running?  One that exited (crashed, or
        killed by someone else) is reported and started again.

        @return: whether one had to be started again.
        """
        restarted = False
        for name, proc in list(self.backendProcs.items()):
            if proc.poll() is None:
                continue
            status = proc.returncode
            how = "killed by signal %d" % -status if status < 0 else "status %d" % status
            entry = {
                "target": name,
                "test": test,
                "problem": "exited (%s) during this measurement; started again; log:\n%s"
                % (how, tail(proc.logFile) or "(empty)"),
            }
            self.problems.append(entry)
            print("  !! %(target)s / %(test)s: %(problem)s" % entry, flush=True)
            self.procs.stop(proc)
            self.backendProcs[name] = self._startBackend(name)
            restarted = True
        return restarted

    def _write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def _log(self, name):
        return os.path.join(self.tmp, name + ".log")

    def _startNginx(self, port):
        # Two connections per relayed websocket; nginx starts closing
        # connections it considers reusable once fewer than 1/16 of
        # worker_connections are free, so leave far more than that.
        connections = 3 * self.idleCount() + 1024
        conf = self._write(
            "nginx.conf",
            proxyNginxConfig(
                self.tmp, port, self.httpPort, self.wsPort, connections, self.upPorts
            ),
        )

        def start(restart=None):
            if restart is not None:
                self.procs.stop(restart)
            proc = self.procs.start(
                [nginxBinary(), "-p", self.tmp, "-c", conf], PROXY_CPU, self._log("nginx")
            )
            waitForPort(port, proc)
            return proc

        return Target("nginx", "nginx", port, port, start(), start)

    def _startProxyws(self, name, extra, port, adminPort=None):
        # "cpus" is where the variant runs (taskset's list, e.g. "0-1" for
        # two workers on both cores); the other keys go to [server].
        extra = dict(extra)
        cpus = extra.pop("cpus", PROXY_CPU)
        conf = self._write(
            name + ".toml",
            proxywsConfig(
                self.tmp, name, port, self.httpPort, self.wsPort, extra, self.upPorts, adminPort
            ),
        )
        twistd = os.path.join(self.venv, "bin", "twistd")

        def start(restart=None):
            if restart is not None:
                self.procs.stop(restart)
            proc = self.procs.start(
                [twistd, "-n", "--pidfile=", "proxyws", "--config", conf],
                cpus,
                self._log(name),
            )
            waitForPort(port, proc)
            return proc

        target = Target(name, "proxyws", port, port, start(), start)
        target.adminPort = adminPort
        return target

    def apiTarget(self, target):
        """
        The target the API-route row measures for C{target}: for a proxyws
        variant, its twin with an admin listener (L{twins}), to which a
        route is added through configurable-http-proxy's API
        (C{API_PREFIX} to the HTTP backend) at the first call; for direct
        and nginx, the target itself.

        @return: a L{Target}, or L{None} for a variant without a twin (the
            admin listener runs with one process) or one whose API refused
            the route.
        """
        if target.kind != "proxyws":
            return target
        twin = self.twins.get(target.name)
        if twin is None or twin.name in self.apiRouted:
            return self.apiRouted.get(twin.name) if twin is not None else None
        body = json.dumps({"target": "http://127.0.0.1:%d" % self.httpPort}).encode()
        request = urllib.request.Request(
            "http://127.0.0.1:%d/api/routes%s" % (twin.adminPort, API_PREFIX), body, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                if answer.status != 201:
                    raise StartError("the API answered %d to the route" % answer.status)
        except (OSError, StartError) as e:
            self.problem(target, "apiroute", "the route through the API: %s" % e)
            self.apiRouted[twin.name] = None
            return None
        self.apiRouted[twin.name] = twin
        return twin

    def expectedSeconds(self):
        """
        @return: roughly how long the run takes without retries.
        """
        timed = 5 * len(self.targets) * (self.mode["seconds"] + self.mode["warmup"] + 1)
        # The rows taken in rounds warm up once a round.
        timed += 2 * (ROUNDS - 1) * len(self.targets) * (self.mode["warmup"] + 1)
        # The metrics row: two wrk runs a round for each twin.
        timed += 2 * ROUNDS * len(self.twins) * (self.mode["warmup"] + 2)
        # The API-route row: two wrk runs a round, each with its warm-up.
        timed += 2 * ROUNDS * len(self.twins) * (
            max(1, self.mode["seconds"] // ROUNDS) + self.mode["warmup"] + 1
        )
        return timed + 60 + self.idleCount() / 100

    def idleCount(self):
        """
        How many idle websockets to open: the mode's number, lowered to a
        multiple of 1000 when the open-file limit (raised to its hard limit
        by bench/run) cannot hold two per websocket in one proxy process.
        """
        wanted = self.options.idle or self.mode["idle"]
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        fits = (hard - 1000) // 2 // 1000 * 1000
        return max(1000, min(wanted, fits))

    # -- measuring --

    def client(self, command, target, *args, timeout=None):
        """
        Run one of the Python load clients against C{target}.

        @return: its JSON result, or L{None} after recording a problem.
        """
        argv = [sys.executable, os.path.join(HERE, "clients.py"), command]
        argv += ["--pids", ",".join(map(str, target.pids()))] + [str(a) for a in args]
        limit = timeout or (self.mode["seconds"] + self.mode["warmup"] + 120)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            self.problem(target, command, "client did not finish within %ds (hang?)" % limit)
            return None
        if done.returncode != 0:
            self.problem(target, command, "client failed: " + done.stderr.strip()[-800:])
            return None
        return json.loads(done.stdout)

    def wrk(self, target, path, script=None, seconds=None):
        """
        wrk with 1 thread and 32 connections, after a short warm-up, for
        C{seconds} (the mode's by default).

        @return: requests per second, errors and proxy CPU per request.
        """
        url = "http://127.0.0.1:%d%s" % (target.httpPort, path)
        extra = ["-s", os.path.join(HERE, script)] if script else []

        def run(seconds):
            argv = ["wrk", "-t1", "-c%d" % WRK_CONNS, "-d%ds" % seconds, "--timeout", "10s"]
            return subprocess.run(
                argv + extra + [url], capture_output=True, text=True, timeout=seconds + 60
            )

        run(self.mode["warmup"])
        pids = target.pids()
        # The load side: wrk (a child of this process) and the HTTP backend.
        backend = children(self.backendProcs["HTTP backend (nginx)"].pid)
        cpu0, load0 = cpuSeconds(pids), cpuSeconds(backend) + childrenCpuSeconds()
        done = run(seconds or self.mode["seconds"])
        cpu1, load1 = cpuSeconds(pids), cpuSeconds(backend) + childrenCpuSeconds()
        result = parseWrk(done.stdout)
        if result.get("requests"):
            result["load_cpu_us"] = (load1 - load0) / result["requests"] * 1e6
        if pids and result.get("requests"):
            result["proxy_cpu_us"] = (cpu1 - cpu0) / result["requests"] * 1e6
        if done.returncode or "rps" not in result:
            self.problem(target, "wrk " + path, "wrk failed: " + (done.stderr or done.stdout)[-800:])
        errors = result.get("errors", {})
        if any(errors.values()):
            self.problem(target, "wrk " + path, "errors: %s" % errors)
        return result

    def upstreamPair(self, target, seconds):
        """
        The small GET through the 3-member upstream, and right after it
        through the single backend, for C{seconds} each.

        @return: the upstream's C{rps} and C{proxy_cpu_us}, the single
            backend's as C{single_rps} and C{single_proxy_cpu_us}, and the
            errors of both.
        """
        up = self.wrk(target, UP_PATH, seconds=seconds)
        single = self.wrk(target, SMALL_PATH, seconds=seconds)
        return pairResult([("", up), ("single_", single)])

    def metricsPair(self, target, seconds):
        """
        The small GET through the twin of a proxyws C{target} that has an
        C{[admin]} listener (metrics on), and through C{target} (metrics
        off), for C{seconds} each; which goes first alternates from round
        to round.

        @return: the twin's C{rps} and C{proxy_cpu_us}, C{target}'s as
            C{off_rps} and C{off_proxy_cpu_us}, the difference of the two
            CPU figures (C{added_cpu_us}), the errors of both, and
            C{counted}: the requests the twin's C{/metrics} counted so far
            (so that a twin without metrics cannot pass unnoticed); L{None}
            for the targets that are not proxyws.
        """
        twin = self.twins.get(target.name)
        if twin is None:
            return None
        turn = self.turns[target.name] = self.turns.get(target.name, -1) + 1
        order = [("", twin), ("off_", target)]
        if turn % 2:
            order.reverse()
        measured = [(prefix, self.wrk(t, SMALL_PATH, seconds=seconds)) for prefix, t in order]
        self.checkAlive(twin, "metrics")
        result = pairResult(measured)
        if "proxy_cpu_us" in result and "off_proxy_cpu_us" in result:
            result["added_cpu_us"] = result["proxy_cpu_us"] - result["off_proxy_cpu_us"]
        result["counted"] = countedRequests(twin.adminPort)
        if not result["counted"]:
            self.problem(twin, "metrics", "its /metrics counted no request")
        return result

    def apiRoutePair(self, target, seconds):
        """
        The small GET through a route added with configurable-http-proxy's
        API, and right after it through the config's route, on the same
        proxy (L{apiTarget}), for C{seconds} each.

        @return: the API route's C{rps} and C{proxy_cpu_us}, the config
            route's as C{config_rps} and C{config_proxy_cpu_us}, and the
            errors of both; L{None} when the target has no such proxy.
        """
        api = self.apiTarget(target)
        if api is None:
            return None
        viaAPI = self.wrk(api, API_PATH, seconds=seconds)
        viaConfig = self.wrk(api, SMALL_PATH, seconds=seconds)
        errors = dict(viaAPI.get("errors") or {})
        for kind, count in (viaConfig.get("errors") or {}).items():
            errors[kind] = errors.get(kind, 0) + count
        result = {"errors": errors}
        for prefix, source in (("", viaAPI), ("config_", viaConfig)):
            for field in ("rps", "proxy_cpu_us", "load_cpu_us"):
                if source.get(field) is not None:
                    result[prefix + field] = source[field]
        return result

    def problem(self, target, test, text):
        """
        Record and show something that went wrong.
        """
        entry = {"target": target.name, "test": test, "problem": text}
        self.problems.append(entry)
        print("  !! %s / %s: %s" % (target.name, test, text), flush=True)

    def measure(self, key, function, rounds=1):
        """
        Run C{function(target)} for every target, in table order (unless
        C{--only} leaves C{key} out).

        With C{rounds} above 1, the targets take turns C{rounds} times and
        each target's result combines its rounds (L{combineRounds}): a
        machine whose speed drifts then weighs on every target alike.
        """
        if self.options.only and key not in self.options.only:
            return
        print("%s:" % key, flush=True)
        self.results[key] = {}
        started = {target.name: 0.0 for target in self.targets}
        taken = {target.name: [] for target in self.targets}
        for _ in range(rounds):
            for target in self.targets:
                began = time.monotonic()
                taken[target.name].append(self._measureOnce(key, target, function))
                started[target.name] += time.monotonic() - began
        for target in self.targets:
            attempts = taken[target.name]
            busy = max(a[0] for a in attempts)
            foreign = max((a[1] for a in attempts), key=lambda f: f["cores_busy"])
            results = [a[2] for a in attempts]
            result = results[0] if rounds == 1 else combineRounds(results)
            if isinstance(result, dict):
                result["foreign_cpu"] = foreign
                result["attempts"] = sum(a[3] for a in attempts)
            self.results[key][target.name] = result
            noisy = busy > FOREIGN_LIMIT and result is not None
            print(
                "  %-12s %s  (%.1fs)%s"
                % (
                    target.name,
                    summary(key, result),
                    started[target.name],
                    "  [other processes used %.2f cores]" % busy if noisy else "",
                ),
                flush=True,
            )
            if noisy:
                self.noisy.append((key, target.name, busy))

    def _measureOnce(self, key, target, function):
        """
        Run C{function(target)} once, again when a backend died under it
        and (see L{mayRetry}) when other processes disturbed it.

        @return: C{(cores busy, foreign load, result, attempts)} of the
            least disturbed attempt that gave a result.
        """
        attempts = []
        redone = 0
        while True:
            self.waitQuiet()
            before = self.cpuSnapshot()
            result = function(target)
            foreign = self.foreignLoad(before, self.cpuSnapshot())
            restarted = self.checkBackends(key)
            self.checkAlive(target, key)
            if restarted and redone < RETRIES:
                # A backend died under this measurement: it does not count.
                redone += 1
                continue
            attempts.append((foreign["cores_busy"], foreign, result))
            if not (foreign["cores_busy"] > FOREIGN_LIMIT and self.mayRetry(key, attempts)):
                break
            print(
                "  %-12s %s: other processes used %.2f cores, again"
                % (target.name, summary(key, result), foreign["cores_busy"]),
                flush=True,
            )
        busy, foreign, result = min(attempts, key=lambda a: (a[2] is None, a[0]))
        return busy, foreign, result, len(attempts)

    def waitQuiet(self):
        """
        Before a measurement, wait (in half-second looks, within the run's
        waiting budget, C{QUIET_BUDGET}) until other processes leave the
        machine alone.
        """
        while self.quietLeft > 0:
            before = self.cpuSnapshot()
            time.sleep(0.5)
            self.quietLeft -= 0.5
            if self.foreignLoad(before, self.cpuSnapshot())["cores_busy"] <= FOREIGN_LIMIT:
                return

    def mayRetry(self, key, attempts):
        """
        Whether a measurement disturbed by other processes is taken again:
        in the full run only, at most C{RETRIES} more times, while the run's
        retry time budget lasts; never the idle-websocket row (it restarts
        the proxies).
        """
        if self.options.mode != "full" or key == "wsidle" or len(attempts) > RETRIES:
            return False
        return time.monotonic() < self.retryDeadline

    def cpuSnapshot(self):
        """
        @return: C{(wall, busy, steal, ours)}: the machine's busy and stolen
            CPU seconds so far (/proc/stat) and those of the benchmark's own
            processes (this driver, the clients it waited for, the servers).
        """
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
        busy = (user + nice + system + irq + softirq) / CLOCK_TICK
        own = resource.getrusage(resource.RUSAGE_SELF)
        waited = resource.getrusage(resource.RUSAGE_CHILDREN)
        servers = []
        for proc in self.procs.running():
            servers += [proc.pid] + children(proc.pid)
        ours = (
            own.ru_utime + own.ru_stime + waited.ru_utime + waited.ru_stime
            + cpuSeconds(servers)
        )
        return time.monotonic(), busy, steal / CLOCK_TICK, ours

    @staticmethod
    def foreignLoad(before, after):
        """
        @return: how busy other processes kept the machine between two
            L{cpuSnapshot}s, in cores (1.0: one whole core), and the CPU the
            hypervisor stole.
        """
        wall = max(after[0] - before[0], 1e-6)
        foreign = (after[1] - before[1]) - (after[3] - before[3])
        return {
            "cores_busy": round(max(foreign, 0) / wall, 3),
            "steal_cores": round((after[2] - before[2]) / wall, 3),
        }

    def checkAlive(self, target, test):
        """
        After each measurement: is the proxy still running and answering?
        A proxy that died is reported and started again for what follows.
        """
        if target.proc is not None and target.proc.poll() is not None:
            self.problem(
                target,
                test,
                "the proxy exited with status %s; log:\n%s"
                % (target.proc.returncode, tail(target.proc.logFile)),
            )
            target.restart()
            return
        try:
            sock = socket.create_connection(("127.0.0.1", target.httpPort), timeout=5)
            sock.settimeout(5)
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % SMALL_PATH.encode())
            answer = sock.recv(100)
            sock.close()
            if not answer.startswith(b"HTTP/1.1 200"):
                self.problem(target, test, "after the test, GET %s answered %r" % (SMALL_PATH, answer[:40]))
        except OSError as e:
            self.problem(target, test, "after the test, GET %s failed: %r (hung?)" % (SMALL_PATH, e))

    def runAll(self):
        """
        Every measurement, each on every target in turn.
        """
        self.retryDeadline = time.monotonic() + RETRY_BUDGET + self.expectedSeconds()
        self.quietLeft = QUIET_BUDGET[self.options.mode]
        mode = self.mode
        seconds, warmup = mode["seconds"], mode["warmup"]
        timed = ["--seconds", seconds, "--warmup", warmup]
        perRound = max(1, seconds // ROUNDS)
        self.measure("smallget", lambda t: self.wrk(t, SMALL_PATH, seconds=perRound), ROUNDS)
        self.measure("smallup", lambda t: self.upstreamPair(t, perRound), ROUNDS)
        self.measure("metrics", lambda t: self.metricsPair(t, perRound), ROUNDS)
        self.measure("apiroute", lambda t: self.apiRoutePair(t, perRound), ROUNDS)
        self.measure("post64k", lambda t: self.wrk(t, POST_PATH, "post64k.lua"))
        self.measure(
            "download",
            lambda t: self.client(
                "download", t, "--port", t.httpPort, "--path", BIG_PATH,
                "--size", BIG_SIZE, "--repeat", 3,
            ),
        )
        self.measure(
            "httplat",
            lambda t: self.client(
                "httplat", t, "--port", t.httpPort, "--path", SMALL_PATH,
                "--samples", mode["latencySamples"] // ROUNDS, "--warmup", 200,
            ),
            ROUNDS,
        )
        self.measure(
            "wsmsgs",
            lambda t: self.client(
                "wsmsgs", t, "--port", t.wsPort, "--path", WS_PATH,
                "--conns", WS_CONNS, "--size", WS_SMALL,
                "--seconds", perRound, "--warmup", warmup,
            ),
            ROUNDS,
        )
        self.measure(
            "wslat",
            lambda t: self.client(
                "wslat", t, "--port", t.wsPort, "--path", WS_PATH,
                "--samples", mode["latencySamples"] // ROUNDS, "--warmup", 200,
                "--size", WS_SMALL,
            ),
            ROUNDS,
        )
        self.measure(
            "wsbig",
            lambda t: self.client(
                "wsbig", t, "--port", t.wsPort, "--path", WS_PATH,
                "--conns", WS_BIG_CONNS, "--size", WS_BIG, *timed,
            ),
        )
        self.measure(
            "wshs",
            lambda t: self.client(
                "wshs", t, "--port", t.wsPort, "--path", WS_PATH,
                "--conns", HANDSHAKE_CONNS, *timed,
            ),
        )
        # Memory is measured on fresh proxies, so that what earlier tests
        # left in their heaps neither hides nor inflates the growth.
        count = self.idleCount()
        if not self.options.only or "wsidle" in self.options.only:
            for target in self.targets:
                target.restart()
        self.measure(
            "wsidle",
            lambda t: None
            if t.proc is None
            else self.client(
                "wsidle", t, "--port", t.wsPort, "--path", WS_PATH,
                "--count", count, "--settle", 2, "--timeout", 300, timeout=600,
            ),
        )
        self.idle = count
        self.addedLatency()
        self.checkErrors()

    def addedLatency(self):
        """
        Added latency: a target's p50 minus direct's, round by round (each
        round's pair measured minutes apart at most), the median of the
        rounds.
        """
        for key in ("httplat", "wslat"):
            if key not in self.results:
                continue
            direct = self.results[key].get("direct") or {}
            if direct.get("p50_us") is None:
                continue
            directRounds = direct.get("rounds") or [direct]
            for name, result in self.results[key].items():
                if not result or name == "direct":
                    continue
                added = [
                    mine["p50_us"] - theirs["p50_us"]
                    for mine, theirs in zip(result.get("rounds") or [result], directRounds)
                ]
                result["added_p50_us"] = statistics.median(added)

    def checkErrors(self):
        """
        Errors the clients counted, and errors in the proxies' logs.
        """
        for key, byTarget in self.results.items():
            for name, result in byTarget.items():
                if not isinstance(result, dict):
                    continue
                errors = result.get("errors")
                problems = result.get("problems")
                target = self.targetNamed(name)
                if isinstance(errors, dict) and any(v for k, v in errors.items() if k != "first_error" and k != "first_connect_error"):
                    self.problem(target, key, "errors: %s" % errors)
                elif isinstance(errors, int) and errors:
                    self.problem(target, key, "%d wrong answers" % errors)
                if problems:
                    self.problem(target, key, "; ".join(problems[:3]))
        for target in self.targets + list(self.twins.values()):
            if target.proc is None:
                continue
            bad = scanLog(target.proc.logFile, target.kind)
            if bad:
                self.problem(
                    target,
                    "log",
                    "errors in %s:\n      %s"
                    % (os.path.basename(target.proc.logFile), "\n      ".join(bad[:8])),
                )
        for name in ("nginx-error", "backend-error"):
            bad = scanLog(os.path.join(self.tmp, name + ".log"), "nginx")
            if bad:
                self.problem(self.targets[1], name, "%d lines, first: %s" % (len(bad), bad[0]))

    def targetNamed(self, name):
        for target in self.targets:
            if target.name == name:
                return target

    def stopAll(self):
        """
        Stop every process started, and remove the temporary files.
        """
        self.procs.stopAll()
        if not self.options.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print("temporary files kept in", self.tmp)


def pairResult(measured):
    """
    One result from two wrk runs of the same round: each's C{rps},
    C{proxy_cpu_us} and C{load_cpu_us} under its prefix, and their errors
    summed.

    @param measured: C{(prefix, wrk result)} pairs.
    """
    result = {"errors": {}}
    for prefix, source in measured:
        for kind, count in (source.get("errors") or {}).items():
            result["errors"][kind] = result["errors"].get(kind, 0) + count
        for field in ("rps", "proxy_cpu_us", "load_cpu_us"):
            if source.get(field) is not None:
                result[prefix + field] = source[field]
    return result


def countedRequests(adminPort):
    """
    @return: the requests a proxyws's C{GET /metrics} has counted
        (C{proxyws_requests_total}, every route and code), or L{None} when
        it does not answer.
    """
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % adminPort, timeout=10) as f:
            text = f.read().decode()
    except OSError:
        return None
    return int(sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("proxyws_requests_total{")
    ))


def parseWrk(text):
    """
    @return: requests per second, request count, and error counts from
        wrk's report.
    """
    result = {"errors": {}}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(line.split()[1])
        elif " requests in " in line:
            result["requests"] = int(line.split()[0])
        elif line.startswith("Non-2xx or 3xx responses:"):
            result["errors"]["non_2xx"] = int(line.split()[-1])
        elif line.startswith("Socket errors:"):
            for part in line.partition(":")[2].split(","):
                name, count = part.split()
                result["errors"][name] = int(count)
    return result


def scanLog(path, kind):
    """
    @return: the errors in a server's log, one line each: for nginx its
        error-level lines; for proxyws each logged traceback summed up as
        its innermost frame and exception, with how many times it occurred.
    """
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    if kind == "nginx":
        words = ("[error]", "[crit]", "[alert]", "[emerg]")
        return [line for line in lines if any(w in line for w in words)]
    counts = {}
    for event in _logEvents(lines):
        text = "\n".join(event)
        if not any(w in text for w in ("Traceback", "Unhandled", "CRITICAL", "#critical", "#error")):
            continue
        frames = [l.strip() for l in event if l.strip().startswith('File "')]
        ours = [f for f in frames if "/proxyws/" in f]
        where = (ours or frames or event)[-1]
        where = re.sub(r'File ".*/(proxyws|twisted|autobahn)/', r'File "\1/', where)
        what = re.sub(r" at 0x[0-9a-f]+", "", event[-1].strip())
        key = "%s -> %s" % (where, what)
        counts[key] = counts.get(key, 0) + 1
    return ["%d x %s" % (n, key) for key, n in sorted(counts.items(), key=lambda i: -i[1])]


def _logEvents(lines):
    """
    Split twistd log lines into events: an event starts with a timestamp.
    """
    event = []
    for line in lines:
        if line[:4].isdigit() and line[4:5] == "-" and event:
            yield event
            event = []
        if line.strip():
            event.append(line)
    if event:
        yield event


def summary(test, result):
    """
    @return: a short line for the progress output: the first table value
        of C{test}.
    """
    if not isinstance(result, dict):
        return "-"
    field = [key for key, *_ in ROWS if key.startswith(test + ".")][0].split(".")[1]
    return "%s=%s" % (field, formatNumber(result.get(field)))


def formatNumber(value):
    """
    @return: C{value} with as many digits as are worth reading.
    """
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return "{:,.0f}".format(value)
    if abs(value) >= 100:
        return "%.0f" % value
    if abs(value) >= 10:
        return "%.1f" % value
    return "%.2f" % value


def lookup(results, key, target):
    test, field = key.split(".")
    value = (results.get(test, {}).get(target) or {}).get(field)
    return value


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def buildRows(results, variants, idle):
    """
    The table as data: per row, the values, the ratios of each proxyws
    variant to nginx and to direct, and whether the target is met.
    """
    rows = []
    for key, label, unit, better, target in ROWS:
        if key == "wsidle.mib_per_1000":
            label = "idle ws RSS per 1000 (%s open)" % idle
        row = {"key": key, "label": label, "unit": unit, "better": better, "values": {}, "variants": {}}
        for name in ["direct", "nginx"] + variants:
            row["values"][name] = lookup(results, key, name)
        for name in variants:
            value = row["values"][name]
            toNginx = ratio(value, row["values"]["nginx"])
            entry = {
                "vs_nginx": toNginx,
                "vs_direct": ratio(value, row["values"]["direct"]),
            }
            if target is not None:
                op, limit = target
                entry["target"] = "%s %g x nginx" % (">=" if op == "ge" else "<=", limit)
                if toNginx is not None:
                    entry["met"] = toNginx >= limit if op == "ge" else toNginx <= limit
                elif value is not None and op == "le" and value <= 0:
                    entry["met"] = True
                else:
                    entry["met"] = None
            row["variants"][name] = entry
        rows.append(row)
    return rows


def formatTable(rows, variants):
    """
    @return: the table as text.
    """
    header = ["measurement", "unit", "direct", "nginx"]
    for name in variants:
        header += [name, "%s/nginx" % name, "%s/direct" % name, "target", "met"]
    lines = [header]
    for row in rows:
        line = [row["label"], row["unit"]]
        line += [formatNumber(row["values"][n]) for n in ("direct", "nginx")]
        for name in variants:
            entry = row["variants"][name]
            met = entry.get("met")
            line += [
                formatNumber(row["values"][name]),
                "-" if entry["vs_nginx"] is None else "%.2fx" % entry["vs_nginx"],
                "-" if entry["vs_direct"] is None else "%.2fx" % entry["vs_direct"],
                entry.get("target", ""),
                "" if "target" not in entry else ("?" if met is None else "met" if met else "NOT MET"),
            ]
        lines.append(line)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        cells = [
            str(cell).ljust(widths[i]) if i < 2 else str(cell).rjust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def environment(venv, source):
    """
    @return: what the numbers depend on: versions, commit, machine.
    """

    def command(argv):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (done.stdout + done.stderr).strip()
        except (OSError, subprocess.TimeoutExpired):
            return None

    try:
        import autobahn
        import twisted

        versions = {"twisted": twisted.__version__, "autobahn": autobahn.__version__}
        from autobahn.websocket import USES_NVX

        versions["autobahn_nvx"] = USES_NVX
    except ImportError:
        versions = {}
    model = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return dict(
        versions,
        python=sys.version.split()[0],
        nginx=command([nginxBinary(), "-v"]),
        wrk=(command(["wrk", "-v"]) or "").splitlines()[0:1],
        source=source,
        cpu=model,
        cpus=os.cpu_count(),
        kernel=os.uname().release,
        nofile_limit=resource.getrlimit(resource.RLIMIT_NOFILE),
    )


def sourceInfo(path):
    """
    @return: what bench/run recorded about the proxyws source it installed
        (commit, uncommitted changes, hash of the copied tree), taken when
        it copied the checkout: other commits may land during a run.
    """
    if not path:
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def parseVariant(text):
    """
    C{NAME:key=value,key=value} into C{(NAME, {key: value})}; values are
    read as TOML-ish literals (numbers and booleans, else strings).
    """
    name, _, settings = text.partition(":")
    extra = {}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        try:
            extra[key.strip()] = json.loads(value)
        except ValueError:
            extra[key.strip()] = value
    return name, extra


def parseOptions(argv):
    parser = argparse.ArgumentParser(description="proxyws benchmark driver (use bench/run)")
    parser.add_argument("--quick", dest="mode", action="store_const", const="quick", default="full")
    parser.add_argument("--venv", required=True, help="the venv holding proxyws (twistd)")
    parser.add_argument("--pid-file", help="keep the running process ids here")
    parser.add_argument("--source", help="JSON file describing the installed proxyws source")
    parser.add_argument("--idle", type=int, help="idle websockets to open (default: by mode)")
    parser.add_argument(
        "--only", type=lambda v: v.split(","), default=[],
        help="run only these measurements (comma-separated: %s)" % ",".join(TESTS),
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--output", help="the JSON file to write (default: by mode)")
    parser.add_argument(
        "--variant", action="append", type=parseVariant, default=[],
        help="another proxyws column: NAME:key=value,... ([server] keys)",
    )
    return parser.parse_args(argv)


def main(argv):
    options = parseOptions(argv)
    bench = Bench(options)

    def terminate(signum, frame):
        raise SystemExit("stopped by signal %d" % signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    started = time.time()
    try:
        print("mode %s, temporary files in %s" % (options.mode, bench.tmp), flush=True)
        bench.startAll()
        bench.runAll()
    except StartError as e:
        print("\nA server did not start, nothing was measured:\n%s" % e, file=sys.stderr)
        raise SystemExit(1)
    finally:
        bench.stopAll()
    variants = [t.name for t in bench.targets if t.kind == "proxyws"]
    rows = buildRows(bench.results, variants, bench.idle)
    table = formatTable(rows, variants)
    now = datetime.datetime.now()
    host = socket.gethostname()
    document = {
        "mode": options.mode,
        "date": now.isoformat(timespec="seconds"),
        "host": host,
        "duration_s": round(time.time() - started, 1),
        "environment": environment(options.venv, sourceInfo(options.source)),
        "setup": {
            "proxy_cpu": PROXY_CPU,
            "load_cpu": LOAD_CPU,
            "settings": bench.mode,
            "ws_small_bytes": WS_SMALL,
            "ws_big_bytes": WS_BIG,
            "ws_conns": WS_CONNS,
            "ws_big_conns": WS_BIG_CONNS,
            "handshake_loops": HANDSHAKE_CONNS,
            "wrk_connections": WRK_CONNS,
            "idle_websockets": bench.idle,
        },
        "rows": rows,
        "results": bench.results,
        "problems": bench.problems,
        "noisy_measurements": bench.noisy,
        "table": table,
    }
    output = options.output or os.path.join(
        HERE,
        "results",
        "quick-latest.json" if options.mode == "quick" else "%s-%s.json" % (now.strftime("%Y-%m-%d-%H%M"), host),
    )
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    print()
    print(table)
    print()
    if bench.problems:
        print("%d problems:" % len(bench.problems))
        for entry in bench.problems:
            print("  - %(target)s / %(test)s: %(problem)s" % entry)
    else:
        print("no problems seen")
    if bench.noisy:
        print(
            "WARNING: other processes loaded the machine during %d measurements "
            "(more than %.2f cores): %s.  Those numbers are suspect; rerun on an "
            "idle machine." % (
                len(bench.noisy),
                FOREIGN_LIMIT,
                ", ".join("%s/%s %.2f" % entry for entry in bench.noisy),
            )
        )
    print("results written to", os.path.relpath(output))
    print("took %.0fs" % (time.time() - started))


if __name__ == "__main__":
    main(sys.argv[1:])
