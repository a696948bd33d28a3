"""
Parsing the C{[[upstream]]} tables and the C{upstream} key of routes
(L{proxyws.upstream} runs on what this builds).

The upstreams are parsed before the routes.  A route with C{upstream =
"name"} is checked against its upstream here and then built as a route to
the upstream's first member, whose Backend is the route's; the request path
chooses the member for each request.  The members of one upstream differ
only in host, port and settings, so the target a route computes from its
own backend is right for every member.
"""

import re
from urllib.parse import urlsplit

import attr

from .pluginconfig import policyPlugin
from .reader import Broken
from .routeconfig import _backend, _backendTLS
from .routing import GROUP_REFERENCE, compileTemplate
from .schema import CHECK_KEYS, COOKIE_KEYS, MEMBER_KEYS, UPSTREAM_KEYS
from .values import (
    CheckSettings,
    CookieSettings,
    HashKey,
    MemberSettings,
    UpstreamSettings,
    derivedName,
)

_MEMBER = "a URL string or a table such as { url = 'http://10.0.0.1:3838/', weight = 2 }"


def parseUpstreams(reader, tables):
    """
    Every C{[[upstream]]} table.

    @return: a L{dict} of name to L{UpstreamSettings}, in file order.
    """
    found = {}
    # Upstream name -> (key path, BackendTLS) of the first route using it.
    reader.upstreamTLS = {}
    reader.upstreams = found
    # Names of upstreams with problems (already recorded): routes using
    # them are not told again that the name is unknown.
    reader.brokenUpstreams = set()
    ok, tables = reader.attempt(reader.tables, tables, "upstream")
    for index, table in enumerate(tables if ok else ()):
        ok, upstream = reader.attempt(_upstream, reader, index, table)
        if not ok:
            if isinstance(table.get("name"), str):
                reader.brokenUpstreams.add(table["name"])
            continue
        if upstream.name in found:
            reader.record(
                "upstream[{}].name".format(index),
                "{!r} is already the name of upstream[{}]".format(
                    upstream.name, found[upstream.name].index
                ),
            )
            continue
        found[upstream.name] = upstream
    return found


def _upstream(reader, index, table):
    keyPath = "upstream[{}]".format(index)
    values = reader.settings(table, UPSTREAM_KEYS, keyPath, required=["name", "members"])
    members = _members(reader, values["members"], keyPath + ".members")
    if values["hash"] is not None and values["policy"] != "hash":
        raise reader.error(
            keyPath + ".hash",
            "is used only with policy = 'hash' (the policy is {!r})".format(values["policy"]),
        )
    if values["cookie"] is not None and values["affinity"] == "none":
        raise reader.error(
            keyPath + ".cookie", "is used only with affinity = 'cookie' or 'sockjs'"
        )
    cookie = check = None
    if values["cookie"] is not None or values["affinity"] == "cookie":
        cookie = _cookie(reader, values["cookie"] or {}, keyPath + ".cookie")
    if values["check"] is not None:
        check = _check(reader, values["check"], keyPath + ".check")
    policy, plugin = policyPlugin(reader, values["policy"], keyPath + ".policy")
    return UpstreamSettings(
        index=index,
        name=values["name"],
        members=members,
        policy=policy,
        policyPlugin=plugin,
        hashKey=HashKey(*values["hash"]) if values["hash"] else HashKey(),
        affinity=values["affinity"],
        cookie=cookie,
        retries=len(members) - 1 if values["retries"] is None else values["retries"],
        maxFails=values["max_fails"],
        failTimeout=values["fail_timeout"],
        check=check,
    )


def _members(reader, value, keyPath):
    if not isinstance(value, list):
        raise reader.error(
            keyPath, "{!r} is not a list of members, each {}".format(value, _MEMBER)
        )
    if not value:
        raise reader.error(keyPath, "is empty: list at least one member")
    members = []
    for n, item in enumerate(value):
        where = "{}[{}]".format(keyPath, n)
        if isinstance(item, str):
            item, urlPath = {"url": item}, where
        elif isinstance(item, dict):
            urlPath = where + ".url"
        else:
            raise reader.error(where, "{!r} is not {}".format(item, _MEMBER))
        values = reader.settings(item, MEMBER_KEYS, where, required=["url"])
        # $0..$9 are allowed here and checked against each route's match.
        backend = _backend(reader, values["url"], urlPath, 9)
        member = MemberSettings(
            name=values["name"] or derivedName(values["url"]),
            url=values["url"],
            backend=backend,
            template=compileTemplate(backend.path),
            weight=values["weight"],
            drain=values["drain"],
        )
        _checkAlike(reader, members, member, where, urlPath)
        members.append(member)
    return tuple(members)


def _pathOf(url):
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def _checkAlike(reader, members, member, where, urlPath):
    """
    A new member differs from the ones before it in URL and name, and
    shares their scheme and path.
    """
    for n, other in enumerate(members):
        if other.url == member.url:
            raise reader.error(urlPath, "{!r} is already members[{}]".format(member.url, n))
        if other.name == member.name:
            raise reader.error(
                where + ".name", "{!r} is already the name of members[{}]".format(member.name, n)
            )
    if not members:
        return
    first = members[0].url
    scheme, firstScheme = urlsplit(member.url).scheme, urlsplit(first).scheme
    if scheme != firstScheme:
        raise reader.error(
            urlPath,
            "{!r} uses {} but members[0] uses {}: the members of one upstream "
            "share a scheme".format(member.url, scheme, firstScheme),
        )
    if _pathOf(member.url) != _pathOf(first):
        raise reader.error(
            urlPath,
            "{!r} has path {!r} but members[0] has {!r}: the members of one "
            "upstream differ only in host and port".format(
                member.url, _pathOf(member.url), _pathOf(first)
            ),
        )


def _cookie(reader, table, keyPath):
    values = reader.settings(reader.table(table, keyPath), COOKIE_KEYS, keyPath)
    if values["same_site"] == "None" and not values["secure"]:
        raise reader.error(
            keyPath + ".same_site", "'None' needs secure = true (browsers refuse it otherwise)"
        )
    return CookieSettings(
        name=values["name"],
        path=values["path"],
        domain=values["domain"],
        secure=values["secure"],
        httpOnly=values["http_only"],
        sameSite=values["same_site"],
        maxAge=values["max_age"],
    )


def _check(reader, table, keyPath):
    values = reader.settings(reader.table(table, keyPath), CHECK_KEYS, keyPath)
    if values["type"] == "tcp":
        for key in ("path", "status"):
            if values[key] is not None:
                raise reader.error(
                    keyPath + "." + key,
                    "is for type = 'http' checks; a 'tcp' check only connects",
                )
    return CheckSettings(
        type=values["type"],
        path=values["path"] or b"/",
        statuses=values["status"],
        interval=values["interval"],
        timeout=values["timeout"],
        rise=values["rise"],
        fall=values["fall"],
    )


def routeUpstream(reader, values, keyPath, base):
    """
    Check a route's C{upstream} against the route, and make the route's
    C{backend} the upstream's first member.

    @param values: the route's settings; C{"backend"} is set here.
    @return: the upstream's name, or L{None} for a route with a backend.
    """
    name = values["upstream"]
    if name is None:
        return None
    if values["backend"] is not None:
        raise reader.error(keyPath, "needs exactly one of 'backend' and 'upstream'")
    upstreams = getattr(reader, "upstreams", {})
    if name in getattr(reader, "brokenUpstreams", ()):
        raise Broken()
    if name not in upstreams:
        known = ", ".join(repr(n) for n in upstreams)
        raise reader.error(
            keyPath + ".upstream",
            "{!r} is not the name of an [[upstream]]; {}".format(
                name, "the known names are " + known if known else "there are none"
            ),
        )
    upstream = upstreams[name]
    _checkRouteGroups(reader, upstream, values, keyPath)
    _checkRoutePath(reader, upstream, values, keyPath)
    tls = None
    if values["backend_tls"] is not None:
        if not upstream.members[0].backend.secure:
            raise reader.error(
                keyPath + ".backend_tls",
                "the members of upstream {!r} do not use TLS (https:// or wss://)".format(name),
            )
        tls = _backendTLS(reader, values["backend_tls"], keyPath + ".backend_tls", base)
    first = reader.upstreamTLS.setdefault(name, (keyPath, tls))
    if first[1] != tls:
        raise reader.error(
            keyPath + ".backend_tls",
            "differs from that of {}, which uses upstream {!r} too: the routes "
            "of one upstream check its members' TLS the same way".format(first[0], name),
        )
    values["backend"] = upstream.members[0].url
    return name


def _checkRouteGroups(reader, upstream, values, keyPath):
    """
    The C{$N} of the members' path and a C{match:N} hash key name groups
    that the route's C{match} has.
    """
    if (values["path"] is None) == (values["match"] is None):
        return  # The route's own check says so.
    groups = None
    if values["match"] is not None:
        try:
            groups = re.compile(values["match"].encode("utf-8")).groups
        except (re.error, OverflowError, RecursionError):
            return  # Idem.
    used = [
        ("the members of upstream {!r} use ${}".format(upstream.name, n.decode()), int(n))
        for n in GROUP_REFERENCE.findall(upstream.members[0].backend.path)
    ]
    if upstream.hashKey.source == "match":
        number = upstream.hashKey.name
        used.append(("upstream {!r} hashes on match:{}".format(upstream.name, number), number))
    for what, number in used:
        if groups is None:
            raise reader.error(
                keyPath + ".upstream", "{} but only 'match' routes have groups".format(what)
            )
        if number > groups:
            raise reader.error(
                keyPath + ".upstream",
                "{} but 'match' has only {} group{}".format(
                    what, groups, "" if groups == 1 else "s"
                ),
            )


def _checkRoutePath(reader, upstream, values, keyPath):
    """
    Apache's ProxyPass rule for a prefix route and its members' path.
    """
    path, url = values["path"], upstream.members[0].url
    if values["match"] is not None or path is None or not path.startswith("/"):
        return  # The route's own checks say what is wrong.
    if urlsplit(url).path and path.endswith("/") != _pathOf(url).endswith("/"):
        raise reader.error(
            keyPath,
            "path {!r} and the path of the members of upstream {!r} ({!r}) must "
            "both end with '/' or both not (Apache ProxyPass rule)".format(
                path, upstream.name, _pathOf(url)
            ),
        )


def upstreamsWithTLS(reader):
    """
    The upstreams, their members' backends carrying the C{backend_tls} of
    the routes that use them.
    """
    result = []
    for upstream in getattr(reader, "upstreams", {}).values():
        tls = reader.upstreamTLS.get(upstream.name, (None, None))[1]
        if tls is not None:
            members = tuple(
                attr.evolve(m, backend=attr.evolve(m.backend, tls=tls))
                for m in upstream.members
            )
            upstream = attr.evolve(upstream, members=members)
        result.append(upstream)
    return tuple(result)
