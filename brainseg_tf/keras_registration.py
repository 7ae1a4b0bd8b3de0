"""Register brainseg_tf's Keras objects whenever Keras is imported, without importing it ourselves.

``import brainseg_tf`` must stay free of TensorFlow (``brainseg info`` and the readers start in
well under a second), yet a user who then imports Keras and calls ``keras.saving.load_model`` on
a ``.keras`` file of ours needs our layers, losses, metrics and schedules registered. If Keras is
already imported they are registered at once; otherwise an import hook registers them as soon as
the ``keras`` package has finished importing -- or, when one of our own modules is what imported
Keras, as soon as that module has finished (so that no module is registered half-initialised).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

#: The modules whose import registers custom Keras objects.
KERAS_MODULES = ("brainseg_tf.models", "brainseg_tf.losses", "brainseg_tf.metrics", "brainseg_tf.training.schedules")

_done = False
_importing = 0  # brainseg_tf modules being executed right now


def register() -> None:
    """Import every registering module (idempotent)."""
    global _done
    if _done:
        return
    _done = True
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Hook)]
    for name in KERAS_MODULES:
        importlib.import_module(name)


def _maybe_register() -> None:
    if not _done and _importing == 0 and "keras" in sys.modules:
        register()


class _Hook(importlib.abc.MetaPathFinder):
    """Finds ``keras`` and ``brainseg_tf.*`` with the normal machinery and watches them execute."""

    _searching = False

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if _done or self._searching or not (fullname == "keras" or fullname.startswith("brainseg_tf.")):
            return None
        self._searching = True  # a probe (importlib.util.find_spec) may come before the real import
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._searching = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module
        ours = fullname != "keras"

        def exec_module(module: Any) -> None:
            global _importing
            _importing += ours
            try:
                original(module)
            finally:
                _importing -= ours
            _maybe_register()

        spec.loader.exec_module = exec_module  # this loader instance serves this one module
        return spec


def install() -> None:
    """Register now if Keras is loaded, else once it is."""
    if "keras" in sys.modules:
        register()
    elif not any(isinstance(f, _Hook) for f in sys.meta_path):
        sys.meta_path.insert(0, _Hook())
