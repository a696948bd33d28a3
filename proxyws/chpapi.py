"""
configurable-http-proxy's REST API (C{/api/routes}), served on the admin
listener, so that JupyterHub and other hubs drive proxyws as they drive
configurable-http-proxy (CHP).

The answers follow CHP's C{lib/configproxy.js}:

  - C{GET /api/routes} (and C{GET /api/routes/}): every route, prefix to
    its data with C{target} and C{last_activity}; C{?inactive_since=} (or
    C{?inactiveSince=}) an ISO-8601 time keeps the routes last active
    before it; a bad time is 400 C{Invalid datestamp '...' must be ISO8601.}
  - C{GET /api/routes/PREFIX}: that route, or 404 with an empty body;
  - C{POST /api/routes/PREFIX} (C{POST /api/routes} for the root) with
    C{{"target": URL, ...data}}: 201 with an empty body; a body that is not
    JSON, or has no string C{target}, is 400;
  - C{DELETE /api/routes/PREFIX}: 204, or 404 when there is no such route;
    both with an empty body;
  - another method on these paths: 405 C{Method not supported}; another
    path under C{/api}: 404.

The prefix in the URL is percent-decoded, and trailing slashes do not
matter (L{proxyws.apiroutes.cleanPrefix}).  Where proxyws differs, it says
why (README.rst lists the differences): a target must be a URL proxyws can
send requests to (400 otherwise), a change the route store cannot keep is
503, and the token is checked (by L{proxyws.admin}) before the body is read.
"""

import json
import re

from twisted.web.server import NOT_DONE_YET

from .apiroutes import decodePrefix, parseTime
from .errors import InvalidRoute, RouteStoreError
from .logs import ProxyLogger

_log = ProxyLogger()

# The API's one resource: /api/routes, then an optional prefix.
ROUTES_PATH = re.compile(rb"/api/routes(/.*)?")

# Bodies larger than this (bytes) are refused with 413: a route's data is
# a target and a few fields.
MAX_BODY = 1024 * 1024

# Query arguments naming the inactive_since time, in the order CHP reads them.
INACTIVE_SINCE = (b"inactiveSince", b"inactive_since")


def _respond(request, code, body=b"", contentType=None):
    """
    Finish a request with a status and a body (plain text unless said).
    """
    request.setResponseCode(code)
    if body:
        request.setHeader(b"Content-Type", contentType or b"text/plain; charset=utf-8")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    return body


def _json(request, code, document):
    body = json.dumps(document).encode("utf-8")
    return _respond(request, code, body, b"application/json")


class RoutesAPI:
    """
    Answers the requests under C{/api} (after the token check) from a route
    store.
    """

    def __init__(self, store):
        """
        @param store: an L{proxyws.interfaces.IRouteStore} provider.
        """
        self.store = store

    def render(self, request):
        """
        Answer one API request.

        @return: the body, or C{NOT_DONE_YET} while a change is stored.
        """
        match = ROUTES_PATH.fullmatch(request.path)
        if match is None:
            return _respond(request, 404, b"Not Found")
        handler = {b"GET": self._get, b"HEAD": self._get, b"POST": self._post,
                   b"DELETE": self._delete}.get(request.method)
        if handler is None:
            return _respond(request, 405, b"Method not supported")
        try:
            prefix = decodePrefix(match.group(1) or b"/")
        except InvalidRoute as e:
            return _respond(request, 400, e.message.encode("utf-8"))
        return handler(request, prefix)

    def _get(self, request, prefix):
        table = self.store.table
        if not _wholeTable(request.path):
            route = table.get(prefix)
            if route is None:
                return _respond(request, 404)
            return _json(request, 200, route.document(table.lastActivity(route.prefix)))
        since = _argument(request, INACTIVE_SINCE)
        inactiveSince = None
        if since is not None:
            try:
                inactiveSince = parseTime(since)
            except ValueError:
                return _respond(
                    request, 400,
                    "Invalid datestamp '{}' must be ISO8601.".format(since).encode("utf-8"))
        return _json(request, 200, table.documents(inactiveSince))

    def _post(self, request, prefix):
        body = request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return _respond(request, 413, b"Body too large")
        try:
            data = json.loads(body.decode("utf-8")) or {}
        except ValueError as e:
            return _respond(request, 400, "Body not valid JSON: {}".format(e).encode("utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("target"), str):
            return _respond(request, 400, b"Must specify 'target' as string")

        def added(route):
            _log.info("API route added: {prefix} -> {target}", prefix=route.prefix,
                      target=route.target)
            return 201

        return self._change(request, self.store.add(prefix, data).addCallback(added))

    def _delete(self, request, prefix):
        def removed(existed):
            if existed:
                _log.info("API route removed: {prefix}", prefix=prefix)
            return 204 if existed else 404

        return self._change(request, self.store.remove(prefix).addCallback(removed))

    def _change(self, request, stored):
        """
        Answer once the store has taken (or refused) a change.
        """
        gone = []
        request.notifyFinish().addErrback(gone.append)

        def answer(code):
            return code, b""

        def refused(failure):
            error = failure.check(InvalidRoute, RouteStoreError)
            if error is None:
                _log.failure("API change failed", failure)
                return 500, b"Internal Server Error"
            if error is RouteStoreError:
                _log.warn("API change refused: {why}", why=failure.value)
            return failure.value.status, str(failure.value).encode("utf-8")

        def finish(result):
            if gone:
                return
            code, body = result
            request.write(_respond(request, code, body))
            request.finish()

        stored.addCallbacks(answer, refused).addCallback(finish)
        return NOT_DONE_YET


def _wholeTable(path):
    """
    Whether a GET asks for the whole table: C{/api/routes}, or with a
    prefix of C{/} only (CHP: C{if (path && path.length && path !== "/")}).
    """
    return path in (b"/api/routes", b"/api/routes/")


def _argument(request, names):
    """
    The first value of the first of C{names} in the query, as text.
    """
    for name in names:
        values = request.args.get(name)
        if values:
            return values[0].decode("utf-8", "replace")
    return None
