"""
Several worker processes, one supervising parent.

With C{[server] workers = N} (N > 1) the process that twistd runs binds every
listening socket N times with C{SO_REUSEPORT}, so that the kernel spreads new
connections over N sockets, and starts N workers (C{python -m
proxyws.workers}), each serving its own copy of each socket.  The parent
stays in the foreground for supervisord, serves the demo backend if there is
one, restarts a worker that dies (and logs it), and on SIGTERM or SIGINT
stops accepting, passes the signal on and waits for every worker to finish
its graceful stop.

Workers append access-log lines to the same file, each line with one
C{write} on a descriptor opened with C{O_APPEND}, so lines never interleave.

A worker reads the config its parent checked from its standard input, as a
netstring, and stays reading: on SIGHUP the parent reads and checks the new
config once (certificates, htpasswd files and new listening addresses
included) and, if it is good, sends its text to every worker, which applies
it in place (L{proxyws.service.ProxyService.reload}).  A worker binds the
listeners a reload adds itself, with C{SO_REUSEPORT}; the descriptors of
the listeners its parent bound come with their addresses in
C{PROXYWS_LISTEN_FDS}.
"""

import os
import signal
import socket
import sys

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.protocols.basic import NetstringReceiver

from .admin import ReloadResult
from .changes import listenerChanges, listenerKey, routeChanges, summary
from .config import loadAndCheck, problemsOf
from .errors import ConfigError
from .logs import ProxyLogger
from .service import onSignal
from .sockets import _bind
from .timers import Deadline

# The environment variable naming each inherited listening descriptor:
# "ADDRESS PORT=FD" entries separated by commas.
LISTEN_FDS = "PROXYWS_LISTEN_FDS"

# Seconds between a worker's death and its restart, so that a worker that
# cannot start does not spin.
RESTART_DELAY = 1.0

# Seconds a worker is given beyond the shutdown deadline before it is killed.
KILL_MARGIN = 5.0

_log = ProxyLogger()


class _Worker(ProcessProtocol):
    """
    One worker process, as its parent sees it.
    """

    def __init__(self, supervisor, index):
        self._supervisor = supervisor
        self.index = index
        self.ended = Deferred()

    def processEnded(self, reason):
        """
        The worker exited: tell the supervisor.
        """
        self._supervisor.workerEnded(self, reason)
        self.ended.callback(None)


class WorkerSupervisor(Service):
    """
    Starts the workers, restarts those that die, and stops them all.

    @ivar workers: index -> the running L{_Worker}.
    """

    def __init__(self, config, sockets, reactor, executable=sys.executable):
        """
        @param config: the L{proxyws.config.Config}.
        @param sockets: for each worker, its list of C{(listener, socket)}
            in the order of C{config.listeners}.
        @param reactor: the reactor (processes and clock).
        """
        self._config = config
        self._sockets = sockets
        self._reactor = reactor
        self._executable = executable
        self.workers = {}
        self._stopping = False
        self._restarts = {}

    def startService(self):
        """
        Start every worker; pass SIGUSR1 (reopen the access log) on to them.
        """
        Service.startService(self)
        for index in range(len(self._sockets)):
            self._spawn(index)
        onSignal(signal.SIGUSR1, self._reactor, self._reopenLogs)

    def _reopenLogs(self):
        for worker in list(self.workers.values()):
            worker.transport.signalProcess(signal.SIGUSR1)

    def _spawn(self, index):
        self._restarts.pop(index, None)
        worker = _Worker(self, index)
        sockets = self._sockets[index]
        # The worker reads the config the parent checked on its standard
        # input, not the file, which may have changed since.
        childFDs = {0: "w", 1: 1, 2: 2}
        childFDs.update({3 + n: sock.fileno() for n, (_, sock) in enumerate(sockets)})
        env = dict(os.environ)
        env[LISTEN_FDS] = ",".join(
            "{} {}={}".format(listener.address, listener.port, 3 + n)
            for n, (listener, _) in enumerate(sockets)
        )
        arguments = [
            self._executable,
            "-m",
            "proxyws.workers",
            os.path.abspath(self._config.path),
            str(index),
        ]
        self._reactor.spawnProcess(
            worker, self._executable, arguments, env=env, childFDs=childFDs
        )
        worker.transport.writeToChild(0, netstring(self._config.source))
        self.workers[index] = worker
        _log.info("worker {index} started (pid {pid})", index=index, pid=worker.transport.pid)

    def workerEnded(self, worker, reason):
        """
        A worker exited: restart it unless the supervisor is stopping.
        """
        self.workers.pop(worker.index, None)
        if self._stopping:
            return
        status = reason.value.exitCode if hasattr(reason.value, "exitCode") else None
        _log.error(
            "worker {index} exited unexpectedly ({reason}); restarting it",
            index=worker.index,
            reason=reason.getErrorMessage() if status is None else "status {}".format(status),
        )
        restart = self._restarts[worker.index] = Deadline(self._reactor)
        restart.start(RESTART_DELAY, self._spawn, worker.index)

    def stopService(self):
        """
        Stop every worker gracefully (SIGTERM), killing those still running
        after the shutdown deadline.

        @return: a L{Deferred} that fires when all have exited.
        """
        Service.stopService(self)
        self._stopping = True
        for restart in self._restarts.values():
            restart.cancel()
        # The parent's copies of the sockets would keep accepting into their
        # queues after the workers stop: close them first.
        for sockets in self._sockets:
            for _, sock in sockets:
                sock.close()
        ended = [worker.ended for worker in self.workers.values()]
        for worker in list(self.workers.values()):
            worker.transport.signalProcess("TERM")
        kill = Deadline(self._reactor)
        kill.start(self._config.server.shutdownTimeout + KILL_MARGIN, self._kill)

        def done(_):
            kill.cancel()

        return gatherResults(ended).addCallback(done)

    def reload(self):
        """
        Read and check the config file once, and send it to every worker
        to apply (SIGHUP).

        @return: a L{Deferred} firing with a L{proxyws.admin.ReloadResult}.
        """
        old = self._config
        try:
            config = loadAndCheck(old.path)
            for index, listener in enumerate(config.listeners):
                if listenerKey(listener) not in {listenerKey(l) for l in old.listeners}:
                    _bind(config, "listen[{}]".format(index), listener).close()
        except ConfigError as e:
            problems = tuple(str(p) for p in problemsOf(e))
            for problem in problems:
                _log.error("reload: {problem}", problem=problem)
            _log.error("reload refused: the config in force is unchanged")
            return succeed(ReloadResult(False, problems=problems))
        changes = {
            "routes": routeChanges(old, config),
            "listeners": listenerChanges(old, config),
            "certificates": [],
        }
        self._config = config
        kept = {listenerKey(l) for l in config.listeners}
        for index, sockets in enumerate(self._sockets):
            self._sockets[index] = []
            for listener, sock in sockets:
                if listenerKey(listener) in kept:
                    self._sockets[index].append((listener, sock))
                else:
                    sock.close()
        for worker in list(self.workers.values()):
            worker.transport.writeToChild(0, netstring(config.source))
        _log.info("reload sent to the workers: {summary}", summary=summary(changes))
        return succeed(ReloadResult(True, changes))

    def _kill(self):
        for worker in list(self.workers.values()):
            _log.warn("worker {index} did not stop in time: killing it", index=worker.index)
            worker.transport.signalProcess("KILL")


def _dieWithParent():
    """
    Ask Linux to send this worker SIGTERM if its parent dies (even by
    SIGKILL), so that no worker outlives its supervisor.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        sys.exit(0)


def netstring(text):
    """
    @return: C{text} as a netstring, as the parent sends configs.
    """
    data = text.encode("utf-8")
    return b"%d:%s," % (len(data), data)


def _readNetstring(fd):
    """
    Read one netstring from C{fd}, blocking.

    @return: C{(its text, the bytes read after it)}.
    """
    data = b""
    while True:
        length, colon, rest = data.partition(b":")
        if colon and len(rest) > int(length):
            return rest[: int(length)].decode("utf-8"), rest[int(length) + 1 :]
        chunk = os.read(fd, 65536)
        if not chunk:
            raise SystemExit("proxyws worker: the parent sent no config")
        data += chunk


class _Control(NetstringReceiver):
    """
    The configs the parent sends after the first one: each is applied in
    place.
    """

    MAX_LENGTH = 64 * 1024 * 1024

    def __init__(self, service, path):
        self._service = service
        self._path = path

    def stringReceived(self, data):
        """
        A config the parent checked: apply it.
        """
        from .config import checkedConfig

        try:
            config = checkedConfig(data.decode("utf-8"), self._path)
        except ConfigError as e:
            _log.error("reload: {problem}", problem=e)
            return
        self._service.reload(config)

    def connectionLost(self, reason):
        """
        The parent is gone: stop (the kernel also says so with SIGTERM).
        """


def workerSockets(config, inherited):
    """
    The listening sockets of a worker: those its parent passed, by
    address, and those it binds itself (a listener a reload added).

    @param inherited: the value of L{LISTEN_FDS}.
    @return: a L{list} of C{(listener, socket)}.
    """
    fds = {}
    for entry in filter(None, (inherited or "").split(",")):
        key, _, fd = entry.rpartition("=")
        address, _, port = key.rpartition(" ")
        fds[(address, int(port))] = int(fd)
    sockets = []
    for index, listener in enumerate(config.listeners):
        fd = fds.pop(listenerKey(listener), None)
        if fd is not None:
            sockets.append((listener, socket.socket(fileno=fd)))
        else:
            sockets.append((listener, _bind(config, "listen[{}]".format(index), listener, reusePort=True)))
    for fd in fds.values():
        os.close(fd)
    return sockets


def main(argv):
    """
    Run one worker: C{python -m proxyws.workers CONFIG INDEX}, with the
    config its parent checked as a netstring on standard input (CONFIG
    names it, for messages and relative paths; more follow on reloads) and
    its listening sockets as the descriptors L{LISTEN_FDS} names.
    """
    from twisted.internet import reactor, stdio
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from .config import checkedConfig
    from .logs import setLevel
    from .service import ProxyService

    # argv[2], the worker's number, is there to tell workers apart in ps.
    path = argv[1]
    _dieWithParent()
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    text, rest = _readNetstring(0)
    config = checkedConfig(text, path)
    setLevel(config.server.logLevel)
    service = ProxyService(config, workerSockets(config, os.environ.get(LISTEN_FDS)), reactor)
    service.reusePort = True
    control = _Control(service, path)
    # Reloads come on standard input; standard output stays the log's.
    stdio.StandardIO(control, stdin=0, stdout=os.open(os.devnull, os.O_WRONLY))

    def start():
        service.startService()
        # A reload sent before the worker read its first config applies
        # once it serves that one.
        if rest:
            control.dataReceived(rest)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    # SIGTERM or SIGINT start one graceful stop, however often they come (a
    # worker gets its parent's and, from a terminal or supervisor killing
    # the group, its own).
    stopping = []

    def stop(signum, frame):
        if not stopping:
            stopping.append(signum)
            reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Reloads come from the parent; a hangup of the terminal or of the
    # process group must not stop a worker.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    reactor.run(installSignalHandlers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
