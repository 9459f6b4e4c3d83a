"""Headless Chromium for the report tests: screenshots and a layout probe.

``layout(report)`` loads a test-only copy of the report with a probe script added (the
report itself has no script), opens every ``<details>``, and writes into the DOM, for
``--dump-dom``: the page's and every table's scrollWidth and clientWidth, the tables' right
edges against their container, script errors, and whether each viewer frame drew its canvas.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--enable-logging=stderr",
    "--v=0",
]

PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
window.addEventListener('load', function () {
  document.querySelectorAll('details').forEach(function (d) { d.open = true; });
  var res = {viewport: window.innerWidth, page: document.documentElement.scrollWidth,
             tables: [], frames: [], errors: window.__errors};
  document.querySelectorAll('main table').forEach(function (t) {
    var box = t.getBoundingClientRect(), host = t.parentElement;
    var hbox = host.getBoundingClientRect();
    var pad = parseFloat(getComputedStyle(host).paddingRight);
    var h = t.closest('details, section');
    var title = '';
    var prev = t.previousElementSibling;
    if (prev && /^H[1-6]$/.test(prev.tagName)) title = prev.textContent;
    else if (h) { var s = h.querySelector('summary, h2, h3, h4'); title = s ? s.textContent : ''; }
    res.tables.push({title: title.trim().slice(0, 80), scrollWidth: t.scrollWidth,
                     clientWidth: t.clientWidth, right: Math.round(box.right),
                     hostRight: Math.round(hbox.right - pad),
                     width: Math.round(box.width)});
  });
  document.querySelectorAll('iframe').forEach(function (f) {
    var r = {title: f.title};
    try {
      var d = f.contentDocument, c = d && d.querySelector('canvas');
      r.canvas = c ? [c.width, c.height] : null;
      r.errors = (f.contentWindow.__errors || []).slice();
    } catch (e) { r.error = String(e); }
    res.frames.push(r);
  });
  res.links = Array.from(document.querySelectorAll('a[href]')).map(function (a) {
    return a.href; });
  res.flatmaps = Array.from(document.querySelectorAll('figure[data-flatmap] img')).map(
    function (img) {
      var fig = img.closest('figure'), sec = fig.closest('section');
      return {title: img.alt, width: img.naturalWidth, height: img.naturalHeight,
              shown: img.complete && img.getBoundingClientRect().width > 0,
              first: sec ? sec.querySelector('figure') === fig : false,
              section: sec ? sec.id : ''};
    });
  var pre = document.createElement('pre');
  pre.id = 'layout-result';
  pre.textContent = JSON.stringify(res);
  document.body.appendChild(pre);
});
</script>"""


def executable() -> str | None:
    for c in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if c and Path(c).exists():
            return c
    return None


def run(args: list[str], profile: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    exe = executable()
    assert exe is not None
    return subprocess.run(
        [exe, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def console_errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]


def layout(
    report: Path, tmp: Path, width: int = 1280, beside: bool = False
) -> tuple[dict, list[str]]:
    """Layout measurements of ``report`` at ``width`` px, and the console errors; also the
    page's links (absolute) and its SUIT flatmap figures. ``beside``: the probed copy sits
    next to ``report`` (so its relative links resolve as the page's own do), else in ``tmp``.
    """
    text = report.read_text(encoding="utf-8")
    # the probe in <head> (to catch errors from the start); frames get an error hook too
    hook = (
        "<script>window.__errors=[];window.addEventListener('error',function(e)"
        "{window.__errors.push(String(e.message));});</script>"
    )
    text = re.sub(r'srcdoc="', lambda m: m.group(0) + html.escape(hook, quote=True), text)
    text = text.replace("<head>", "<head>" + PROBE, 1)
    wrapper = (report.parent / f".probe-{report.name}") if beside else tmp / "layout_wrapper.html"
    wrapper.write_text(text, encoding="utf-8")
    proc = run(
        [
            "--dump-dom",
            "--virtual-time-budget=15000",
            f"--window-size={width},1600",
            wrapper.resolve().as_uri(),
        ],
        tmp / "profile-layout",
    )
    if beside:
        wrapper.unlink()
    m = re.search(r'<pre id="layout-result">(.*?)</pre>', proc.stdout, re.S)
    assert m, proc.stderr[-3000:]
    return json.loads(html.unescape(m.group(1))), console_errors(proc.stderr)


def overflowing(res: dict) -> list[dict]:
    """Tables wider than their container or with content wider than themselves."""
    return [
        t
        for t in res["tables"]
        if t["scrollWidth"] > t["clientWidth"] + 1 or t["right"] > t["hostRight"] + 1
    ]


def screenshot(report: Path, png: Path, tmp: Path, width: int = 1280, height: int = 2000):
    proc = run(
        [
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            "--hide-scrollbars",
            report.resolve().as_uri(),
        ],
        tmp / "profile-shot",
    )
    return proc
