"""The signal type of the bus: blinker's ``NamedSignal`` with receivers called in the order they were connected.

blinker leaves the order of receivers undefined; ``Event`` keeps its receiver sets insertion-ordered and
caches each sender's receivers, so a send costs one dictionary lookup and a loop over a tuple. With them it caches
the payload entries that no receiver reads (receivers marked with ``ignores``), which a sender need not build.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, MutableSet
from typing import Any

from blinker import NamedSignal, Namespace


class _OrderedSet(MutableSet):
    """A set that iterates in insertion order; blinker's routing tables are built from it."""

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._items = dict.fromkeys(items)

    def __contains__(self, item: Any) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: Any) -> None:
        self._items[item] = None

    def discard(self, item: Any) -> None:
        self._items.pop(item, None)

    def copy(self) -> _OrderedSet:
        return _OrderedSet(self._items)


class Event(NamedSignal):
    """A blinker signal with ordered receivers and a per-sender receiver cache for cheap sends."""

    set_class = _OrderedSet

    def __init__(self, name: str, doc: str | None = None, payload: tuple[str, ...] = ()) -> None:
        super().__init__(name, doc)
        self.payload = payload  # the keyword arguments after pl_module, in Lightning's positional order
        self._routes: dict[int, tuple[weakref.ref, tuple[Callable[..., Any], ...], frozenset[str]]] = {}
        self.changes = 0  # connects and disconnects so far: what was learnt about the receivers holds until it moves

    def connect(self, receiver: Any, sender: Any = None, weak: bool = True) -> Any:
        self._routes.clear()
        self.changes += 1
        if sender is None:
            return super().connect(receiver, weak=weak)
        return super().connect(receiver, sender=sender, weak=weak)

    def disconnect(self, receiver: Any, sender: Any = None) -> None:
        self._routes.clear()
        self.changes += 1
        if sender is None:
            super().disconnect(receiver)
        else:
            super().disconnect(receiver, sender=sender)

    def send(self, sender: Any = None, /, **payload: Any) -> list[tuple[Callable[..., Any], Any]]:
        """Call the receivers of ``sender`` in connection order; return ``(receiver, result)`` pairs.
        Inside blinker's ``muted()`` nothing is called, as blinker promises."""
        if self.is_muted:
            return []
        responses = []
        for receiver in self._route_of(sender)[1]:  # a loop, not a comprehension: one frame fewer per send
            responses.append((receiver, receiver(sender, **payload)))
        return responses

    def notify(self, sender: Any, payload: dict[str, Any]) -> None:
        """``send(sender, **payload)`` without collecting what the receivers return, for the hook runner, which
        sends every hook: the payload arrives as one dict, not copied into keyword arguments of this call, and
        the route is looked up here, not in one more call."""
        if self.is_muted:
            return
        route = self._routes.get(id(sender))
        if route is None or route[0]() is not sender:
            route = self._build_route(sender)
        for receiver in route[1]:
            receiver(sender, **payload)

    def receivers_of(self, sender: Any) -> tuple[Callable[..., Any], ...]:
        """The receivers that a send from ``sender`` calls, in order."""
        return self._route_of(sender)[1]

    def unread_by_receivers_of(self, sender: Any) -> frozenset[str]:
        """The payload entries that no receiver of ``sender`` reads: its sends may pass ``None`` for them."""
        return self._route_of(sender)[2]

    def _route_of(self, sender: Any) -> tuple[Any, tuple[Callable[..., Any], ...], frozenset[str]]:
        route = self._routes.get(id(sender))
        if route is None or route[0]() is not sender:
            route = self._build_route(sender)
        return route

    def _build_route(self, sender: Any) -> tuple[Any, tuple[Callable[..., Any], ...], frozenset[str]]:
        # Resolving weak references once per connect, not once per send, is what makes sends cheap.
        # The cached tuple holds strong references only until the next connect or disconnect,
        # which every Trainer run does in its `finally`.
        receivers = tuple(self.receivers_for(sender))
        unread = frozenset(self.payload).intersection(*(ignored_payload(receiver) for receiver in receivers))
        try:
            route = (weakref.ref(sender), receivers, unread)
        except TypeError:  # None, ints, strings: valid blinker senders that cannot be cached by identity
            return (lambda: sender, receivers, unread)
        self._routes[id(sender)] = route
        return route


def ignores(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a receiver (a hook function) that never reads the payload entries ``names``. When no receiver of a send
    reads an entry, the Trainer passes ``None`` for it instead of building it: ``on_train_batch_end``'s detached
    ``outputs`` cost a tensor per batch. An override in a subclass is not marked unless it says so itself."""
    def mark(receiver: Callable[..., Any]) -> Callable[..., Any]:
        receiver.ignored_payload = frozenset(names)  # type: ignore[attr-defined]
        return receiver

    return mark


def ignored_payload(receiver: Callable[..., Any]) -> frozenset[str]:
    """The payload entries ``receiver`` is marked as never reading (a bound method: its function's mark)."""
    marked = getattr(getattr(receiver, "__func__", receiver), "ignored_payload", None)
    return marked if isinstance(marked, frozenset) else frozenset()  # a mock has every attribute


class EventNamespace(Namespace):
    """A blinker namespace whose signals are ``Event`` objects."""

    def signal(self, name: str, doc: str | None = None, payload: tuple[str, ...] = ()) -> Event:
        if name not in self:
            self[name] = Event(name, doc, payload)
        return self[name]
