"""Regenerate the README's screenshots in ``docs/screenshots/`` with headless Chromium.

Usage (after ``make docs-example``, which leaves the full demo in ``runs/demo``)::

    python docs/make_screenshots.py [--demo runs/demo] [--out docs/screenshots]

* ``notebook_01.png``: notebook 01 executed on small synthetic data, exported to HTML as a reader
  of the notebook sees it, top of the page;
* ``viewer.png``: the demo report's viewer page of its best held-out case (synthetic data).

Debian's ``chromium`` package draws both (``make browser`` installs it).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLAGS = ("--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--hide-scrollbars")


def screenshot(page: Path, out: Path, size: tuple[int, int]) -> Path:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("chromium not found: apt-get install chromium (or make browser)")
    cmd = [exe, *FLAGS, "--virtual-time-budget=20000", f"--window-size={size[0]},{size[1]}", f"--screenshot={out}"]
    subprocess.run([*cmd, page.resolve().as_uri()], check=True, capture_output=True, timeout=180)
    return out


def notebook_page(work: Path) -> Path:
    """Notebook 01 on two small synthetic cases, executed and exported to HTML."""
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    executed = work / "01.out.ipynb"
    papermill.execute_notebook(
        str(HERE.parent / "notebooks" / "01_explore_data.ipynb"),
        str(executed),
        parameters={"WORK_DIR": str(work), "SYNTHETIC_CASES": 2, "SYNTHETIC_SHAPE": [96, 96, 72]},
        cwd=str(HERE.parent / "notebooks"),
        kernel_name="python3",
        progress_bar=False,
    )
    page = work / "01.html"
    page.write_text(HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))[0], encoding="utf-8")
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=HERE.parent / "runs" / "demo")
    parser.add_argument("--out", type=Path, default=HERE / "screenshots")
    args = parser.parse_args()
    viewers = sorted((args.demo / "viewers").glob("*.html"))
    if not viewers:
        raise SystemExit(f"{args.demo}/viewers holds no viewer page: run `make docs-example` first")
    args.out.mkdir(parents=True, exist_ok=True)
    best = (args.demo / "report.md").read_text().split("](viewers/")[1].split(".html")[0]
    print(screenshot(args.demo / "viewers" / f"{best}.html", args.out / "viewer.png", (1280, 900)))
    with tempfile.TemporaryDirectory() as tmp:
        print(screenshot(notebook_page(Path(tmp)), args.out / "notebook_01.png", (1100, 1500)))


if __name__ == "__main__":
    main()
