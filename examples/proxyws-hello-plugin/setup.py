"""
A third-party proxyws plugin, packaged on its own: installing this package
next to proxyws makes the plugin C{hello} available to proxyws configs,
through the C{proxyws.plugins} entry point below.
"""

from setuptools import setup

setup(
    name="proxyws-hello-plugin",
    version="1.0.0",
    description="An example proxyws plugin: greets requests and responses",
    py_modules=["proxyws_hello"],
    python_requires=">=3.11",
    install_requires=["proxyws"],
    entry_points={
        "proxyws.plugins": ["hello = proxyws_hello:helloPlugin"],
    },
)
