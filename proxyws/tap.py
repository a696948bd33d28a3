"""
The twistd surface: C{twistd -n proxyws --config FILE.toml}.

L{Options.postOptions} loads and validates the whole config (every check of
L{proxyws.config.loadAndCheck}, the same as C{proxyws check} runs) and binds
the listening sockets, so that a bad config or a port in use stops start-up
with one line per problem on standard error and exit status 1, before
anything runs.  L{makeService} only builds the service; it is the one place
where the global reactor is resolved.
"""

import signal
import sys

from twisted.python import usage

from .config import loadAndCheck, problemsOf
from .errors import ConfigError


def writeProblems(error, stream):
    """
    Write each problem of a config error on its own line,
    C{proxyws: file: key: message}.

    @param error: a L{ConfigError} (a L{proxyws.config.ConfigProblems}, or
        a single problem).
    @param stream: a text file, such as standard error.
    """
    for problem in problemsOf(error):
        stream.write("proxyws: {}\n".format(problem))
    stream.flush()


class Options(usage.Options):
    """
    Command-line options of the C{proxyws} twistd plugin.
    """

    synopsis = "--config FILE.toml"
    longdesc = (
        "Run proxyws, a reverse proxy for HTTP and websocket applications, "
        "on the TOML configuration FILE.toml (see README.rst)."
    )
    optParameters = [
        ["config", "c", None, "The TOML configuration file (required)."],
    ]

    def postOptions(self):
        """
        Load and validate the config, and bind its listening sockets.

        @raise usage.UsageError: when C{--config} is missing.
        @raise SystemExit: with status 1 after printing one line per
            problem, when the config does not load or a socket cannot be
            bound.  (A C{UsageError} would make twistd print its whole usage
            text before the lines that matter.)
        """
        if not self["config"]:
            raise usage.UsageError("--config FILE.toml is required")
        from .sockets import bindListeners, bindWorkers

        try:
            config = loadAndCheck(self["config"])
            if config.server.workers > 1:
                self["sockets"], self["workerSockets"] = bindWorkers(
                    config, config.server.workers
                )
            else:
                self["sockets"] = bindListeners(config)
        except ConfigError as e:
            writeProblems(e, sys.stderr)
            raise SystemExit(1)
        self["loaded"] = config


def makeService(options):
    """
    Build the proxyws service from parsed options.

    @param options: an L{Options} after C{parseOptions}.
    @return: an L{IService}.
    """
    from twisted.internet import reactor

    from twisted.application.service import MultiService

    from .logs import setLevel
    from .service import ProxyService, onSignal, stopOnSignals
    from .workers import WorkerSupervisor

    config = options["loaded"]
    setLevel(config.server.logLevel)
    stopOnSignals(reactor)
    if config.server.workers == 1:
        service = ProxyService(config, options["sockets"], reactor)
        onSignal(signal.SIGHUP, reactor, service.reload)
        return service
    parent = MultiService()
    supervisor = WorkerSupervisor(config, options["workerSockets"], reactor)
    supervisor.setServiceParent(parent)
    onSignal(signal.SIGHUP, reactor, supervisor.reload)
    if options["sockets"]:
        # The demo backend is served by the parent.
        ProxyService(config, options["sockets"], reactor).setServiceParent(parent)
    return parent
