"""
A blocking HTTP client for the tests that run proxyws (and JupyterHub) as
subprocesses: requests as a browser or a script sends them, cookies kept,
redirects not followed, every status returned rather than raised.
"""

import http.cookiejar
import json
import urllib.error
import urllib.request

# Seconds one request may take.
TIMEOUT = 60.0


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """
    Leaves a redirect to the caller, who sees its status and C{Location}.
    """

    def redirect_request(self, *arguments, **keywords):
        """
        Follow nothing.
        """
        return None


class Answer:
    """
    One response.

    @ivar status: its status code.
    @ivar headers: its headers (an C{email.message.Message}).
    @ivar body: its body (bytes).
    """

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        """
        @return: the body parsed as JSON.
        """
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Answer {} {!r}>".format(self.status, self.body[:300])


class Client:
    """
    Requests to one server, with a cookie jar.

    @ivar base: C{http://host:port}, put before every path.
    @ivar cookies: the L{http.cookiejar.CookieJar}.
    """

    def __init__(self, port, headers=None):
        """
        @param port: the port on 127.0.0.1.
        @param headers: headers sent with every request (a L{dict}).
        """
        self.base = "http://127.0.0.1:{}".format(port)
        self.cookies = http.cookiejar.CookieJar()
        self._headers = dict(headers or {})
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirects)

    def cookie(self, name, path=None):
        """
        @param path: the cookie's path; any by default.
        @return: the value of a cookie the server set, or L{None}.
        """
        for cookie in self.cookies:
            if cookie.name == name and path in (None, cookie.path):
                return cookie.value
        return None

    def cookieHeader(self, path):
        """
        @return: the C{Cookie} header a browser sends with a request for
            C{path} (to open a websocket, which this client does not).
        """
        return "; ".join("{}={}".format(cookie.name, cookie.value)
                         for cookie in self.cookies if path.startswith(cookie.path))

    def follow(self, path, limit=10):
        """
        GET C{path}, following redirects on this server.

        @return: the last L{Answer}.
        """
        for _ in range(limit):
            answer = self.get(path)
            if answer.status not in (301, 302, 303, 307):
                return answer
            path = answer.headers["Location"]
            if path.startswith(self.base):
                path = path[len(self.base):]
            if not path.startswith("/"):
                raise AssertionError("redirected away: {!r}".format(path))
        raise AssertionError("more than {} redirects".format(limit))

    def request(self, method, path, body=None, headers=None):
        """
        Send one request.

        @param path: the target (path and query), already percent-encoded.
        @param body: bytes, or a L{dict} sent as JSON.
        @return: an L{Answer}.
        @raise OSError: when no answer came.
        """
        sent = dict(self._headers)
        sent.update(headers or {})
        if isinstance(body, dict):
            body = json.dumps(body).encode("utf-8")
            sent.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(self.base + path, data=body, method=method,
                                         headers=sent)
        try:
            response = self._opener.open(request, timeout=TIMEOUT)
        except urllib.error.HTTPError as e:
            response = e
        with response:
            return Answer(response.status, response.headers, response.read())

    def get(self, path, **keywords):
        """
        @return: the L{Answer} to a GET.
        """
        return self.request("GET", path, **keywords)

    def status(self, path):
        """
        @return: the status of a GET, or L{None} when the connection failed.
        """
        try:
            return self.get(path).status
        except OSError:
            return None
