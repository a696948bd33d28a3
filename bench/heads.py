#!/usr/bin/env python3
"""
CPU per request head: proxyws's strict parser beside the parsers it
replaces, on the same bytes, without sockets.

The head is a typical browser GET with 8 header fields.  Each row is the
best of several rounds, in microseconds per head:

  - C{framing}: L{proxyws.framing.HeadReader} finds the head in one read
    and L{proxyws.framing.parseRequestHead} reads it into a frozen value
    (what the front end will call);
  - C{parse only}: L{proxyws.framing.parseRequestHead} alone;
  - C{site.py fast path}: the regular expression and field split of
    C{ProxyChannel._plainRequest} (C{_PLAIN_HEAD}), the parsing part of
    today's fast path, without making a request;
  - C{Twisted HTTPChannel}: Twisted's line parser reading the head into a
    request, the cost of a fresh channel taken off.

Run it with a Python that has proxyws's dependencies::

    python3 bench/heads.py [--rounds 7]
"""

import argparse
import os
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.web import http  # noqa: E402

from proxyws import site  # noqa: E402
from proxyws.framing import HeadReader, parseRequestHead  # noqa: E402

HEAD = (
    b"GET /app/page?id=42 HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: session=abc123; theme=dark\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"\r\n"
)


def framing(reader=HeadReader()):
    head, rest = reader.feed(HEAD)
    return parseRequestHead(head)


def parseOnly(head=HEAD[:-4]):
    return parseRequestHead(head)


def sitePath(head=HEAD[:-4]):
    # ProxyChannel._plainRequest up to the headers it adds.
    match = site._PLAIN_HEAD.fullmatch(head)
    method, target, version, fields = match.groups()
    lines = fields.split(b"\r\n")
    lowered = fields.lower()
    if site._BODY_HEADERS[0] in lowered or site._BODY_HEADERS[1] in lowered:
        raise AssertionError("no body expected")
    out = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        out.append((name, value.strip(b" \t")))
    return out


class _Quiet(http.Request):
    def process(self):
        pass


def _channel():
    channel = http.HTTPChannel()
    channel.requestFactory = _Quiet
    channel.makeConnection(StringTransport())
    return channel


def twisted():
    _channel().dataReceived(HEAD)


def best(function, rounds, number=20000):
    """
    @return: the best of C{rounds} timings of C{function}, in µs per call.
    """
    return min(timeit.repeat(function, number=number, repeat=rounds)) / number * 1e6


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args(argv)
    channelCost = best(_channel, options.rounds)
    rows = [
        ("framing (HeadReader + parseRequestHead)", best(framing, options.rounds)),
        ("parse only (parseRequestHead)", best(parseOnly, options.rounds)),
        ("site.py fast path (_PLAIN_HEAD)", best(sitePath, options.rounds)),
        ("Twisted HTTPChannel", best(twisted, options.rounds) - channelCost),
    ]
    print("µs per head, %d-field GET of %d bytes, best of %d rounds" % (HEAD.count(b"\r\n") - 2, len(HEAD), options.rounds))
    for name, micros in rows:
        print("  %-42s %6.2f" % (name, micros))


if __name__ == "__main__":
    main(sys.argv[1:])
