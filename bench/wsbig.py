"""
The "ws 1 MiB msgs relayed" row on its own, for comparing source trees.

Usage::

    bench/wsbig.py [--tree DIR ...] [--rounds N] [--seconds S]
                   [--size BYTES] [--conns N] [--profile DIR]

For each round, and in each round for each tree in turn (so that the trees
take turns while the machine's speed drifts), it starts proxyws from that
tree (C{PYTHONPATH=DIR}, one process on core 0, a config with one websocket
route), runs C{clients.py wsbig} against it on core 1 (C{--conns}
websockets echoing C{--size}-byte binary messages through the proxy to
C{wsecho.py}, also on core 1), and stops it.  It prints MiB/s and the
proxy's CPU milliseconds per MiB relayed, each round and the medians.

C{--profile DIR} runs each proxy under cProfile and writes
C{DIR/<tree>-<round>.prof} (the figures are then those of a profiled
proxy: compare profiles with profiles).

It needs the bench's load-client packages (C{bench/requirements.txt}) in
the Python that runs it, and proxyws's dependencies; C{bench/run} is the
whole table against nginx.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROXY_CPU, LOAD_CPU = "0", "1"


def freePort():
    """
    @return: a TCP port free on 127.0.0.1 just now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def waitForPort(port, proc, timeout=30):
    """
    Wait until something listens on C{port}, or fail if C{proc} exits.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("exited with status %s before listening" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listening on port %d" % port)


def start(argv, cpu, log, env=None):
    """
    Start C{argv} on core C{cpu} in a process group of its own.
    """
    with open(log, "ab") as out:
        return subprocess.Popen(
            ["taskset", "-c", cpu] + argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def stop(proc):
    """
    Stop a process started by L{start}: SIGTERM, then SIGKILL.
    """
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def cpuTimes(pid):
    """
    @return: C{(user, system)} CPU seconds of process C{pid} so far.
    """
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def config(tmp, name, port, wsPort, routeKeys=()):
    """
    @return: the path of a proxyws config relaying C{/ws/} to the echo
        backend.
    """
    path = os.path.join(tmp, name + ".toml")
    with open(path, "w") as f:
        f.write(
            "[server]\n"
            'access_log = "%s/%s-access.log"\n\n'
            "[[listen]]\n"
            'address = "127.0.0.1"\n'
            "port = %d\n\n"
            "[[route]]\n"
            'path = "/ws/"\n'
            'backend = "http://127.0.0.1:%d/ws/"\n' % (tmp, name, port, wsPort)
        )
        for key in routeKeys:
            f.write("%s\n" % key)
    return path


def serve(tree, configPath, profile):
    """
    Run proxyws from C{tree} on C{configPath} in this process, as twistd
    would (without its plugin lookup, which would find every tree's plugin).
    """
    sys.path.insert(0, tree)
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from proxyws.tap import Options, makeService

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    options = Options()
    options.parseOptions(["--config", configPath])
    service = makeService(options)
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.runcall(reactor.run)
        profiler.dump_stats(profile)
    else:
        reactor.run()


def measure(options, tmp, tree, label, wsPort, round, echo):
    """
    One measurement of one tree.

    @return: the client's results with the proxy's CPU ms per MiB added.
    """
    port = freePort()
    conf = config(tmp, label, port, wsPort, options.route_key)
    argv = [sys.executable, os.path.abspath(__file__), "serve", tree, conf]
    if options.wrap:
        name = os.path.join(options.wrap_dir or tmp, "%s-%d" % (label, round))
        argv = [part.replace("{out}", name) for part in options.wrap.split()] + argv
    if options.profile:
        argv.append(os.path.join(options.profile, "%s-%d.prof" % (label, round)))
    env = dict(os.environ, PYTHONPATH=tree)
    proxy = start(argv, PROXY_CPU, os.path.join(tmp, label + ".log"), env)
    try:
        waitForPort(port, proxy)
        proxyBefore, echoBefore = cpuTimes(proxy.pid), cpuTimes(echo.pid)
        childrenBefore = os.times()
        out = subprocess.run(
            ["taskset", "-c", LOAD_CPU, sys.executable, os.path.join(HERE, "clients.py"),
             "wsbig", "--port", str(port), "--path", "/ws/bench", "--pids", str(proxy.pid),
             "--conns", str(options.conns), "--size", str(options.size),
             "--seconds", str(options.seconds), "--warmup", str(options.warmup)],
            capture_output=True, text=True, timeout=options.seconds + options.warmup + 60,
        )
        proxyAfter, echoAfter = cpuTimes(proxy.pid), cpuTimes(echo.pid)
        childrenAfter = os.times()
    finally:
        stop(proxy)
    if out.returncode:
        raise RuntimeError("client failed: %s" % out.stderr[-2000:])
    result = json.loads(out.stdout)
    mib = result["mib_per_s"] * result["seconds"]
    result["cpu_ms_per_mib"] = result["proxy_cpu_s"] * 1e3 / mib if mib else None
    # Over the whole client run (warm-up included): the proxy's share of
    # user time, and the load side's CPU per MiB (estimated bytes).
    user, system = (a - b for a, b in zip(proxyAfter, proxyBefore))
    result["proxy_user_share"] = user / (user + system) if user + system else None
    load = sum(a - b for a, b in zip(echoAfter, echoBefore)) + sum(
        getattr(childrenAfter, n) - getattr(childrenBefore, n)
        for n in ("children_user", "children_system")
    )
    estimated = result["mib_per_s"] * (options.seconds + options.warmup)
    result["load_ms_per_mib"] = load * 1e3 / estimated if estimated else None
    return result


def main(argv):
    """
    Alternate the trees, print each round and the medians.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--size", type=int, default=2**20)
    parser.add_argument("--conns", type=int, default=2)
    parser.add_argument("--profile", default=None)
    parser.add_argument(
        "--route-key", action="append", default=[],
        help="a line added to the route's table, e.g. 'ws_buffer_size = 262144'",
    )
    parser.add_argument(
        "--wrap", default=None,
        help="a command to start the proxy under, {out} standing for a file name"
        " of the tree and round (e.g. 'strace -f -o {out}.strace')",
    )
    parser.add_argument("--wrap-dir", default=None, help="where {out} files go")
    options = parser.parse_args(argv)
    trees = [os.path.abspath(t) for t in options.tree] or [os.path.dirname(HERE)]
    labels = ["%d-%s" % (i, os.path.basename(t)) for i, t in enumerate(trees)]
    if options.profile:
        os.makedirs(options.profile, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="proxyws-wsbig.")
    wsPort = freePort()
    echo = start([sys.executable, os.path.join(HERE, "wsecho.py"), str(wsPort)], LOAD_CPU,
                 os.path.join(tmp, "wsecho.log"))
    figures = {label: [] for label in labels}
    try:
        waitForPort(wsPort, echo)
        for round in range(options.rounds):
            for tree, label in zip(trees, labels):
                result = measure(options, tmp, tree, label, wsPort, round, echo)
                figures[label].append(result)
                print("round %d %-12s %7.1f MiB/s %6.3f ms CPU/MiB (user %2.0f%%)"
                      " load %5.2f ms/MiB errors %s" % (
                    round, label, result["mib_per_s"], result["cpu_ms_per_mib"],
                    100 * result["proxy_user_share"], result["load_ms_per_mib"],
                    {k: v for k, v in result["errors"].items() if v}), flush=True)
    finally:
        stop(echo)
    for label in labels:
        rates = [r["mib_per_s"] for r in figures[label]]
        cpu = [r["cpu_ms_per_mib"] for r in figures[label]]
        load = [r["load_ms_per_mib"] for r in figures[label]]
        print("median %-12s %7.1f MiB/s %6.3f ms CPU/MiB load %5.2f ms/MiB  (MiB/s: %s)" % (
            label, statistics.median(rates), statistics.median(cpu), statistics.median(load),
            " ".join("%.0f" % r for r in rates)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    else:
        main(sys.argv[1:])
