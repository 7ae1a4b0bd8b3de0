"""Register brainseg_tf's Keras objects whenever Keras is imported, without importing it ourselves.

``import brainseg_tf`` must stay free of TensorFlow (``brainseg info`` and the readers start in
well under a second), yet a user who then imports Keras and calls ``keras.saving.load_model`` on
a ``.keras`` file of ours needs our layers, losses, metrics and schedules registered. If Keras is
already imported they are registered at once; otherwise a one-shot import hook registers them
right after the ``keras`` package has finished importing.
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


def register() -> None:
    """Import every registering module (idempotent)."""
    global _done
    if _done:
        return
    _done = True
    for name in KERAS_MODULES:
        importlib.import_module(name)


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Finds ``keras`` with the normal machinery and runs :func:`register` after it executed."""

    _searching = False

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname != "keras" or self._searching or _done:
            return None
        # A probe (``importlib.util.find_spec("keras")``) may come before the real import: the
        # hook stays in place until the registration has run.
        self._searching = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._searching = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AfterKerasImport)]
            register()

        loader.exec_module = exec_module  # this loader instance serves the keras package only
        return spec


def install() -> None:
    """Register now if Keras is loaded, else once it is."""
    if "keras" in sys.modules:
        register()
    elif not any(isinstance(f, _AfterKerasImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasImport())
