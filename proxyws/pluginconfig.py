"""
The plugins a configuration file names (L{proxyws.plugins}): a C{plugins}
list on C{[server]}, a C{[[host]]} or a C{[[route]]}, each table a plugin's
C{name} and its options, and an upstream's C{policy = { plugin = "name",
...options }}.

Only their shape is checked here, while the file is parsed:
L{proxyws.plugins.buildPlugins} finds each plugin and has its factory check
its options (at start, by C{proxyws check} and at each reload, with the
other checks of L{proxyws.config.checkConfig}).
"""

from .reader import shown
from .values import PluginReference

_PLUGIN_TABLE = "a table such as { name = 'headers', set = { 'X-Frame-Options' = 'DENY' } }"


def parsePlugins(reader, value, keyPath):
    """
    The plugins of a C{plugins} list.

    @param reader: the file's L{proxyws.reader.Reader}.
    @param value: the list, as the TOML holds it.
    @param keyPath: its key path, such as C{"route[0].plugins"}.
    @return: a L{tuple} of L{PluginReference}.
    @raise ConfigError: for a list or table of the wrong shape.
    """
    if not isinstance(value, (list, tuple)):
        raise reader.error(
            keyPath, "{} is not a list of plugins, each {}".format(shown(value), _PLUGIN_TABLE)
        )
    return tuple(
        pluginReference(reader, item, "{}[{}]".format(keyPath, n), "name")
        for n, item in enumerate(value)
    )


def pluginReference(reader, table, keyPath, nameKey):
    """
    One plugin's table: its name (under C{nameKey}) and its options.

    @raise ConfigError: for a table without a name.
    """
    if not isinstance(table, dict):
        raise reader.error(keyPath, "{} is not {}".format(shown(table), _PLUGIN_TABLE))
    name = table.get(nameKey)
    where = "{}.{}".format(keyPath, nameKey)
    if name is None:
        raise reader.error(where, "is required and missing: the name of an installed plugin")
    if not isinstance(name, str):
        raise reader.error(
            where, "{} is not a string: the name of an installed plugin".format(shown(name))
        )
    options = {key: value for key, value in table.items() if key != nameKey}
    return PluginReference(name, options, keyPath, reader.filename, nameKey)


def policyPlugin(reader, policy, keyPath):
    """
    An upstream's C{policy}: one of proxyws's, or a plugin's.

    @return: C{(policy, reference)}: C{("plugin:NAME", PluginReference)}
        for a plugin's, else C{(policy, None)}.
    """
    if not isinstance(policy, dict):
        return policy, None
    reference = pluginReference(reader, policy, keyPath, "plugin")
    return "plugin:" + reference.name, reference
