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
"""

import os
import signal
import socket
import sys

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import ProcessProtocol

from .errors import ConfigError
from .logs import ProxyLogger
from .service import _bind, onSignal
from .timers import Deadline

# Seconds between a worker's death and its restart, so that a worker that
# cannot start does not spin.
RESTART_DELAY = 1.0

# Seconds a worker is given beyond the shutdown deadline before it is killed.
KILL_MARGIN = 5.0

_log = ProxyLogger()


def bindShared(config, keyPath, listener, copies):
    """
    Bind C{copies} listening sockets to one address with C{SO_REUSEPORT}.

    The address is first bound without it, so that a port used by another
    program is still reported.

    @return: a L{list} of sockets.
    @raise ConfigError: when the address cannot be bound.
    """
    probe = _bind(config, keyPath, listener)
    port = probe.getsockname()[1]
    probe.close()
    sockets = []
    try:
        for _ in range(copies):
            sockets.append(_bind(config, keyPath, listener, port=port, reusePort=True))
    except ConfigError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


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
        fds = [sock.fileno() for _, sock in self._sockets[index]]
        # The worker reads the config the parent checked on its standard
        # input, not the file, which may have changed since.
        childFDs = {0: "w", 1: 1, 2: 2}
        childFDs.update({3 + n: fd for n, fd in enumerate(fds)})
        arguments = [
            self._executable,
            "-m",
            "proxyws.workers",
            os.path.abspath(self._config.path),
            str(index),
        ]
        self._reactor.spawnProcess(
            worker, self._executable, arguments, env=os.environ, childFDs=childFDs
        )
        worker.transport.writeToChild(0, self._config.source.encode("utf-8"))
        worker.transport.closeChildFD(0)
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


def main(argv):
    """
    Run one worker: C{python -m proxyws.workers CONFIG INDEX}, with the
    text of the config its parent checked on standard input (CONFIG names
    it, for messages and relative paths) and its listening sockets as
    descriptors 3, 4, ... in the order of the config's listeners.
    """
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from .config import checkedConfig
    from .logs import setLevel
    from .service import ProxyService

    # argv[2], the worker's number, is there to tell workers apart in ps.
    path = argv[1]
    _dieWithParent()
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    config = checkedConfig(sys.stdin.buffer.read().decode("utf-8"), path)
    setLevel(config.server.logLevel)
    sockets = [
        (listener, socket.socket(fileno=3 + n))
        for n, listener in enumerate(config.listeners)
    ]
    service = ProxyService(config, sockets, reactor)
    reactor.callWhenRunning(service.startService)
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
    reactor.run(installSignalHandlers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
