"""Screenshots of a run in optuna-dashboard and in TensorBoard's HParams tab, taken in
headless Chromium (Debian's ``chromium`` package, driven by Playwright).

    python docs/screenshots/take.py RUN_DIR [--out docs/screenshots]

It starts ``optuna-dashboard sqlite:///RUN_DIR/optuna.db`` and, after writing the run's
TensorBoard files into a temporary LOGDIR (``python -m flaxmnist.report RUN_DIR
--tensorboard LOGDIR``), ``tensorboard --logdir LOGDIR``, each on 127.0.0.1 on a free port,
opens their pages as a reader would, and saves ``optuna-dashboard.png``,
``optuna-dashboard-history.png``, ``tensorboard-hparams-table.png`` and
``tensorboard-hparams-parallel.png``. Both servers are stopped at the end, whatever happens.
Needs ``pip install playwright 'flaxmnist[dashboard,tensorboard]'`` (no browser download:
it uses /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(command: list[str], url: str, timeout: float = 90):
    """Run ``command`` until the block ends, once ``url`` answers."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[0]} did not answer at {url}") from None
                time.sleep(0.3)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name) or name


def dashboard(page, run_dir: Path, out: Path) -> None:
    port = free_port()
    command = [tool("optuna-dashboard"), f"sqlite:///{run_dir.resolve() / 'optuna.db'}",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with server(command, f"http://127.0.0.1:{port}/api/studies"):
        page.goto(f"http://127.0.0.1:{port}/dashboard/studies/1", wait_until="networkidle")
        page.wait_for_timeout(3000)
        page.screenshot(path=str(out / "optuna-dashboard.png"))
        page.goto(f"http://127.0.0.1:{port}/dashboard/studies/1/analytics",
                  wait_until="networkidle")  # fmt: skip
        page.wait_for_timeout(3000)
        page.screenshot(path=str(out / "optuna-dashboard-history.png"), full_page=True)


def hparams(page, run_dir: Path, out: Path) -> None:
    logdir = Path(tempfile.mkdtemp(prefix="flaxmnist-tb-"))
    subprocess.run([sys.executable, "-m", "flaxmnist.report", str(run_dir), "--tensorboard",
                    str(logdir)], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    port = free_port()
    command = [tool("tensorboard"), "--logdir", str(logdir), "--host", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
    try:
        with server(command, f"http://127.0.0.1:{port}/"):
            page.goto(f"http://127.0.0.1:{port}/#hparams", wait_until="networkidle")
            page.wait_for_timeout(8000)
            page.screenshot(path=str(out / "tensorboard-hparams-table.png"))
            page.get_by_text("PARALLEL COORDINATES VIEW").click()
            page.wait_for_timeout(4000)
            # A reader's choices: the learning rate's axis logarithmic (the third axis:
            # dropout, input_dropout, learning_rate), lines coloured by holdout accuracy.
            page.get_by_text("Logarithmic").nth(2).click()
            menu = page.locator("paper-dropdown-menu[label='Color by']:visible")
            menu.click()
            menu.locator("paper-item", has_text="val_accuracy").first.click()
            page.wait_for_timeout(2000)
            page.screenshot(path=str(out / "tensorboard-hparams-parallel.png"))
    finally:
        shutil.rmtree(logdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        dashboard(page, args.run_dir, args.out)
        hparams(page, args.run_dir, args.out)
        browser.close()
    print(f"wrote the screenshots into {args.out}")


if __name__ == "__main__":
    main()
