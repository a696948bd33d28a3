"""
The C{proxyws} command (a console script; C{twistd proxyws} runs the
server):

    proxyws check --config FILE.toml    every problem of FILE; exit 0 or 1
    proxyws --version                   "proxyws X.Y.Z"

C{proxyws check} runs every check that start-up runs except binding the
listening sockets (a running server holds them), as C{nginx -t} does: it
prints each problem on its own line on standard error and exits 1, or prints
C{proxyws: FILE: configuration OK} and exits 0.  A usage error (a bad
command or option, or C{--help}) prints the usage and exits 2.
"""

import sys

from twisted.python import usage

from . import __version__
from .errors import ConfigError

# Exit statuses: as nginx -t (0 good, 1 bad config) and as usage errors of
# most commands (2).
OK, BAD_CONFIG, USAGE = 0, 1, 2


class _Exit(Exception):
    """
    Stop here: C{text} goes to C{stream} (C{"stdout"} or C{"stderr"}) and
    the command exits with C{status}.
    """

    def __init__(self, status, text, stream="stdout"):
        super().__init__(status, text, stream)
        self.status, self.text, self.stream = status, text, stream


class _CommandOptions(usage.Options):
    """
    What every level of the command takes: C{--help} (usage, exit 2) and
    C{--version}.
    """

    def opt_help(self):
        """
        Print this help and exit 2.
        """
        raise _Exit(USAGE, str(self))

    def opt_version(self):
        """
        Print the version of proxyws and exit.
        """
        raise _Exit(OK, "proxyws {}\n".format(__version__))


class CheckOptions(_CommandOptions):
    """
    Options of C{proxyws check}.
    """

    longdesc = (
        "Check FILE.toml as start-up does, without binding its ports: print "
        "every problem, one per line, and exit 1; or say it is OK and exit 0."
    )
    optParameters = [
        ["config", "c", None, "The TOML configuration file to check (required)."],
    ]

    def getSynopsis(self):
        """
        @return: the first line of the usage text.
        """
        return "Usage: proxyws check --config FILE.toml"

    def postOptions(self):
        """
        @raise usage.UsageError: when C{--config} is missing.
        """
        if not self["config"]:
            raise usage.UsageError("--config FILE.toml is required")


class Options(_CommandOptions):
    """
    Options of the C{proxyws} command.
    """

    synopsis = "Usage: proxyws [--version] COMMAND"
    longdesc = (
        "Tools for proxyws, a reverse proxy for HTTP and websocket "
        "applications; the server itself runs as: twistd -n proxyws --config FILE.toml"
    )
    subCommands = [
        ["check", None, CheckOptions, "Check a configuration file as start-up does."],
    ]

    def postOptions(self):
        """
        @raise usage.UsageError: when no command is given.
        """
        if self.subCommand is None:
            raise usage.UsageError("a command is required")


def check(path, stdout, stderr):
    """
    Check a configuration file, as C{proxyws check} does.

    @param path: the file.
    @param stdout: where the line saying it is OK goes.
    @param stderr: where the problems go, one per line.
    @return: the exit status: 0 when it is good, 1 when it is not.
    """
    from .config import loadAndCheck
    from .tap import writeProblems

    try:
        loadAndCheck(path)
    except ConfigError as e:
        writeProblems(e, stderr)
        return BAD_CONFIG
    stdout.write("proxyws: {}: configuration OK\n".format(path))
    stdout.flush()
    return OK


def main(argv=None, stdout=None, stderr=None):
    """
    Run the C{proxyws} command.

    @param argv: the arguments after the command name; C{sys.argv[1:]} by
        default.
    @param stdout: standard output (a text file), by default C{sys.stdout}.
    @param stderr: standard error, by default C{sys.stderr}.
    @return: the exit status (the console script exits with it).
    """
    argv = sys.argv[1:] if argv is None else argv
    streams = {"stdout": stdout or sys.stdout, "stderr": stderr or sys.stderr}
    options = Options()
    try:
        options.parseOptions(argv)
    except _Exit as e:
        streams[e.stream].write(e.text)
        return e.status
    except usage.UsageError as e:
        command = options.subOptions if options.subCommand else options
        streams["stderr"].write("{}\nproxyws: {}\n".format(command or options, e))
        return USAGE
    return check(options.subOptions["config"], streams["stdout"], streams["stderr"])


if __name__ == "__main__":
    sys.exit(main())
