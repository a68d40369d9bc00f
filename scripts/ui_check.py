"""`make ui-check`: the MLflow UI, in a real browser, shows the comparison as a person
needs it.

Runs the quickstart (vectorized engine) into a fresh store in a temporary folder,
starts `mlflow ui` on a free port of 127.0.0.1 and opens, in headless Chromium:

- the runs link `decentral-bench run` printed: every child run listed by name under its
  scenario run's group, the comparison's key metrics as columns, the experiment's
  description, MLflow's "Model training" sidebar;
- the scenario (parent) run link it printed, and from its description the link to a
  child run: each in the "Model training" view, not MLflow's GenAI pages.

Screenshots of these pages and of the parent's accuracy plot go to `--screenshots`.
Everything it starts is stopped by its process id, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# A closed network refuses Chromium's background connections; these flags stop them.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--window-size=1600,1000")
LINK = re.compile(r"then the runs: (http://\S+)")
RUN_LINK = re.compile(r"and the scenario run: (http://\S+)")
# What the "Model training" sidebar shows, and what only the GenAI one does.
MODEL_TRAINING = "Model registry"
GENAI_ONLY = "Evaluation runs"
COLUMNS = ("metrics.`test_accuracy_mean`", "metrics.`epochs`", "metrics.`consensus_distance`",
           "metrics.`bytes_moved_total`", "metrics.`wall_time_s`")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen) -> None:
    """End a process started in a session of its own, and its children, by its id."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


@contextmanager
def mlflow_ui(uri: str, folder: Path) -> Iterator[int]:
    """`mlflow ui` over `uri` on a free port, until the block ends; yields the port."""
    port = free_port()
    log = (folder / "mlflow-ui.log").open("wb")
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host",
         "127.0.0.1", "--port", str(port), "--workers", "1"], cwd=folder, stdout=log,
        stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    tail = (folder / "mlflow-ui.log").read_text(errors="replace")[-3000:]
                    raise SystemExit(f"mlflow ui did not start:\n{tail}") from None
                time.sleep(1)
        yield port
    finally:
        stop(process)
        log.close()


def chromium(browser: str, profile: Path, *arguments: str, timeout: float = 120) -> str:
    """Run headless Chromium with a fresh profile; its standard output."""
    shutil.rmtree(profile, ignore_errors=True)
    process = subprocess.Popen([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                *arguments], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        stop(process)
    return output.decode(errors="replace")


def rendered(browser: str, profile: Path, url: str, expected: list[str],
             unexpected: tuple[str, ...] = ()) -> str:
    """The page's DOM once it shows every expected text (three tries, longer each); it
    must show none of the unexpected ones."""
    page = ""
    for budget in (15_000, 30_000, 60_000):
        page = chromium(browser, profile, f"--virtual-time-budget={budget}", "--dump-dom", url)
        if all(text in page for text in expected):
            break
    missing = [text for text in expected if text not in page]
    if missing:
        raise SystemExit(f"the page at {url} does not show {missing}")
    shown = [text for text in unexpected if text in page]
    if shown:
        raise SystemExit(f"the page at {url} shows {shown}")
    return page


def child_links(page: str) -> list[str]:
    """The links to child runs' pages in a rendered parent page's description."""
    return sorted(set(re.findall(r'href="(#/experiments/\d+/runs/[0-9a-f]{32}'
                                 r'\?workflowType=machine_learning)"', page)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshots", type=Path, default=REPO / "build" / "ui-check")
    options = parser.parse_args()
    browser = next((name for name in BROWSERS if shutil.which(name)), None)
    if browser is None:
        raise SystemExit("no Chromium found: install Debian's chromium (make ui-check does)")
    options.screenshots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ui-check-") as temporary:
        folder = Path(temporary)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        done = subprocess.run(
            [sys.executable, "-m", "decentral_bench", "run", str(REPO / "scenarios" /
             "quickstart.yaml"), "--engine", "vectorized", "--tracking-uri", uri],
            cwd=folder, capture_output=True, text=True, timeout=900, check=False)
        printed, printed_run = LINK.search(done.stdout), RUN_LINK.search(done.stdout)
        if done.returncode != 0 or printed is None or printed_run is None:
            raise SystemExit(f"the quickstart run failed or printed no links:\n{done.stdout}"
                             f"\n{done.stderr}")
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("quickstart")
        runs = client.search_runs([experiment.experiment_id])
        parent = next(run for run in runs if run.data.tags.get("kind") == "scenario")
        children = sorted(run.info.run_name for run in runs if run is not parent)
        with mlflow_ui(uri, folder) as port:
            base = f"http://127.0.0.1:{port}"
            link = printed.group(1).replace("http://127.0.0.1:5000", base)
            profile = folder / "chromium-profile"
            group = f"Group: {parent.info.run_name}"
            rendered(browser, profile, link,
                     [*children, "quickstart</strong>: CDSGD, CDMSGD", group, MODEL_TRAINING,
                      *(f'col-id="{column}"' for column in COLUMNS)], (GENAI_ONLY,))
            print(f"ok: {link} lists {', '.join(children)} under '{group}', with the "
                  f"columns {', '.join(COLUMNS)}, in the Model training view")
            parent_link = printed_run.group(1).replace("http://127.0.0.1:5000", base)
            page = rendered(browser, profile, parent_link,
                            [parent.info.run_name, MODEL_TRAINING, "Runs: "], (GENAI_ONLY,))
            links = child_links(page)
            if len(links) != len(children):
                raise SystemExit(f"the parent's description links {len(links)} child runs, "
                                 f"not {len(children)}")
            child = f"{base}/{links[0]}"
            rendered(browser, profile, child, [MODEL_TRAINING, "Model metrics"], (GENAI_ONLY,))
            print(f"ok: the scenario run {parent_link} and its child {child} open in the "
                  "Model training view")
            runs_view = f"{base}/#/experiments/{experiment.experiment_id}/runs"
            view = "?workflowType=machine_learning"
            pages = {"runs.png": link, "parent.png": parent_link, "child.png": child,
                     "accuracy.png": f"{runs_view}/{parent.info.run_id}/artifacts/plots/"
                                     f"test_accuracy_mean.png{view}"}
            for name, url in pages.items():
                chromium(browser, profile, "--virtual-time-budget=30000",
                         f"--screenshot={options.screenshots / name}", url)
    print(f"screenshots in {options.screenshots}")


if __name__ == "__main__":
    main()
