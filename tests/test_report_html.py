"""``dnnmap report --html``: one self-contained page, opened for real in headless Chromium
(installed by ``make``): the DOM is what we wrote, the sort script ran, and no request leaves
the file (a NetLog of the page's requests, with every host name mapped to nowhere)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dnnmap.cli.main import app

TINY = """import torch


def build():
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))
"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--host-resolver-rules=MAP * ~NOTFOUND"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make` installs Debian's chromium (apt-get install chromium)")
        pytest.skip("chromium not installed (make installs it where apt-get is available)")
    return exe


def browse(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", *extra, page.resolve().as_uri()]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def external_refs(page: str) -> list[str]:
    """src / href / url(...) / @import targets that are neither in-page anchors nor data: URIs."""
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page, re.I)
    refs += re.findall(r"""url\(\s*["']?([^"')]*)""", page, re.I)
    refs += re.findall(r"""@import\s+["']?([^"';\s]+)""", page, re.I)
    return [r for r in refs if not r.startswith(("#", "data:"))]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    d = tmp_path_factory.mktemp("report")
    (d / "tiny.py").write_text(TINY)
    out = d / "report.html"
    r = CliRunner().invoke(app, ["report", f"{d / 'tiny.py'}:build", "--input-shape", "64", "-H", "h100-sxm5",
                                 "-p", "bf16", "--mode", "eager", "--html", str(out)])
    assert r.exit_code == 0, r.output
    return out, out.read_text()


def test_the_page_is_self_contained(report: tuple[Path, str]) -> None:
    _, page = report
    assert external_refs(page) == []
    assert not re.search(r"<(link|iframe|object|embed|img)\b", page, re.I)
    assert "default-src 'none'" in page  # and the browser would refuse anything else anyway
    assert page.count("<svg") == 3 and page.count('<tr class="kernel"') == 3  # Linear, GELU, Linear (eager)


def test_chromium_renders_it_and_no_request_leaves_the_file(report: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = report
    netlog = tmp_path / "net.json"
    r = browse(path, tmp_path, f"--log-net-log={netlog}", "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert 'data-ready="1"' in dom  # the inline sort script ran
    assert dom.count('<tr class="kernel"') == 3 and dom.count("<svg") == 3
    for section in ("Per kernel (3)", "Summary", "Provenance", "Coverage ledger", 'id="ledger"', "Every op has a cost rule"):
        assert section in dom
    assert 'id="kernels" class="sortable"' in dom and "989.4" in dom or "matrix bf16" in dom
    # the page's own requests carry its file:// isolation key; the browser's background ones don't
    assert page_requests(netlog) == []
    # the check sees a request when a page makes one (a control page with a remote image)
    control = tmp_path / "control.html"
    control.write_text('<html><body><img src="http://example.invalid/x.png"></body></html>')
    r = browse(control, tmp_path, f"--log-net-log={tmp_path / 'control.json'}", "--dump-dom")
    assert page_requests(tmp_path / "control.json") == ["http://example.invalid/x.png"]


def page_requests(netlog: Path) -> list[str]:
    """URLs a page loaded from the network: they carry its file:// isolation key (the browser's
    own background requests do not)."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in log["events"] if e["type"] == start
            and "file://" in e["params"].get("network_isolation_key", "")]


def test_a_screenshot_of_the_page(report: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = report
    shot = tmp_path / "shot.png"
    r = browse(path, tmp_path, f"--screenshot={shot}", "--window-size=1280,1600", "--hide-scrollbars")
    assert r.returncode == 0, r.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 1600)


def test_report_refuses_to_overwrite_and_names_unknown_devices(report: tuple[Path, str]) -> None:
    path, _ = report
    r = CliRunner().invoke(app, ["report", "resnet18", "-H", "h100-sxm5", "--html", str(path)])
    assert r.exit_code == 2 and "exists" in r.output
    r = CliRunner().invoke(app, ["report", "resnet18", "-H", "h100-sxm9", "--html", str(path.with_name("x.html"))])
    assert r.exit_code == 2 and "unknown hardware 'h100-sxm9'" in r.output
