"""
Plugins for the tests: providers that record, rewrite, raise, wait, or never
answer, and the factories that make them from options, as entry points
would.  L{withPlugins} makes them installed for one test.
"""

import time

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer, implementer_only

from proxyws import plugins
from proxyws.interfaces import (
    IAuthenticator,
    IBackendSelector,
    IRequestFilter,
    IResponseFilter,
    IWebSocketFilter,
)
from proxyws.plugins import DROP, Close, Identity, Response


@implementer(IRequestFilter, IResponseFilter)
class Tagger:
    """
    Adds its tag to the C{X-Tags} request and response headers, so that a
    test sees the order filters run in; with C{target}, sends the request to
    that target; with C{answer}, answers it with that status.
    """

    def __init__(self, tag, target=None, answer=None):
        self.tag = tag
        self.target = target
        self.answer = answer
        self.requests = []

    def filterRequest(self, request):
        """
        Tag the request, and redirect or answer it as told.
        """
        self.requests.append(request)
        request.headers.addRawHeader(b"X-Tags", self.tag.encode("ascii"))
        if self.target is not None:
            request.target = self.target.encode("ascii")
        if self.answer is not None:
            return Response.json(self.answer, {"tag": self.tag})
        return None

    def filterResponse(self, request, response):
        """
        Tag the response.
        """
        response.headers.addRawHeader(b"X-Tags", self.tag.encode("ascii"))


@implementer(IRequestFilter, IResponseFilter, IWebSocketFilter, IAuthenticator)
class Failing:
    """
    Raises from every method (or, with C{returns}, returns that instead).
    """

    def __init__(self, returns=None):
        self.returns = returns

    def _fail(self, *args):
        if self.returns is not None:
            return self.returns
        raise RuntimeError("the plugin broke")

    filterRequest = filterResponse = authenticate = _fail

    def opened(self, connection):
        """
        Fail at the opening only when asked to.
        """
        return None

    def message(self, connection, message):
        """
        Fail on each message.
        """
        return self._fail()

    def closed(self, connection, code, reason):
        """
        Fail at the close too.
        """
        return self._fail()


@implementer(IRequestFilter, IWebSocketFilter)
class Waiting:
    """
    Answers each call with a L{Deferred} the test fires (C{pending}), or
    one that never fires with C{never}.
    """

    def __init__(self):
        self.pending = []
        self.cancelled = 0

    def _wait(self):
        deferred = Deferred(lambda d: self._cancelled())
        self.pending.append(deferred)
        return deferred

    def _cancelled(self):
        self.cancelled += 1

    def filterRequest(self, request):
        """
        Wait.
        """
        return self._wait()

    def opened(self, connection):
        """
        Do not wait at the opening.
        """

    def message(self, connection, message):
        """
        Wait.
        """
        return self._wait()

    def closed(self, connection, code, reason):
        """
        Nothing to do.
        """


@implementer_only(IWebSocketFilter)
class WaitingMessages(Waiting):
    """
    A L{Waiting} for websocket messages only.
    """


@implementer(IRequestFilter, IWebSocketFilter)
class Slow:
    """
    Holds the event loop for C{seconds} on each call.
    """

    def __init__(self, seconds):
        self.seconds = seconds

    def filterRequest(self, request):
        """
        Sleep.
        """
        time.sleep(self.seconds)

    def opened(self, connection):
        """
        Sleep.
        """
        time.sleep(self.seconds)

    def message(self, connection, message):
        """
        Sleep.
        """
        time.sleep(self.seconds)

    def closed(self, connection, code, reason):
        """
        Nothing to do.
        """


@implementer(IWebSocketFilter)
class Rewriter:
    """
    Records every call; upper-cases text messages, drops the message
    C{"drop"}, closes on C{"close"}, answers C{"later"} through a fired
    L{Deferred}, and passes binary ones and those starting with C{"keep"}.
    """

    def __init__(self, direction=None):
        self.direction = direction
        self.calls = []

    def opened(self, connection):
        """
        Record the opening.
        """
        self.calls.append(("opened", connection.subprotocol))

    def message(self, connection, message):
        """
        Rewrite C{message} (see the class docstring).
        """
        self.calls.append(("message", message.direction, message.binary, message.payload))
        if self.direction is not None and message.direction != self.direction:
            return None
        if message.binary:
            return None
        if message.payload == b"drop":
            return DROP
        if message.payload == b"close":
            return Close(4001, "closed by the filter")
        if message.payload == b"later":
            return succeed(message.replace("LATER"))
        if message.payload.startswith(b"keep"):
            return None
        return message.replace(message.text.upper())

    def closed(self, connection, code, reason):
        """
        Record the close.
        """
        self.calls.append(("closed", code, reason))


@implementer(IWebSocketFilter)
class Passing:
    """
    Passes every message; records them.
    """

    def __init__(self):
        self.messages = []

    def opened(self, connection):
        """
        Nothing to do.
        """

    def message(self, connection, message):
        """
        Pass C{message}.
        """
        self.messages.append(message)

    def closed(self, connection, code, reason):
        """
        Nothing to do.
        """


@implementer(IAuthenticator)
class TokenAuthenticator:
    """
    Lets requests with C{X-Token: good} in as C{alice}.
    """

    def authenticate(self, request):
        """
        Check C{X-Token}.
        """
        if request.headers.getRawHeaders(b"X-Token") == [b"good"]:
            return Identity("alice", {"role": "admin"})
        return Response.error(401, "Unauthorized", "no good token")


@implementer(IBackendSelector)
class LastMember:
    """
    A balancing policy: always the last candidate.
    """

    def select(self, candidates, request):
        """
        See L{IBackendSelector.select}.
        """
        return candidates[-1]


def factoryOf(provider):
    """
    A plugin factory that records its options and returns C{provider}.
    """

    def factory(options):
        factory.options.append(options)
        return provider

    factory.options = []
    return factory


def withPlugins(testCase, **factories):
    """
    Make plugins installed for C{testCase}: the shipped ones and
    C{factories} (names with C{_} written C{-}).

    @return: the registry, name -> factory or entry point.
    """
    registry = dict(plugins.installedPlugins())
    registry.update({name.replace("_", "-"): f for name, f in factories.items()})
    testCase.patch(plugins, "installedPlugins", lambda: dict(registry))
    return registry
