"""Key bindings as operators see and change them: the user's keymap from the config, the keys
that belong to tmux and readline, and the key list the help screen and palette show.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from textual.binding import Binding

# tmux's and screen's prefixes and readline's editing keys: an ops console inside tmux over
# SSH must never take them.
RESERVED = frozenset({"ctrl+a", "ctrl+b", "ctrl+d", "ctrl+k"})


def bindings_of(owner: type) -> list[Binding]:
    """The :class:`Binding` objects a widget, screen or app class declares itself."""
    return [b for b in getattr(owner, "BINDINGS", []) if isinstance(b, Binding)]


def keys_for(binding: Binding, keymap: Mapping[str, str]) -> list[str]:
    """The keys that trigger ``binding`` once the user's keymap is applied."""
    keys = keymap.get(binding.id or "", binding.key)
    return [k.strip() for k in keys.split(",") if k.strip()]


def keymap_problems(keymap: Mapping[str, str], bindings: Iterable[Binding]) -> list[str]:
    """What is wrong with a user keymap: unknown binding ids and keys tmux or readline own."""
    known = {b.id for b in bindings if b.id}
    problems = []
    for binding_id, keys in sorted(keymap.items()):
        if binding_id not in known:
            problems.append(f"[console.keymap] {binding_id!r} is not a binding id")
            continue
        for key in (k.strip() for k in keys.split(",")):
            if key in RESERVED:
                problems.append(
                    f"[console.keymap] {binding_id} = {key!r}: tmux or readline uses {key}"
                )
    return problems
