"""
A small demo backend, served in-process so that a fresh install shows a page
I{through} the proxy, and used as a real backend in loopback tests.

Every URL the page uses is relative, so the tree also works mounted under a
route prefix.  Endpoints::

    /                 HTML page: the request as received, SSE clock, ws echo
    /events           text/event-stream clock (?count=N, ?interval=S)
    /headers          JSON {"method", "uri", "headers": [[name, value], ...]}
    /ws               websocket echo; text "close:<code>:<reason>" closes
    /status/<code>    that status, short plain-text body
    /stream           chunked body (?chunks=N, ?size=S, ?delay=D)
    /echo             POST/PUT body echoed back
    /redirect         302 to http://<Host received><?target=, default />
"""

import json
from datetime import datetime, timezone
from html import escape
from string import Template

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.protocols.basic import FileSender
from twisted.web.http import RESPONSES, HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from .errors import BadArgument
from .logs import ProxyLogger

__all__ = ["demoResource", "demoSite"]

_log = ProxyLogger()

# Close codes "close:<code>:<reason>" may put on the wire: exactly those an
# Autobahn peer (and so proxyws) accepts.  1005, 1006 and 1015 only describe
# a close and never appear in a frame.
SENDABLE_CLOSE_CODES = frozenset(WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED) | frozenset(
    range(3000, 5000)
)

# Query arguments: name -> (type, default, lowest, highest).  The first row
# is how many pieces of body to write (None: forever), the last the seconds
# between them; the bounds keep a stray request from tying the demo up.
EVENT_ARGUMENTS = {"count": (int, None, 1, 10**6), "interval": (float, 1.0, 0.001, 3600.0)}
STREAM_ARGUMENTS = {
    "chunks": (int, 5, 0, 10**4),
    "size": (int, 1024, 1, 1 << 20),
    "delay": (float, 0.2, 0.0, 3600.0),
}

SSE_HEADERS = {b"content-type": b"text/event-stream", b"cache-control": b"no-cache"}
STREAM_HEADERS = {b"content-type": b"application/octet-stream"}

# Headers a reverse proxy adds or rewrites; the page highlights them.
PROXY_HEADER_NAMES = frozenset({"host", "forwarded", "via"})
PROXY_HEADER_PREFIX = "x-forwarded-"

# /status/<code> serves only final statuses; anything else is a 404.
STATUS_RANGE = range(200, 600)


class DemoRequest(Request):
    """
    A request that keeps its header lines as they came off the wire.

    @ivar receivedHeaders: C{(name, value)} L{bytes} pairs in arrival order,
        names in their original case, repeated headers separate; Twisted's
        C{Headers} keeps neither the order nor the case.
    """

    def __init__(self, *args, **kwargs):
        Request.__init__(self, *args, **kwargs)
        self.receivedHeaders = []


class RecordingChannel(HTTPChannel):
    """
    An L{HTTPChannel} that records each valid header line on its request.
    """

    def headerReceived(self, line):
        """
        Let L{HTTPChannel} validate and store the header, then record it.

        @param line: one header line, without its line delimiter.
        @return: whether the header was valid.
        """
        valid = HTTPChannel.headerReceived(self, line)
        recorded = getattr(self.requests[-1], "receivedHeaders", None) if valid else None
        if recorded is not None:
            name, value = line.split(b":", 1)
            recorded.append((name, value.strip(b" \t")))
        return valid


class DemoSite(Site):
    """
    A L{Site} that records raw headers and writes no access log.
    """

    protocol = RecordingChannel

    def log(self, request):
        """
        Log nothing: demo traffic is not what an operator wants in the log.
        """


def receivedHeaders(request):
    """
    @param request: an L{IRequest}, ideally a L{DemoRequest}.
    @return: its headers as a L{list} of C{(name, value)} L{bytes} pairs;
        outside a L{DemoSite}, canonicalised and grouped by first occurrence.
    """
    recorded = getattr(request, "receivedHeaders", None)
    if recorded is not None:
        return list(recorded)
    return [(n, v) for n, vs in request.requestHeaders.getAllRawHeaders() for v in vs]


def parseArguments(request, spec):
    """
    @param request: the L{IRequest} whose query arguments to read.
    @param spec: a table such as L{EVENT_ARGUMENTS}.
    @return: a L{dict} from argument name to converted value.
    @raise BadArgument: an argument does not convert or is out of range.
    """
    result = {}
    for name, (convert, default, lowest, highest) in spec.items():
        raw = request.args.get(name.encode("ascii"), [None])[0]
        if raw is None:
            result[name] = default
            continue
        try:
            result[name] = value = convert(raw.decode("ascii"))
            if not lowest <= value <= highest:
                raise ValueError(value)
        except (ValueError, UnicodeDecodeError):
            raise BadArgument(
                f"{name}={raw.decode('latin-1')!r}: expected {convert.__name__}"
                f" from {lowest} to {highest}"
            ) from None
    return result


def _plain(request, code, text):
    """
    Set C{code} and return C{text} as a plain-text body.
    """
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return (text + "\n").encode("utf-8")


@implementer(IPushProducer)
class Ticker:
    """
    Write a piece of body now and every C{interval} seconds, finish after
    C{count} pieces (never if L{None}), stop early if the request is lost.

    It is the request's push producer: while the client does not read (the
    proxy paused, or the client itself), no piece is made, so the demo
    shows the same backpressure as the proxy instead of piling the stream
    up in memory.
    """

    def __init__(self, reactor, request, piece, count, interval):
        """
        @param piece: a callable from the piece's index to its L{bytes}.
        """
        self._reactor, self._request, self._piece = reactor, request, piece
        self._count, self._interval = count, interval
        self._sent, self._call = 0, None
        self._paused = False

    def start(self):
        """
        Write the first piece.

        @return: L{NOT_DONE_YET}, for C{render} to return.
        """
        self._request.notifyFinish().addErrback(self._lost)
        self._request.registerProducer(self, True)
        self._tick()
        return NOT_DONE_YET

    def _tick(self):
        self._call = None
        if self._sent == self._count:
            self._request.unregisterProducer()
            self._request.finish()
            return
        self._request.write(self._piece(self._sent))
        self._sent += 1
        if not self._paused:
            self._call = self._reactor.callLater(self._interval, self._tick)

    def pauseProducing(self):
        """
        The client does not read: make no more pieces for now.
        """
        self._paused = True
        self._cancel()

    def resumeProducing(self):
        """
        The client reads again: go on.
        """
        self._paused = False
        if self._call is None:
            self._call = self._reactor.callLater(0, self._tick)

    def stopProducing(self):
        """
        The client is gone.
        """
        self._cancel()

    def _cancel(self):
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _lost(self, reason):
        self._paused = True
        self._cancel()


class TickingResource(Resource):
    """
    C{/events} and C{/stream}: a body written by a L{Ticker}, whose count
    and interval are the first and last rows of the argument table.
    """

    def __init__(self, reactor, arguments, headers, piece):
        """
        @param arguments: a table such as L{EVENT_ARGUMENTS}.
        @param headers: response headers, a L{dict} of L{bytes}.
        @param piece: a callable from (reactor, arguments, index) to L{bytes}.
        """
        Resource.__init__(self)
        self._reactor, self._arguments = reactor, arguments
        self._headers, self._piece = headers, piece

    def render_GET(self, request):
        """
        @return: L{NOT_DONE_YET}, or a 400 body for a bad query argument.
        """
        try:
            args = parseArguments(request, self._arguments)
        except BadArgument as e:
            return _plain(request, 400, str(e))
        for name, value in self._headers.items():
            request.setHeader(name, value)
        piece = lambda index: self._piece(self._reactor, args, index)
        values = list(args.values())
        return Ticker(self._reactor, request, piece, values[0], values[-1]).start()


def _sseEvent(reactor, args, index):
    """
    @return: a server-sent event carrying the reactor's time, ISO 8601.
    """
    now = datetime.fromtimestamp(reactor.seconds(), timezone.utc)
    return b"data: %s\n\n" % (now.isoformat(timespec="milliseconds").encode("ascii"),)


def _streamChunk(reactor, args, index):
    """
    @return: chunk C{index}: C{size} times the letter C{"abc...z"[index % 26]}.
    """
    return bytes([ord("a") + index % 26]) * args["size"]


class IndexPage(Resource):
    """
    The landing page: what the backend received, a clock, a websocket echo.
    """

    def render_GET(self, request):
        """
        @return: the HTML page, every received value HTML-escaped.
        """
        line = b" ".join([request.method, request.uri, request.clientproto])
        rows = "\n".join(_headerRow(*pair) for pair in receivedHeaders(request))
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        page = _PAGE.substitute(requestLine=escape(line.decode("latin-1")), headerRows=rows)
        return page.encode("utf-8")


def _headerRow(name, value):
    """
    @return: one escaped table row, highlighted if a proxy sets the header.
    """
    name, value = name.decode("latin-1"), value.decode("latin-1")
    lower = name.lower()
    proxied = lower in PROXY_HEADER_NAMES or lower.startswith(PROXY_HEADER_PREFIX)
    cls = ' class="proxy"' if proxied else ""
    return f"<tr{cls}><td>{escape(name)}</td><td>{escape(value)}</td></tr>"


class HeaderDump(Resource):
    """
    JSON of the method, target and raw header list the backend received.
    """

    def render(self, request):
        """
        @return: the JSON body, for any method.
        """
        pairs = receivedHeaders(request)
        body = {
            "method": request.method.decode("latin-1"),
            "uri": request.uri.decode("latin-1"),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in pairs],
        }
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body, indent=1).encode("utf-8")


class Echo(Resource):
    """
    Echo a POST or PUT body with its content type.  Twisted has buffered the
    body already (a temporary file if large); it is streamed back from there.
    """

    def render_POST(self, request):
        """
        @return: L{NOT_DONE_YET}; a L{FileSender} writes the body.
        """
        content = request.content
        request.setHeader(b"content-length", b"%d" % (content.seek(0, 2),))
        content.seek(0)
        contentType = request.getHeader(b"content-type") or b"application/octet-stream"
        request.setHeader(b"content-type", contentType)
        sending = FileSender().beginFileTransfer(content, request)
        sending.addCallbacks(lambda _: request.finish(), lambda _: None)
        return NOT_DONE_YET

    render_PUT = render_POST


class Redirect(Resource):
    """
    A 302 to C{http://<Host received><target>}, for Location-rewrite tests.
    """

    def render(self, request):
        """
        @return: a short plain-text body beside the C{Location} header.
        """
        host = request.getHeader(b"host")
        if host is None:
            host = "{0.host}:{0.port}".format(request.getHost()).encode("ascii")
        target = request.args.get(b"target", [b"/"])[0]
        location = b"http://" + host + (b"" if target.startswith(b"/") else b"/") + target
        request.setHeader(b"location", location)
        return _plain(request, 302, "redirecting to " + location.decode("latin-1"))


class StatusPage(Resource):
    """
    C{/status/<code>}: that status and a body such as C{"404 Not Found"}.
    """

    def __init__(self, code=404):
        Resource.__init__(self)
        self._code = code

    def getChild(self, path, request):
        """
        @return: a L{StatusPage} for a code in L{STATUS_RANGE}, else for 404.
        """
        return StatusPage(int(path) if path.isdigit() and int(path) in STATUS_RANGE else 404)

    def render(self, request):
        """
        @return: the plain-text body, for any method.
        """
        phrase = RESPONSES.get(self._code, b"").decode("ascii")
        return _plain(request, self._code, f"{self._code} {phrase}".strip())


class EchoProtocol(WebSocketServerProtocol):
    """
    Echo each message with its type; the text C{close:<code>:<reason>}
    (reason optional) closes the connection with that code and reason.
    """

    def onMessage(self, payload, isBinary):
        """
        Echo the message or obey a close command.
        """
        if isBinary or not payload.startswith(b"close:"):
            self.sendMessage(payload, isBinary)
            return
        _, codeText, *rest = payload.decode("utf-8").split(":", 2)
        code = int(codeText) if codeText.isascii() and codeText.isdigit() else None
        if code not in SENDABLE_CLOSE_CODES:
            self.sendMessage(f"error: cannot close with code {codeText!r}".encode("utf-8"))
            return
        # A close frame has room for 123 bytes of reason; cut on a character.
        reason = (rest[0].encode("utf-8")[:123] if rest else b"").decode("utf-8", "ignore")
        _log.debug("demo websocket closing on request: {code} {reason!r}", code=code, reason=reason)
        # sendClose() refuses 1001-1014; sendCloseFrame(), which it calls,
        # does not, so a test of the proxy can see e.g. 1011 relayed.
        self.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8") or None)


def demoResource(reactor):
    """
    Build the demo resource tree.

    @param reactor: the reactor for the tree's timers and websocket factory.
    @return: an L{IResource}; its children are listed in the module docstring.
    """
    factory = WebSocketServerFactory(reactor=reactor)
    factory.protocol = EchoProtocol
    children = {
        b"": IndexPage(),
        b"events": TickingResource(reactor, EVENT_ARGUMENTS, SSE_HEADERS, _sseEvent),
        b"headers": HeaderDump(),
        b"ws": WebSocketResource(factory),
        b"status": StatusPage(),
        b"stream": TickingResource(reactor, STREAM_ARGUMENTS, STREAM_HEADERS, _streamChunk),
        b"echo": Echo(),
        b"redirect": Redirect(),
    }
    root = Resource()
    for name, child in children.items():
        root.putChild(name, child)
    return root


def demoSite(reactor):
    """
    Build a L{Site} serving L{demoResource}, without an access log.

    @param reactor: the reactor for the site's timers and the tree's.
    @return: a L{DemoSite}.
    """
    return DemoSite(
        demoResource(reactor),
        requestFactory=DemoRequest,
        reactor=reactor,
        parsePOSTFormSubmission=False,
    )


_PAGE = Template("""\
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>proxyws is working</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:52em;margin:2em auto;padding:0 1em;color:#222}
h1{color:#1a7f37} pre,td,code,#log{font-family:ui-monospace,monospace;font-size:13px}
pre,#log{background:#f4f4f4;padding:.5em} #log{height:9em;overflow:auto;margin:.5em 0}
table{border-collapse:collapse;width:100%} tr.proxy td{background:#fff3c4}
td{border-bottom:1px solid #ddd;padding:.2em .5em;vertical-align:top;word-break:break-all}
</style></head><body>
<h1>proxyws is working</h1>
<p>This page comes from the proxyws demo backend, relayed by the proxy.
Highlighted headers are the ones a proxy adds or rewrites.</p>
<h2>Request received by the backend</h2>
<pre id="line">${requestLine}</pre>
<table><tbody id="headers">
${headerRows}
</tbody></table>
<p><button id="refetch">Fetch again</button> from <code>headers</code></p>
<h2>Server-sent events</h2>
<p>Backend clock: <strong id="clock">waiting&hellip;</strong></p>
<h2>WebSocket echo</h2>
<p>State: <span id="state">connecting&hellip;</span>
(send <code>close:4000:bye</code> to have the server close)</p>
<form id="send"><input id="text" size="40" value="hello through proxyws">
<button>Send</button></form>
<div id="log"></div>
<script>
(function () {
  "use strict";
  function byId(id) { return document.getElementById(id); }
  function note(text) {
    var log = byId("log"), line = document.createElement("div");
    line.textContent = text; log.appendChild(line); log.scrollTop = log.scrollHeight;
  }
  byId("refetch").onclick = function () {
    fetch("headers").then(function (r) { return r.json(); }).then(function (data) {
      var body = byId("headers");
      body.textContent = "";
      byId("line").textContent = data.method + " " + data.uri + "  (fetched)";
      data.headers.forEach(function (pair) {
        var row = body.insertRow();
        if (/^(host|forwarded|via|x-forwarded-.*)$$/i.test(pair[0])) row.className = "proxy";
        row.insertCell().textContent = pair[0];
        row.insertCell().textContent = pair[1];
      });
    });
  };
  var events = new EventSource("events");
  events.onmessage = function (e) { byId("clock").textContent = e.data; };
  events.onerror = function () { byId("clock").textContent = "reconnecting\\u2026"; };
  var dir = location.pathname.replace(/[^\\/]*$$/, "");
  var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + dir + "ws";
  var ws = new WebSocket(url);
  ws.onopen = function () { byId("state").textContent = "open, " + url; };
  ws.onmessage = function (e) { note("\\u2190 " + e.data); };
  ws.onclose = function (e) { byId("state").textContent = "closed, " + e.code + " " + e.reason; };
  byId("send").onsubmit = function (e) {
    e.preventDefault();
    var text = byId("text").value;
    ws.send(text); note("\\u2192 " + text);
  };
})();
</script>
</body></html>
""")
