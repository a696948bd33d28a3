"""
The C{headers} plugin: set, add and remove header fields of requests (before
the backend gets them) and of responses (before the client gets them), as
Apache's C{RequestHeader}/C{Header} and nginx's C{proxy_set_header}/
C{add_header} do::

    plugins = [{ name = "headers",
                 set = { "X-Frame-Options" = "DENY" },
                 remove = ["Server"],
                 request_set = { "X-Proxy" = "proxyws" } }]

C{set} replaces every field of the name, C{add} adds one more, C{remove}
removes them; removals first, then sets, then additions.  The C{request_}
forms work on the request the backend gets (the proxy's own rules apply
after them: hop-by-hop fields are dropped, C{Host} and C{X-Forwarded-*}
are the proxy's).
"""

import re

import attr
from zope.interface import implementer

from ..errors import PluginOptionError
from ..interfaces import IRequestFilter, IResponseFilter

# Options: (key, what it holds).  Each has a request_ twin.
_KINDS = ("set", "add", "remove")

# A field name and a value that cannot split a head.
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[\x20-\x7e\x80-\U0010ffff\t]*")


@attr.s(frozen=True, slots=True)
class HeaderRules:
    """
    What to do to one side's header fields.

    @ivar remove: names (L{bytes}) to remove.
    @ivar set: C{(name, values)} to set.
    @ivar add: C{(name, values)} to add.
    """

    remove = attr.ib(default=())
    set = attr.ib(default=())
    add = attr.ib(default=())

    def __bool__(self):
        return bool(self.remove or self.set or self.add)

    def apply(self, headers):
        """
        Apply the rules to C{headers}, a Twisted L{Headers} or a
        L{proxyws.plugins.PluginResponse}.
        """
        for name in self.remove:
            headers.removeHeader(name)
        for name, values in self.set:
            headers.setRawHeaders(name, list(values))
        for name, values in self.add:
            for value in values:
                headers.addRawHeader(name, value)


@implementer(IRequestFilter)
class RequestHeaders:
    """
    Changes the fields of each request before the backend gets them.
    """

    def __init__(self, request, response=HeaderRules()):
        """
        @param request: the L{HeaderRules} of requests.
        @param response: the L{HeaderRules} of responses.
        """
        self.request = request
        self.response = response

    def filterRequest(self, request):
        """
        See L{IRequestFilter.filterRequest}.
        """
        self.request.apply(request.headers)


@implementer(IResponseFilter)
class ResponseHeaders:
    """
    Changes the fields of each response before the client gets them.
    """

    def __init__(self, request=HeaderRules(), response=HeaderRules()):
        """
        @param request: the L{HeaderRules} of requests.
        @param response: the L{HeaderRules} of responses.
        """
        self.request = request
        self.response = response

    def filterResponse(self, request, response):
        """
        See L{IResponseFilter.filterResponse}.
        """
        self.response.apply(response.headers)


@implementer(IRequestFilter, IResponseFilter)
class Headers(RequestHeaders, ResponseHeaders):
    """
    Changes the fields of requests and of responses.
    """


def _values(key, value):
    """
    The values of one field of a C{set} or C{add} table.
    """
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(
        isinstance(v, str) and _VALUE.fullmatch(v) for v in values
    ):
        raise PluginOptionError(
            key, "{!r} is not a header value (text without control characters) "
            "or a list of them".format(value)
        )
    return tuple(v.encode("utf-8") for v in values)


def _name(key, name):
    if not _NAME.fullmatch(name):
        raise PluginOptionError(key, "{!r} is not a header field name".format(name))
    return name.encode("ascii")


def _rules(options, prefix):
    """
    The L{HeaderRules} of the C{prefix}-ed options.
    """
    tables = {}
    for kind in ("set", "add"):
        key = prefix + kind
        table = options.takeTable(key, {})
        tables[kind] = tuple(
            (_name("{}.{}".format(key, name), name), _values("{}.{}".format(key, name), value))
            for name, value in table.items()
        )
    key = prefix + "remove"
    remove = tuple(
        _name("{}[{}]".format(key, n), name)
        for n, name in enumerate(options.takeStrings(key, ()))
    )
    return HeaderRules(remove=remove, set=tables["set"], add=tables["add"])


def headersPlugin(options):
    """
    The C{headers} plugin's factory.

    @param options: a L{proxyws.plugins.PluginOptions} with any of C{set},
        C{add}, C{remove}, C{request_set}, C{request_add} and
        C{request_remove}.
    @return: a L{RequestHeaders}, L{ResponseHeaders} or L{Headers}, as the
        options need.
    @raise PluginOptionError: for anything else.
    """
    options.checkKeys(*_KINDS, *("request_" + kind for kind in _KINDS))
    request, response = _rules(options, "request_"), _rules(options, "")
    if not request and not response:
        raise PluginOptionError(None, "give at least one of set, add, remove, request_set, "
                                "request_add, request_remove")
    if request and response:
        return Headers(request, response)
    if request:
        return RequestHeaders(request)
    return ResponseHeaders(response=response)
