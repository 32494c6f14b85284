"""A panel over the panes that says, in full, why the console is not on an engine and what
happens next: the engine went away (and is waited for), it refused this user (and who can fix
that), or no engine answers. The status bar has room for a line; this has room for the reason.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from console.engine_link import REFUSED_RETRY_SECONDS, LinkState
from console.untrusted import clean

TITLES = {
    "gone": "Engine gone",
    "refused": "The engine refused this console",
    "disconnected": "No engine",
    "failed": "Cannot use the engine",
}


def _next(link: LinkState) -> str:
    """What the console does about it, in a sentence."""
    if link.phase == "gone":
        return ("The console reconnects to the same socket as soon as the engine is back; it"
                " does not start an engine of its own.")  # fmt: skip
    if link.phase == "refused":
        return (f"Retrying every {REFUSED_RETRY_SECONDS:.0f} s: once that is fixed, the console"
                " connects by itself.")  # fmt: skip
    if link.phase == "disconnected":
        return "Retrying until an engine answers."
    return "Quit with q and start the console again once that is fixed."


class LinkNotice(Static):
    DEFAULT_CSS = """
    LinkNotice {
        display: none;
        height: auto;
        border: round $error;
        padding: 0 1;
    }
    LinkNotice.-shown {
        display: block;
    }
    """

    def show_link(self, link: LinkState) -> None:
        title = TITLES.get(link.phase)
        self.set_class(title is not None, "-shown")
        if title is None:
            return
        self.border_title = title
        self.update(
            Content.assemble(
                (clean(link.message, limit=1000), "bold"), "\n", Content.styled(_next(link), "dim")
            )
        )
