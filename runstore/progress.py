"""What a long call shows while it works, and the line it ends with. Internal module.

:func:`progress_bar` makes a tqdm bar fit for where Python runs: tqdm's text
bar on a terminal (and in files, CI logs, IPython in a terminal), and in a
Jupyter kernel a bar drawn as an HTML ``<progress>`` element beside the same
text, in one output that is updated in place (:class:`NotebookBar`). Unlike
tqdm's ipywidgets bar, that output is plain HTML kept in the notebook, so it
shows the same in a notebook exported to HTML and opened without network
access (an ipywidget needs JavaScript fetched from a CDN, and shows nothing
without it), in a notebook opened again later, and without ipywidgets
installed; where HTML is not rendered, its text shows.

:func:`summary` is the one line a batch call ends with: how many of its runs
came from the store and how many it computed.
"""

from __future__ import annotations

import html
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tqdm.std import tqdm as text_bar

if TYPE_CHECKING:  # generic in its stubs only
    _Bar = text_bar[Any]
else:
    _Bar = text_bar

__all__ = ["NotebookBar", "in_notebook", "progress_bar", "summary"]


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel whose front end renders HTML.

    The same test as ``tqdm.autonotebook``: the kernel's shell is loaded, and
    it is not a Qt console or Spyder (which show text only).
    """
    if "ipykernel.zmqshell" not in sys.modules:
        return False
    if any(name == "QT_API" or name.startswith("SPYDER") for name in os.environ):
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    kind = type(shell).__name__.lower()
    return shell is not None and "qt" not in kind and "spyder" not in kind


class NotebookBar(_Bar):
    """A tqdm bar drawn in a notebook output: an HTML ``<progress>`` and its text.

    The output carries ``text/html`` and ``text/plain`` (tqdm's text bar), and
    is updated in place through its display id, as often as tqdm refreshes.
    Closed, it shows the final state, with the average rate.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs = {**kwargs, "gui": True, "disable": bool(kwargs.get("disable", False))}
        super().__init__(*args, **kwargs)  # gui: tqdm writes no text anywhere itself
        if self.disable:
            return
        from IPython.display import display

        self._handle = display(self._bundle(), raw=True, display_id=True)

    def _bundle(self) -> dict[str, str]:
        """The output's content now: HTML, and the text bar for plain-text front ends."""
        meter = self.format_dict
        stats = self.format_meter(**{**meter, "ncols": 0})  # the text without its bar
        total = meter["total"] or 0
        value = min(meter["n"], total) if total else 0
        bar = f'<progress value="{value}" max="{total or 1}" style="width: 20em"></progress>'
        return {"text/html": f'<div class="runstore-progress">{bar} '
                             f"<code>{html.escape(stats)}</code></div>",
                "text/plain": self.format_meter(**meter)}

    def display(self, *args: Any, **kwargs: Any) -> None:
        """Update the output (tqdm calls this on each refresh)."""
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.update(self._bundle(), raw=True)

    def clear(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to clear: the output is replaced, not written over."""

    def close(self) -> None:
        """Show the final state (with the average rate), then close."""
        if self.disable:
            return
        self._ema_dt = lambda: None  # tqdm's way to show the average rate at the end
        self.display()
        super().close()


def progress_bar(**options: Any) -> Any:
    """A tqdm bar for where this runs: :class:`NotebookBar` in a notebook, else tqdm's text bar."""
    return NotebookBar(**options) if in_notebook() else text_bar(**options)


def summary(before: Mapping[str, int], computed: int, failed: int = 0,
            pending: int = 0) -> str:
    """The one line a batch call ends with.

    ``before`` counts the runs the call was given by state, as they were
    when it began (failed runs to retry already pending); ``computed`` is the
    number it computed, of which ``failed`` failed; ``pending`` is the number
    still pending after it (of a class it does not know, say). Runs that
    were failed and not retried, or were being computed by other processes,
    are named too: ``36 of 36 runs from the store, 0 computed``.
    """
    total = sum(before.values())
    line = (f"{before.get('done', 0)} of {total} runs from the store, {computed} computed"
            + (f" ({failed} failed)" if failed else ""))
    if before.get("failed"):
        line += (f", {before['failed']} failed before "
                 "(batch(retry_failed=True) runs them again)")
    if before.get("running"):
        line += f", {before['running']} being computed by other processes"
    if pending:
        line += f", {pending} still pending"
    return line
