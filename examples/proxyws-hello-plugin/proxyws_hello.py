"""
The C{hello} plugin: an example of a proxyws plugin in a package of its own.

It adds C{X-Hello: GREETING} to each request the backend gets and to each
response the client gets, and answers requests for C{answer_path} itself::

    [[route]]
    path = "/"
    backend = "http://127.0.0.1:3838/"
    plugins = [{ name = "hello", greeting = "bonjour", answer_path = "/hello" }]
"""

from zope.interface import implementer

from proxyws.interfaces import IRequestFilter, IResponseFilter
from proxyws.plugins import PluginOptionError, Response


@implementer(IRequestFilter, IResponseFilter)
class Hello:
    """
    Greets requests and responses.
    """

    def __init__(self, greeting, answerPath=None):
        self.greeting = greeting
        self.answerPath = answerPath

    def filterRequest(self, request):
        """
        Answer C{answer_path}; greet every other request.
        """
        if self.answerPath is not None and request.target.partition(b"?")[0] == self.answerPath:
            return Response.text(200, self.greeting + "\n")
        request.headers.setRawHeaders(b"X-Hello", [self.greeting.encode("utf-8")])
        return None

    def filterResponse(self, request, response):
        """
        Greet the response.
        """
        response.headers.setRawHeaders(b"X-Hello", [self.greeting.encode("utf-8")])


def helloPlugin(options):
    """
    The factory the entry point names: options C{greeting} (default
    C{"hello"}) and C{answer_path}.
    """
    options.checkKeys("greeting", "answer_path")
    greeting = options.takeString("greeting", "hello")
    if not greeting.isprintable():
        raise PluginOptionError("greeting", "{!r} is not printable text".format(greeting))
    answerPath = options.takeString("answer_path", None)
    if answerPath is not None and not answerPath.startswith("/"):
        raise PluginOptionError("answer_path", "{!r} is not a path starting with '/'".format(answerPath))
    return Hello(greeting, answerPath.encode("utf-8") if answerPath else None)
