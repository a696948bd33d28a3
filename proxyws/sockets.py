"""
Listening sockets, bound while the command line is parsed (before twistd
daemonizes or anything starts) and at a reload, so that a port already in
use is reported as a config problem with one clear line.
"""

import socket

from .errors import ConfigError


def bindListeners(config):
    """
    Bind and listen on every socket the config asks for.

    @param config: a L{proxyws.config.Config}.
    @return: a L{list} of C{(listener, socket)}, with the admin listener's
        (whose listener is the L{proxyws.values.AdminSettings}) and the demo
        backend's (the L{proxyws.config.DemoSettings}) last when the config
        has them.
    @raise ConfigError: when an address cannot be bound.
    """
    wanted = [("listen[{}]".format(i), l) for i, l in enumerate(config.listeners)]
    if config.admin is not None:
        wanted.append(("admin", config.admin))
    if config.demo is not None:
        wanted.append(("demo", config.demo))
    bound = []
    try:
        for keyPath, listener in wanted:
            bound.append((listener, _bind(config, keyPath, listener)))
    except ConfigError:
        for _, sock in bound:
            sock.close()
        raise
    return bound


def bindWorkers(config, count):
    """
    Bind the listeners once per worker, and the demo backend once.

    @return: C{(demo, perWorker)}: the demo's C{(settings, socket)} list
        (empty without a demo) and, for each worker, its list of
        C{(listener, socket)} in the order of the config's listeners.
    @raise ConfigError: when an address cannot be bound.
    """
    copies = []
    try:
        for index, listener in enumerate(config.listeners):
            copies.append(bindShared(config, "listen[{}]".format(index), listener, count))
        demo = []
        if config.demo is not None:
            demo.append((config.demo, _bind(config, "demo", config.demo)))
    except ConfigError:
        for sockets in copies:
            for sock in sockets:
                sock.close()
        raise
    perWorker = [
        [(listener, copies[n][worker]) for n, listener in enumerate(config.listeners)]
        for worker in range(count)
    ]
    return demo, perWorker


def _bind(config, keyPath, listener, port=None, reusePort=False):
    family = socket.AF_INET6 if ":" in listener.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reusePort:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # "::" means IPv6 only; list "0.0.0.0" too for IPv4.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((listener.address, listener.port if port is None else port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise ConfigError(
            config.path,
            keyPath,
            "cannot listen on {} port {}: {}".format(
                listener.address, listener.port, e.strerror or e
            ),
        ) from None
    return sock


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
