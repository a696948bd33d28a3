"""
Installation script for proxyws.

The twistd plugin lives in C{twisted/plugins/proxyws_plugin.py}.  That folder
is a namespace shared with Twisted itself, so it has no C{__init__.py}; it is
listed in C{packages} so that the plugin file is installed.  Twisted finds the
plugin by scanning that folder and rewrites its C{dropin.cache} on the first
C{twistd} run (README.rst shows how to refresh it by hand).
"""

from setuptools import setup


setup(
    name="proxyws",
    version="0.1.0",
    description="A reverse proxy for HTTP and websocket applications, on Twisted",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    packages=["proxyws", "proxyws.bundled", "twisted.plugins"],
    package_data={"twisted.plugins": ["proxyws_plugin.py"]},
    # Each dependency is bounded at its next major version (Twisted,
    # Autobahn, pyOpenSSL, service-identity and attrs number theirs by year):
    # proxyws uses private names of Twisted and Autobahn (proxyws/internals.py),
    # which a new major version may drop.  README.rst names the versions
    # tested.
    install_requires=[
        "twisted>=24.7,<27",
        "autobahn>=24.4,<27",
        "pyopenssl>=24.0,<27",
        "service-identity>=24.1,<27",
        "cryptography>=42,<51",
        "zope.interface>=6.0,<9",
        "attrs>=23.1,<27",
        "bcrypt>=4.0,<6",
        "libpass>=1.9,<2",
        "prometheus-client>=0.20,<1",
        "txredisapi>=1.4.10,<2",
        "PyJWT>=2.8,<3",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            # A test that hangs fails the run with every thread's stack
            # (pytest.ini's timeout) instead of holding it until CI gives up.
            "pytest-timeout>=2.3,<3",
            "websockets>=13,<18",
            "h11>=0.14,<1",
            "hypothesis>=6.100,<7",
            # tests/test_supervisord.py runs proxyws under a real supervisord.
            "supervisor>=4.2,<5",
        ],
    },
    entry_points={
        # The proxyws command (proxyws check, proxyws --version); the server
        # runs under twistd.
        "console_scripts": ["proxyws = proxyws.cli:main"],
        # proxyws's own plugins, found as every other plugin is: through the
        # "proxyws.plugins" entry points (proxyws/plugins.py).
        "proxyws.plugins": [
            "headers = proxyws.bundled.headers:headersPlugin",
            "cors = proxyws.bundled.cors:corsPlugin",
            "ws-limit = proxyws.bundled.wslimit:limitPlugin",
            "ws-audit = proxyws.bundled.wsaudit:auditPlugin",
            "jwt = proxyws.bundled.jwtauth:jwtPlugin",
            "htpasswd = proxyws.gate:htpasswdPlugin",
        ],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Internet :: Proxy Servers",
        "Topic :: Internet :: WWW/HTTP",
    ],
)
