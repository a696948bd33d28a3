"""
The virtualenv the JupyterHub end-to-end test runs JupyterHub from: the
hub, its single-user server and a kernel, installed with pip apart from the
test venv, so that JupyterHub's pins never change proxyws's own
dependencies.

The venv is made once and reused while it holds these requirements
(L{REQUIREMENTS}, written in the venv as L{MARKER}); with other
requirements it is made again.  Its place is C{$PROXYWS_JUPYTERHUB_VENV}, or
a folder of the user's cache (L{defaultPath}).  C{.ci/run} makes it before
the tests run, so that the time the install takes shows by itself::

    python -m tests.jupyterhubenv PATH
"""

import fcntl
import os
import shutil
import subprocess
import sys
import time

# What the test needs, and the versions it was run with (README.rst names
# them): JupyterHub, the Jupyter server its jupyterhub-singleuser runs, and
# the Python kernel.  configurable-http-proxy (a Node package) is not
# needed: proxyws takes its place.
REQUIREMENTS = (
    "jupyterhub==6.1.1",
    "jupyter_server==2.21.1",
    "ipykernel==7.4.0",
)

# The file in the venv naming what was installed in it, written last: a venv
# without it (an install that stopped half-way) is made again.
MARKER = "proxyws-requirements.txt"

# Seconds the install may take before it counts as failed (about 35 s
# without a pip cache on the two-core machine).
INSTALL_TIMEOUT = 900

# The venv's programs the test runs.
PROGRAMS = ("jupyterhub", "jupyterhub-singleuser")


def defaultPath():
    """
    @return: C{$PROXYWS_JUPYTERHUB_VENV}, or C{proxyws/jupyterhub-venv} in
        C{$XDG_CACHE_HOME} (C{~/.cache} by default).
    """
    chosen = os.environ.get("PROXYWS_JUPYTERHUB_VENV")
    if chosen:
        return chosen
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "proxyws", "jupyterhub-venv")


def _wanted():
    return "".join(line + "\n" for line in REQUIREMENTS)


def isReady(path):
    """
    @return: whether the venv at C{path} holds L{REQUIREMENTS}.
    """
    try:
        with open(os.path.join(path, MARKER)) as f:
            written = f.read()
    except OSError:
        return False
    return written == _wanted() and all(
        os.access(os.path.join(path, "bin", name), os.X_OK) for name in PROGRAMS)


def ensureVenv(path=None):
    """
    Make the venv unless it is there with L{REQUIREMENTS}.

    @param path: where; L{defaultPath} by default.
    @return: C{(path, seconds the install took or None when reused)}.
    @raise RuntimeError: when venv or pip fails, with their output.
    """
    path = os.path.abspath(path or defaultPath())
    if isReady(path):
        return path, None
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Test runs of several checkouts may share the venv: one makes it
    # while the others wait, then find it made.
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if isReady(path):
            return path, None
        return path, _make(path)


def _make(path):
    """
    Make the venv at C{path} afresh.

    @return: the seconds it took.
    """
    started = time.monotonic()
    shutil.rmtree(path, ignore_errors=True)
    python = getattr(sys, "_base_executable", None) or sys.executable
    for command in ([python, "-m", "venv", path],
                    [os.path.join(path, "bin", "pip"), "install", "-q", *REQUIREMENTS]):
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=INSTALL_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError("{} failed with status {}:\n{}{}".format(
                " ".join(command), done.returncode, done.stdout, done.stderr))
    with open(os.path.join(path, MARKER), "w") as f:
        f.write(_wanted())
    return time.monotonic() - started


def main(arguments):
    """
    Make the venv at the path given (or the default one), saying how long
    it took.
    """
    path, seconds = ensureVenv(arguments[0] if arguments else None)
    if seconds is None:
        print("JupyterHub venv {} already holds {}".format(path, ", ".join(REQUIREMENTS)))
    else:
        print("JupyterHub venv {} made in {:.0f} s: {}".format(
            path, seconds, ", ".join(REQUIREMENTS)))


if __name__ == "__main__":
    main(sys.argv[1:])
