"""Checking a course's ``kubespawner_override`` against KubeSpawner's own settings.

KubeSpawner applies an override with ``setattr``: a misspelt name is silently
ignored, and a value of the wrong type fails only when a student starts a
server. Here both are found when the course file is read, with its line.
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
from typing import Any

from traitlets import HasTraits, TraitError


@functools.lru_cache(maxsize=1)
def _settings_class() -> type[HasTraits]:
    """A bare HasTraits class with KubeSpawner's configurable traits: values are
    checked by the very same trait types, without a spawner or a cluster."""
    from kubespawner import KubeSpawner

    traits = KubeSpawner.class_traits(config=True)
    return type(
        "KubeSpawnerSettings",
        (HasTraits,),
        {n: copy.copy(t) for n, t in traits.items()},
    )


def override_problem(key: Any, value: Any) -> str | None:
    """Why ``key: value`` cannot be a KubeSpawner override, or None if it can."""
    settings = _settings_class()
    names = settings.class_trait_names()
    if not isinstance(key, str) or key not in names:
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{key!r} is not a KubeSpawner setting{hint}"
    try:
        setattr(settings(), key, value)
    except (TypeError, ValueError) as e:  # a validator that does not expect the type
        return f"{key}: a {type(value).__name__} is not accepted ({e})"
    except TraitError as e:
        why = re.sub(r"^The '[^']*' trait of an? \w+ instance ", "", str(e).strip())
        return f"{key}: {why}"
    return None
