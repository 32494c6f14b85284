"""What the panes that poll the engine while they are in view (traffic, devices) share: when to
poll — connected, in view, served by this engine — and starting or stopping as that changes."""

from __future__ import annotations

from textual.containers import Vertical

from console.polling import Poller


class PolledPane(Vertical):
    """A subclass makes ``self._poller`` in its ``__init__`` (after this one's) with
    ``lambda: self._wanted``, and says what a lost connection shows (``_disconnected``)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._connected = False
        self._in_view = False
        self._unsupported = ""
        self._poller: Poller

    def show_link(self, connected: bool) -> None:
        """The connection to the engine came or went."""
        self._connected = connected
        self._unsupported = ""
        if connected:
            self._poller.now()
        else:
            self._poller.stop()
            self._disconnected()

    def in_view(self, shown: bool) -> None:
        """The pane came into view (poll now and keep polling) or left it (stop)."""
        self._in_view = shown
        if shown:
            self._poller.now()
        else:
            self._poller.stop()

    def _disconnected(self) -> None:
        raise NotImplementedError

    def _paused(self) -> bool:
        return False

    @property
    def _wanted(self) -> bool:
        return (
            self._connected
            and self._in_view
            and not self._paused()
            and not self._unsupported
            and self.is_attached
            and self.app.is_running
        )
