"""
proxyws: a reverse proxy for HTTP and websocket applications, on Twisted.

Run it with C{twistd -n proxyws --config FILE.toml}; see README.rst.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
