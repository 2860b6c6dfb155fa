"""Take the documentation's screenshots of pages filled with the demo data.

    .venv/bin/python docs/screenshots.py            # writes docs/img/*.png

It builds a throwaway demo site (SQLite and the filesystem broker in a temporary folder, so no
PostgreSQL, Redis or existing data is touched), with simulated judgments, an agreement report and
one trained reward model (MiniLM, a minute or two on a CPU), starts `runserver` on a free local
port, logs in through the login form as a demo account and saves each page in SHOTS at 1280x800
with Debian's Chromium. Add a page by adding a Shot.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def _rate_with_a_choice_made(page: Page) -> None:
    page.keyboard.press("1")  # left is better ...
    page.keyboard.press("w")  # ... clearly: the screenshot shows the controls in use


@dataclass(frozen=True, kw_only=True)
class Shot:
    file: str  # under docs/img/
    path: str  # the page
    user: str  # a demo account (demo-admin, demo-lead, demo-rater1..3)
    prepare: Callable[[Page], None] = field(default=lambda page: None)


SHOTS = [
    Shot(
        file="rate.png", path="/p/demo/rate/", user="demo-rater1", prepare=_rate_with_a_choice_made
    ),
    Shot(file="overview.png", path="/p/demo/", user="demo-admin"),
    Shot(file="batches.png", path="/p/demo/batches/", user="demo-admin"),
    Shot(file="agreement.png", path="/p/demo/agreement/", user="demo-lead"),
    Shot(file="training.png", path="/p/demo/training/", user="demo-lead"),
    Shot(file="leaderboard.png", path="/p/demo/leaderboard/", user="demo-lead"),
    Shot(file="pairs.png", path="/p/demo/pairs/?status=disputed", user="demo-lead"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)  # noqa: S603


def _wait_for(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("runserver exited before it was ready")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("runserver did not start within 30 s")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pairwise-shots-") as var:
        env = {
            k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")
        }
        env.update(DEBUG="true", PAIRWISE_VAR_DIR=var, LOG_LEVEL="WARNING")
        _manage(env, "migrate", "--noinput", "-v", "0")
        _manage(env, "demo", "--simulate", "450")
        # Data for the dashboards: a stored agreement report and one trained, published version.
        _manage(env, "agreement", "demo", "--store")
        _manage(env, "retrain", "demo", "--wait")
        logins = json.loads((Path(var) / "demo-logins.json").read_text())
        port = _free_port()
        server = subprocess.Popen(  # noqa: S603 - a fixed argv, no shell
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for(port, server)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
                )
                for shot in SHOTS:
                    context = browser.new_context(
                        viewport={"width": 1280, "height": 800},
                        base_url=f"http://127.0.0.1:{port}",
                    )
                    page = context.new_page()
                    page.goto(f"/login/?next={shot.path}")
                    page.get_by_label("Username").fill(shot.user)
                    page.get_by_label("Password").fill(logins[shot.user])
                    page.get_by_role("button", name="Log in").click()
                    page.wait_for_url(f"**{shot.path}")
                    page.wait_for_load_state("networkidle")
                    shot.prepare(page)
                    page.screenshot(path=str(OUT / shot.file))
                    print(f"wrote {OUT / shot.file}")
                    context.close()
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
