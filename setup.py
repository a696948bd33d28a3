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
    packages=["proxyws", "twisted.plugins"],
    package_data={"twisted.plugins": ["proxyws_plugin.py"]},
    install_requires=[
        "twisted>=24.7",
        "autobahn>=24.4",
        "pyopenssl>=24.0",
        "service-identity>=24.1",
        "zope.interface>=6.0",
        "attrs>=23.1",
        "bcrypt>=4.0",
        "libpass>=1.9",
    ],
    extras_require={
        "test": ["pytest>=8", "websockets>=13", "hypothesis>=6.100,<7"],
    },
    entry_points={
        # The proxyws command (proxyws check, proxyws --version); the server
        # runs under twistd.
        "console_scripts": ["proxyws = proxyws.cli:main"],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Internet :: Proxy Servers",
        "Topic :: Internet :: WWW/HTTP",
    ],
)
