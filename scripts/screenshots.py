"""Take the docs' screenshots of the web page: a desktop (1280x800) and a phone (390x844).

Usage::

    .venv/bin/python scripts/screenshots.py [SERVER_URL] [--out docs/images]
        [--id DID_OR_OBS_ID | --target NAME]

SERVER_URL is the DaCHS server's root (default http://127.0.0.1:8080, where
``vo-similarity publish`` put the built-in sample). The page opens on one
query image (by default the first match of the target name "M 31") with a few
neighbours marked similar and one marked not similar, as a user mid-way
through a refinement sees it, and is shot at both sizes as
``web-desktop.png`` and ``web-phone.png``. Only reads from the server.

The browser is Debian's Chromium (``apt-get install chromium``) driven by
Playwright (the dev extra), never a browser Playwright downloads.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

log = logging.getLogger("screenshots")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]
SIZES = {"web-desktop.png": (1280, 800), "web-phone.png": (390, 844)}
PAGE_PATH = "/similarity/q/web/custom/"


def api(page_url: str, op: str, **params) -> dict:
    url = f"{page_url}api/{op}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=60) as reply:
        return json.load(reply)


def choose_state(page_url: str, ident: str | None, target: str) -> str:
    """The URL hash of the shot: the query, its model, three marked similar, one not."""
    model = api(page_url, "config")["default_model"]
    if ident is None:
        found = api(page_url, "lookup", target=target)["images"]
        image = found[0] if found else api(page_url, "random", model=model)["image"]
        ident = image["obs_publisher_did"]
    rows = api(page_url, "neighbours", id=ident, model=model, n=10)["results"]
    did = api(page_url, "image", id=ident)["image"]["obs_publisher_did"]

    def enc(dids: list[str]) -> str:
        return ",".join(urllib.parse.quote(d, safe="") for d in dids)

    sim = [rows[i]["obs_publisher_did"] for i in (0, 1, 3)]
    return (f"id={urllib.parse.quote(did, safe='')}&model={model}&page=1&sim={enc(sim)}"
            f"&not={enc([rows[5]['obs_publisher_did']])}&view=neighbours")


def wait(page, expression: str, timeout: float = 60) -> None:
    """Poll ``expression`` (not wait_for_function: the page's CSP forbids its eval)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page did not get to: {expression}")
        time.sleep(0.1)


def shoot(server: str, out: Path, ident: str | None, target: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    page_url = server.rstrip("/") + PAGE_PATH
    state = choose_state(page_url, ident, target)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for name, (width, height) in SIZES.items():
                context = browser.new_context(viewport={"width": width, "height": height})
                page = context.new_page()
                page.goto(f"{page_url}#{state}")
                wait(page, "document.body.dataset.state === 'ready'")
                # every thumbnail loaded (lazy ones too), then back to the top
                page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
                wait(page, "[...document.querySelectorAll('#grid img.thumb')]"
                           ".every(i => i.complete)")
                page.evaluate("window.scrollTo(0, 0)")
                wide = page.evaluate("document.documentElement.scrollWidth")
                if wide > width:
                    log.warning("%s: the page is %d px wide in a %d px window", name, wide,
                                width)
                page.screenshot(path=out / name)
                written.append(out / name)
                log.info("wrote %s (%dx%d)", out / name, width, height)
                context.close()
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server", nargs="?", default="http://127.0.0.1:8080",
                        help="the DaCHS server's root URL (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "docs" / "images",
                        help="folder of the PNG files (default docs/images)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--id", help="obs_publisher_did or obs_id of the query image")
    group.add_argument("--target", default="M 31",
                       help="target name of the query image (default %(default)r)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not Path(CHROMIUM).exists():
        log.error("%s is missing: apt-get install chromium", CHROMIUM)
        return 1
    shoot(args.server, args.out, args.id, args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
