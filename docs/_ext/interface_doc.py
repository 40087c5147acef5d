"""Sphinx directive ``.. interface:: dotted.name``: an interface's documentation.

It inserts what :func:`runstore.interfaces.describe_interface` renders, so the
reference shows each interface's attributes and methods with their contracts.
"""

from __future__ import annotations

import importlib

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList


class InterfaceDirective(Directive):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        from runstore.interfaces import describe_interface

        module_name, _, name = self.arguments[0].rpartition(".")
        iface = getattr(importlib.import_module(module_name), name)
        rst = describe_interface(iface, format="rst")
        section = nodes.section(ids=[self.arguments[0]])
        section += nodes.title(text=self.arguments[0])
        self.state.nested_parse(StringList(rst.splitlines()[1:]), self.content_offset, section)
        return [section]


def setup(app):  # noqa: ANN001, ANN201  (Sphinx's extension entry point)
    app.add_directive("interface", InterfaceDirective)
    return {"parallel_read_safe": True}
