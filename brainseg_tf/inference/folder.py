"""Predicting a case folder or a whole dataset folder into a prediction folder.

The folder's file names and its ``predictions.json`` belong to :mod:`brainseg_tf.io.predictions`;
this module decides what to predict (skipping complete cases), reads one case ahead while the
current one is predicted, and records each case.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from brainseg_tf import io as bio
from brainseg_tf import uncertainty as unc
from brainseg_tf.inference.case import check_scheme, model_modalities, predict_case
from brainseg_tf.inference.ensemble import Ensemble, as_predictor
from brainseg_tf.inference.predictor import Predictor
from brainseg_tf.inference.window import check_window_arguments
from brainseg_tf.io import predictions as folder_files
from brainseg_tf.io.labels import get_convention
from brainseg_tf.progress import progress as show_progress


class ReadAhead:
    """The images of ``refs``, read one case ahead in a thread (:func:`predict_folder`).

    Reading is gunzip and I/O, which release the GIL, so the next case is read while the current
    one is predicted; at most two cases' images are in memory. :meth:`take` must be called for
    the refs in order; a read error is raised there, for that case only.
    """

    def __init__(self, refs: Sequence[bio.CaseRef]):
        self._refs = iter(refs)
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: tuple[str, Any] | None = None
        self.waited = 0.0
        self._read_next()

    def _read_next(self) -> None:
        ref = next(self._refs, None)
        self._pending = None if ref is None else (ref.case_id, self._pool.submit(bio.read_case, ref, load_label=False))

    def take(self, ref: bio.CaseRef) -> bio.Case:
        """``ref``'s case (:attr:`waited`: the seconds spent waiting for it); the next read starts."""
        assert self._pending is not None and self._pending[0] == ref.case_id, (ref.case_id, self._pending)
        future, start = self._pending[1], time.perf_counter()
        try:
            return future.result()
        finally:
            self.waited = time.perf_counter() - start
            self._pending = None
            self._read_next()

    def close(self) -> None:
        if self._pending is not None:
            self._pending[1].cancel()
        self._pool.shutdown(wait=True)


def _checked_refs(
    input: str | Path,
    out_dir: Path,
    convention: str | None,
    case_ids: Sequence[str] | None,
    options: dict,
    scheme: str | None = None,
) -> list[bio.CaseRef]:
    """The cases to predict (in the stated ``scheme``, else each id's); every argument checked
    before any case is read."""
    if convention is not None:
        get_convention(convention)
    check_window_arguments(**options)
    kind = options.get("uncertainty")
    if kind not in (None, False, True) and kind not in unc.KINDS:
        raise ValueError(f"uncertainty={kind!r} is unknown; expected one of {list(unc.KINDS)}")
    ds = bio.open_dataset(input, scheme=scheme)
    if case_ids is not None:
        unknown = sorted(set(case_ids) - set(ds.case_ids))
        if unknown:
            raise ValueError(f"case id(s) {unknown} are not in {input} ({len(ds.case_ids)} cases)")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: is a file, expected an output folder")
    return list(ds.refs if case_ids is None else [ds.ref(cid) for cid in case_ids])


def _complete(out_dir: Path, case_id: str, probabilities: bool, uncertainty: bool, scored: set[str]) -> bool:
    """Whether every output of a case is in place, its summary record included (a run killed
    before writing the summary re-predicts that case instead of losing its score)."""
    return (
        folder_files.label_path(out_dir, case_id).exists()
        and (not probabilities or folder_files.probabilities_path(out_dir, case_id).exists())
        and (not uncertainty or (folder_files.uncertainty_path(out_dir, case_id).exists() and case_id in scored))
    )


def _predict_one(
    pred: Predictor | Ensemble,
    ahead: ReadAhead,
    ref: bio.CaseRef,
    record: dict[str, Any],
    *,
    out_dir: Path,
    convention: str | None,
    save_probabilities: bool,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Predict and write one case; its record, ``"written"``."""
    # The image is passed on, not kept here: predict_case frees it once preprocessed.
    result = predict_case(pred, ahead.take(ref), return_probabilities=save_probabilities, release_image=True, **options)
    result.seconds += ahead.waited
    if save_probabilities:
        record["probabilities"] = str(result.write_probabilities(folder_files.probabilities_path(out_dir, ref.case_id)))
    if result.uncertainty is not None:
        record |= {
            "uncertainty": result.uncertainty_score,
            "uncertainty_kind": result.uncertainty_kind,
            "uncertainty_map": str(result.write_uncertainty(folder_files.uncertainty_path(out_dir, ref.case_id))),
        }
    result.write(folder_files.label_path(out_dir, ref.case_id), convention=convention)
    return record | {"status": "written", "seconds": result.seconds}


def predict_folder(
    model: Predictor | Ensemble | str | Path | Sequence[str | Path] | Any,
    input: str | Path,
    out_dir: str | Path,
    *,
    convention: str | None = None,
    save_probabilities: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stop_on_error: bool = False,
    case_ids: Sequence[str] | None = None,
    scheme: str | None = None,
    map_scheme: bool = False,
    **predict_kwargs: Any,
) -> list[dict[str, Any]]:
    """Segment one case folder or every case of a dataset folder and write NIfTI label maps.

    Writes ``out_dir/<case_id>.nii.gz`` (uint8 labels in ``convention``, by default the source's
    values -- a non-canonical scheme's case (PED 2024, GLI 2024 with RC) in its scheme's values, the
    header stamped with the scheme --, with the source's affine and header; atomic writes) and, with ``save_probabilities``, ``out_dir/<case_id>_prob.nii.gz``
    (float32 ``(X, Y, Z, K)``). With ``uncertainty=`` (passed to :func:`predict_case`) it also
    writes ``out_dir/<case_id>_uncertainty.nii.gz`` (float32 ``(X, Y, Z)``, same affine) and
    ``out_dir/predictions.json``: each case's uncertainty score and the cases ranked from the
    most to the least uncertain (for review). Arguments are checked before any case is read; a
    failing case is recorded and the next one predicted.

    Args:
        model: a :class:`Predictor`/:class:`Ensemble`, a path for
            :func:`~brainseg_tf.inference.load_predictor`, or a list of paths combined into an
            :class:`Ensemble` (loaded once).
        input: a case folder (``CASE_DIR``) or a dataset folder of any layout
            :func:`brainseg_tf.io.open_dataset` reads.
        out_dir: output folder (created).
        convention: label convention of the written files (``"brats"``, ``"brats2023"``,
            ``"msd"``, ``"canonical"``); default: each source's own.
        save_probabilities: also write the probability maps.
        overwrite: re-predict cases whose output exists (default: skip them).
        progress: progress bar over cases.
        stop_on_error: raise on the first failing case (default: record it and go on).
        case_ids: segment only these cases of the dataset (e.g. a run's validation split).
        scheme: state the data's label scheme (default: each case id's task prefix decides).
        map_scheme: predict cases of another scheme whose internal labels and regions include
            the model's (:func:`~brainseg_tf.inference.check_scheme`).
        **predict_kwargs: passed to :func:`predict_case` (``window``, ``overlap``, ``tta``, ...).

    Returns:
        One record per case: ``{"case_id", "status": "written"|"skipped"|"failed", "path",
        "probabilities", "seconds", "error"}``, plus ``"uncertainty"`` (the case score) and
        ``"uncertainty_map"`` (its file) with ``uncertainty=``.

    Raises:
        ValueError: an unknown ``convention`` or ``scheme``, bad window arguments, case ids not in
            the dataset, or a case of a label scheme the model was not trained on (checked for every
            case before any is read: :func:`~brainseg_tf.inference.check_scheme`).
        brainseg_tf.io.DataError / MissingFileError: ``input`` is not a dataset or case folder, or
            a case has no file for a modality the model reads (checked before any case is read).
    """
    out_dir = Path(out_dir)
    todo = _checked_refs(input, out_dir, convention, case_ids, predict_kwargs, scheme)
    want_uncertainty = predict_kwargs.get("uncertainty") not in (None, False)
    pred = as_predictor(model)
    modalities = model_modalities(pred)
    for ref in todo:
        check_scheme(pred.scheme, ref, map_scheme=map_scheme)
        bio.require_modalities(ref, modalities)
    predict_kwargs = {**predict_kwargs, "map_scheme": map_scheme}
    out_dir.mkdir(parents=True, exist_ok=True)
    scored = folder_files.scored_cases(out_dir) if want_uncertainty and not overwrite else set()
    skip = [not overwrite and _complete(out_dir, r.case_id, save_probabilities, want_uncertainty, scored) for r in todo]
    refs: Iterable = todo
    if progress:
        refs = show_progress(todo, desc="predict")
    records: list[dict[str, Any]] = []
    ahead = ReadAhead([ref for ref, done in zip(todo, skip) if not done])
    try:
        for i, ref in enumerate(refs):
            record: dict[str, Any] = {
                "case_id": ref.case_id,
                "path": str(folder_files.label_path(out_dir, ref.case_id)),
                "probabilities": None,
                "seconds": 0.0,
                "error": None,
            }
            if want_uncertainty:
                record |= {"uncertainty": None, "uncertainty_map": None}
            if skip[i]:
                records.append(record | {"status": "skipped"})
                continue
            try:
                records.append(
                    _predict_one(
                        pred,
                        ahead,
                        ref,
                        record,
                        out_dir=out_dir,
                        convention=convention,
                        save_probabilities=save_probabilities,
                        options=predict_kwargs,
                    )
                )
            except Exception as exc:  # noqa: BLE001 — one bad case must not stop the folder
                if stop_on_error:
                    raise
                records.append(record | {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
            if want_uncertainty:  # after every case, the cases still to come keeping their records:
                # a kill loses at most the case being predicted
                later = [{"case_id": r.case_id, "status": "skipped"} for r in todo[i + 1 :] if r.case_id in scored]
                folder_files.write_prediction_summary(out_dir, records + later, convention=convention)
    finally:
        ahead.close()
    return records


__all__ = ["predict_folder", "ReadAhead"]
