"""
What a reload changes: pure comparisons of the config in force and the new
one.

A route is the same route across a reload when it takes the same requests to
the same place: its virtual host's names, its C{host} patterns, its C{path}
or C{match}, and its backend URL or upstream name.  Its place in the file and
its other settings (timeouts, limits, access) may change: open websockets on
it stay up and the new settings apply to new requests.  A websocket whose
route is gone by that measure is closed after C{reload_grace} seconds.

A listener is the same listener when its address and port are the same;
what else changed of it (TLS, redirects, PROXY protocol) takes effect for new
connections.
"""

import os

import attr


def routeIdentity(config, route):
    """
    What makes C{route} the same route across a reload.

    @param config: the L{proxyws.values.Config} C{route} belongs to.
    @param route: a L{proxyws.values.Route}.
    @return: a hashable value.
    """
    hostNames = None
    if route.vhost is not None:
        hostNames = config.hosts[route.vhost].names
    return (
        hostNames,
        route.hosts,
        route.prefix,
        None if route.match is None else route.match.pattern,
        getattr(route, "upstream", None) or route.backend.url,
    )


def _describe(config, route):
    """
    How a route is named in a reload's log line and result.
    """
    where = route.prefix if route.prefix is not None else route.match.pattern
    target = getattr(route, "upstream", None) or route.backend.url
    host = ""
    if route.vhost is not None:
        host = config.hosts[route.vhost].names[0].decode("ascii") + " "
    elif route.hosts:
        host = route.hosts[0].decode("ascii") + " "
    return "{}{} -> {}".format(host, where.decode("utf-8", "replace"), target)


def listenerKey(listener):
    """
    @return: what makes a listener the same across a reload: its address
        and port.
    """
    return (listener.address, listener.port)


def routeChanges(old, new):
    """
    The routes a reload adds, removes and changes.

    @param old: the config in force.
    @param new: the new config.
    @return: a L{dict} with C{added}, C{removed} and C{changed} lists of
        route descriptions.
    """
    before = {routeIdentity(old, r): r for r in old.routes}
    after = {routeIdentity(new, r): r for r in new.routes}
    changed = []
    for identity, route in after.items():
        previous = before.get(identity)
        if previous is not None and _settings(previous) != _settings(route):
            changed.append(_describe(new, route))
    return {
        "added": [_describe(new, r) for i, r in after.items() if i not in before],
        "removed": [_describe(old, r) for i, r in before.items() if i not in after],
        "changed": changed,
    }


def _settings(route):
    """
    A route's settings, less its place in the file (and its virtual host's
    place among the hosts).
    """
    return attr.evolve(route, index=0, vhost=None)


def listenerChanges(old, new):
    """
    The listeners a reload adds, removes and changes.

    @return: a L{dict} with C{added}, C{removed} and C{changed} lists of
        C{"address port"} texts.
    """
    before = {listenerKey(l): l for l in old.listeners}
    after = {listenerKey(l): l for l in new.listeners}
    name = lambda key: "{} {}".format(*key)
    return {
        "added": [name(k) for k in after if k not in before],
        "removed": [name(k) for k in before if k not in after],
        "changed": [name(k) for k in after if k in before and before[k] != after[k]],
    }


def certificateFiles(config):
    """
    The certificate and key files a config serves, with their contents'
    identity (size and modification time), so that a reload can tell
    certificates renewed in place.

    @return: a L{dict} of path -> C{(size, mtime)} or L{None} when it
        cannot be read.
    """
    settings = [l.tls for l in config.listeners if l.tls is not None]
    settings += [h.tls for h in config.hosts if h.tls is not None]
    files = {}
    for tls in settings:
        for path in (tls.cert, tls.key, tls.clientCA):
            if path is None:
                continue
            try:
                status = os.stat(path)
            except OSError:
                files[path] = None
            else:
                files[path] = (status.st_size, status.st_mtime_ns)
    return files


def summary(changes):
    """
    The one log line of a reload.

    @param changes: a reload's changes (routes, listeners, certificates).
    @return: text such as C{"routes +1 -0 ~2, listeners +0 -0 ~0,
        certificates 1 reloaded"}.
    """
    routes = changes["routes"]
    listeners = changes["listeners"]
    parts = [
        "routes +{} -{} ~{}".format(
            len(routes["added"]), len(routes["removed"]), len(routes["changed"])
        ),
        "listeners +{} -{} ~{}".format(
            len(listeners["added"]), len(listeners["removed"]), len(listeners["changed"])
        ),
        "certificates {} reloaded".format(len(changes["certificates"])),
    ]
    if changes.get("closing"):
        parts.append("{} websockets to close".format(changes["closing"]))
    return ", ".join(parts)


def certificateChanges(old, new):
    """
    The certificate and key files of the new config that are new, or whose
    contents changed since the config in force was loaded.

    @param old: L{certificateFiles} of the config in force, as loaded.
    @param new: L{certificateFiles} of the new config.
    @return: a sorted L{list} of paths.
    """
    return sorted(path for path, identity in new.items() if old.get(path) != identity)
