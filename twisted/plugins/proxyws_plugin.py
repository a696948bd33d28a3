"""
The C{proxyws} twistd plugin: C{twistd -n proxyws --config FILE.toml}.

This module must not import the reactor, directly or through what it imports,
so that C{twistd -r epoll proxyws ...} can choose one.
"""

from twisted.application.service import ServiceMaker

proxyws = ServiceMaker(
    "proxyws",
    "proxyws.tap",
    "A reverse proxy for HTTP and websocket applications",
    "proxyws",
)
