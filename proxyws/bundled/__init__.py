"""
The plugins proxyws ships, each an entry point of the C{proxyws.plugins}
group declared by proxyws's own C{setup.py}: C{headers}
(L{proxyws.bundled.headers}), C{cors} (L{proxyws.bundled.cors}),
C{ws-limit} (L{proxyws.bundled.wslimit}), C{ws-audit}
(L{proxyws.bundled.wsaudit}), C{jwt} (L{proxyws.bundled.jwtauth}) and
C{htpasswd} (L{proxyws.gate.htpasswdPlugin}).  They use nothing a plugin of
another package could not.
"""
