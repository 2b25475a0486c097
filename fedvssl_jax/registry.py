"""Small name -> factory registries (backbones, pretext tasks, strategies, data sources).

Components are picked by a string in the config, so configs stay declarative and a typo is a clear error
that lists what is available.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Generic, Iterator, TypeVar

from fedvssl_jax.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
  """A mapping from names to factories, filled with the `register` decorator.

  Example:
    BACKBONES = Registry("backbone")

    @BACKBONES.register("r3d_18")
    def r3d_18(**kwargs): ...

    model = BACKBONES.get("r3d_18")(rngs=...)
  """

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: Dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def decorator(obj: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is registered twice")
      self._entries[name] = obj
      return obj

    return decorator

  def get(self, name: str) -> T:
    try:
      return self._entries[name]
    except KeyError:
      known = ", ".join(sorted(self._entries)) or "(none)"
      raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: Any) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(sorted(self._entries))
