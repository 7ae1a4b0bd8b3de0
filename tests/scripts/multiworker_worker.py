"""One worker of the 2-process MultiWorkerMirroredStrategy test.

Usage: ``TF_CONFIG=... python multiworker_worker.py RECIPE.json RUN_DIR OUT.npz``. Trains the recipe
with :func:`brainseg_tf.training.train` (strategy ``auto`` picks MultiWorkerMirroredStrategy from
``TF_CONFIG``) and saves this worker's final weights to ``OUT.npz``.
"""

from __future__ import annotations

import sys

import numpy as np


def main() -> int:
    recipe, run_dir, out = sys.argv[1:4]
    from brainseg_tf.training import train

    result = train(recipe, run_dir=run_dir)
    weights = {f"w{i}": np.asarray(w) for i, w in enumerate(result.model.get_weights())}
    np.savez(out, is_chief=np.asarray(result.is_chief), epochs=np.asarray(result.epochs_completed), **weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
