"""The main job (``make demo``): synthesize data, read it, summarise it and draw it.

Later stages (train, predict, evaluate) are added here as they land; the report lists what ran.
"""

from __future__ import annotations

import time
from pathlib import Path


def run_demo(out: str | Path = "runs/demo", *, quick: bool = False, seed: int = 0) -> Path:
    """Run the main job into ``out`` and return the path of its Markdown report.

    Args:
        out: run folder (created; re-running overwrites its files atomically).
        quick: tiny volumes, for tests.
        seed: seed of the synthetic dataset.
    """
    from brainseg_tf import io, synthetic, viz

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    shape = (64, 64, 48) if quick else (240, 240, 155)
    n_cases = 3 if quick else 8
    data_dir = synthetic.make_dataset(out / "data", layout="brats2021", n_cases=n_cases, seed=seed, shape=shape)
    summary = io.format_summary(io.dataset_summary(data_dir))
    print(summary)
    ds = io.open_dataset(data_dir)
    case = ds[0]
    fig_path = out / "figures" / f"{case.case_id}_overlay.png"
    viz.show_case(case.image, case.label, title=f"{case.case_id} (synthetic)", save=fig_path)
    report = out / "report.md"
    lines = [
        "# brainseg_tf demo report",
        "",
        f"- synthetic dataset: `{data_dir}` ({len(ds)} cases, shape {case.shape})",
        f"- wall time: {time.time() - t0:.1f} s",
        "",
        "## Dataset summary",
        "",
        "```",
        summary,
        "```",
        "",
        "## Figures",
        "",
        f"![{case.case_id}]({fig_path.relative_to(out)})",
        "",
    ]
    tmp = report.with_name(".report.md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(report)
    return report
