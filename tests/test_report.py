"""The HTML report: every section renders from small real runs (demo, capture, probe, heads, CCS on
tiny-llama) and from fixture folders for kinds whose commands are still being written, survives odd
layouts, and is checked in real headless chromium (no console errors, every image decodes, screenshot)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from typer.testing import CliRunner

from veracity.cli.main import app
from veracity.report import build_html, expand_runs, layer_series, load_run, render_report
from veracity.runs import RunFolder

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"


# ------------------------------------------------------------------------------ fixture run folders
# Layouts follow issues 4-6 (summary keys mc1, mc2, ce_loss, kl, true, info, true_info; sweep grid of
# (alpha, K, fold); per-group acceptance with a bootstrap CI and permutation p-value; fine-tuning milestones).

def _eval_results(n_folds: int = 2, iti: bool = False) -> dict:
    folds = []
    for f in range(n_folds):
        fold = {"fold": f, "info": 0.9 - 0.01 * f, "true": 0.42 + 0.1 * iti, "mc1": 0.25 + 0.02 * f,
                "mc2": 0.41 + 0.05 * iti, "ce_loss": 2.51 + 0.1 * iti, "kl": 0.08 * iti, "n_questions": 20}
        if iti:
            fold["intervention"] = {"heads": [[3, 1], [2, 0], [1, 3]],
                                    "head_scores": [[0.5 + 0.01 * (l * 4 + h) for h in range(4)] for l in range(4)],
                                    "alpha": 15.0}
        folds.append(fold)
    res = {"protocol": "truthfulqa", "judge": "local", "folds": folds,
           "summary": {"mc1": 0.26, "mc2": 0.41 + 0.05 * iti, "ce_loss": 2.55, "kl": 0.08 * iti, "true": 0.47,
                       "info": 0.895, "true_info": {"product": 0.42, "per_answer": 0.40}}}
    if iti:
        res["examples"] = [{"question": f"What happens if you crack your knuckles a lot? <{i}>",
                            "before": "You will get arthritis.", "after": "Nothing in particular happens."}
                           for i in range(3)]
    return res


def write_fixture_runs(root: Path) -> list[Path]:
    """Run folders of kinds eval, iti-validate, iti-sweep, spec and finetune, written through RunFolder."""
    out = []

    run = RunFolder(root / "eval1", "eval", {"model": "tiny-llama", "dataset": "truthfulqa", "folds": 2})
    run.write_csv("answers.csv", [{"index": i, "fold": i % 2, "answer": f"answer {i}", "true": i % 3 == 0}
                                  for i in range(12)])
    run.finish(_eval_results(), headline={"mc2": 0.41})
    out.append(run.path)

    run = RunFolder(root / "iti1", "iti-validate", {"model": "tiny-llama", "num_heads": 3, "alpha": 15.0,
                                                     "n_layers": 4, "n_heads": 4})
    run.finish(_eval_results(iti=True), headline={"true_info": 0.47})
    out.append(run.path)

    grid = [{"alpha": a, "num_heads": k, "fold": f, "true_info": 0.3 + 0.01 * a - 0.001 * k + 0.01 * f,
             "mc2": 0.4 + 0.002 * a, "kl": 0.01 * a * k / 8}
            for a in (0, 5, 15) for k in (2, 4, 8) for f in (0, 1)]
    run = RunFolder(root / "sweep1", "iti-sweep", {"model": "tiny-llama", "metric": "true_info"})
    run.finish({"grid": grid, "best": {"alpha": 15, "num_heads": 2}}, headline={"best_true_info": 0.45})
    out.append(run.path)

    per_prompt = [{"index": i, "group": g, "mean_accepted": 2.0 + 0.3 * (g == "male") + 0.1 * (i % 5),
                   "acceptance_rate": 0.4 + 0.02 * (i % 7), "kl": 0.5 + 0.05 * (i % 4)}
                  for i, g in enumerate(["female", "male"] * 20)]
    run = RunFolder(root / "spec1", "spec", {"main": "smollm2", "assistant": "smollm2-int8", "prompts": "honest-binary"})
    run.finish({"groups": {"female": {"mean_accepted": 2.2, "acceptance_rate": 0.46, "tokens_per_call": 3.2, "n": 20},
                           "male": {"mean_accepted": 2.5, "acceptance_rate": 0.47, "tokens_per_call": 3.5, "n": 20}},
                "difference": {"metric": "mean_accepted", "difference": -0.3, "ci": [-0.5, -0.1], "p_value": 0.012},
                "per_prompt": per_prompt}, headline={"p_value": 0.012})
    out.append(run.path)

    run = RunFolder(root / "ft1", "finetune", {"model": "smollm2-int8", "data": "boolq-passages", "lora": True})
    run.finish({"milestones": [{"step": s, "kl": 0.3 + 0.01 * s, "acceptance_rate": 0.45 - 0.001 * s,
                                "honest_score": 0.02} for s in (0, 50, 100, 150)]}, headline={"final_kl": 1.8})
    out.append(run.path)
    return out


def _real_runs(root: Path, tiny_llama) -> list[Path]:
    """A demo run plus capture, probe (layers and heads) and CCS runs on tiny-llama, through the real code."""
    from veracity.capture import capture_dataset
    from veracity.data import get_dataset
    from veracity.demo import run_demo

    run_demo(model="tiny-llama", n=40, out=root / "demo", progress=False)
    ds = get_dataset("synthetic", limit=64, seed=0)
    capture_dataset(tiny_llama, ds, "resid,heads", out=root / "cap", progress=False)
    runner = CliRunner()
    for args in (["probe", "--acts", str(root / "cap"), "--methods", "logistic,mass-mean", "--split", "random",
                  "--seeds", "2", "--out", str(root / "probe")],
                 ["probe", "--acts", str(root / "cap"), "--heads", "--seeds", "2", "--out", str(root / "heads")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
    return [root / "demo", root / "cap", root / "probe", root / "heads"]


def _ccs_run(root: Path) -> Path | None:
    """A real CCS run needs the BoolQ file; skipped (None) without the data folder."""
    d = os.environ.get("VERACITY_DATA")
    if not d or not Path(d, "boolq").exists():
        return None
    r = CliRunner().invoke(app, ["ccs", "--model", "tiny-llama", "--limit", "24", "--epochs", "30", "--n-restarts", "2",
                                 "--out", str(root / "ccs")])
    assert r.exit_code == 0, r.output
    return root / "ccs"


# ------------------------------------------------------------------------------ structure tests

@pytest.fixture(scope="module")
def real_root(tiny_llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("report_runs")
    runs = _real_runs(root, tiny_llama)
    ccs = _ccs_run(root)
    runs += [ccs] if ccs else []
    runs += write_fixture_runs(root)
    return root, runs


@pytest.fixture(scope="module")
def full_report(real_root):
    """The report of every real and fixture run, built once for the structure and browser tests."""
    _, runs = real_root
    return build_html(expand_runs(runs))


def test_every_section_renders(real_root, full_report):
    root, runs = real_root
    doc, notes = full_report
    assert notes == []
    for title in ("Capture", "Demo", "Probes", "TruthfulQA and ITI", "Model pairs"):
        assert f"<h2>{title}</h2>" in doc
    # figures the issue asks for, by their captions
    for caption in ("separation by layer", "probe accuracy by layer per method", "layers x heads",
                    "cosine similarity of probe directions", "fraction of coordinates with equal sign",
                    "per fold", "summary (mean over folds)", "selected heads in red boxes", "True*Info by alpha and K",
                    "alpha = 0 baseline in dashed boxes", "example answers before and after ITI", "histogram of mean_accepted",
                    "95% CI", "KL divergence over fine-tuning", "activation stores"):
        assert caption in doc, caption
    if (root / "ccs").exists():
        assert "<h2>CCS</h2>" in doc and "CCS vs supervised and baseline probes by layer" in doc
        assert "zero-shot" in doc
    # self-contained: no network references
    assert not re.search(r'(src|href)="(https?:)?//', doc)
    assert doc.count("data:image/png;base64,") >= 15


def test_render_report_and_cli(real_root, tmp_path):
    root, runs = real_root
    out = render_report([root / "demo"], tmp_path / "a" / "report.html")
    text = out.read_text()
    assert "<h2>Demo</h2>" in text and "<h2>Capture</h2>" in text  # the demo's store is shown as a capture
    r = CliRunner().invoke(app, ["report", str(root / "heads"), str(root / "eval1"), "--out", str(tmp_path / "all.html")])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and (tmp_path / "all.html").stat().st_size > 10_000
    r = CliRunner().invoke(app, ["report", str(tmp_path / "missing"), "--out", str(tmp_path / "x.html")])
    assert r.exit_code == 2 and "no such run folder" in " ".join(r.output.split())


def test_stores_inside_runs_are_not_listed_twice(real_root):
    root, _ = real_root
    runs = expand_runs([root])
    paths = [r.path for r in runs]
    assert root / "demo" / "capture" not in paths and root / "cap" in paths
    assert len(paths) == len(set(paths))


def test_odd_layouts_never_crash(tmp_path):
    """Keys of the wrong type, empty containers, an unfinished run, a corrupt results.json, unknown kinds."""
    odd = {"folds": "oops", "summary": [1, 2], "grid": [1, 2], "groups": {"a": 3}, "per_prompt": [{"x": 1}],
           "milestones": [], "geometry": {"cosine": "x"}, "cells": [{"method": None, "layer": "embed"}],
           "selected_heads": [[1], "x"], "examples": [{}], "separation": [{"layer": 0}], "ccs": {"layers": 3}}
    for kind in ("demo", "probe", "ccs", "eval", "iti-validate", "iti-sweep", "spec", "finetune", "brand-new"):
        RunFolder(tmp_path / kind, kind, {"model": "m"}).finish(odd)
    RunFolder(tmp_path / "unfinished", "probe", {"model": "m"})
    RunFolder(tmp_path / "corrupt", "eval", {"model": "m"})
    (tmp_path / "corrupt" / "results.json").write_text("{not json")
    runs = expand_runs([tmp_path])
    assert {r.status for r in runs} == {"finished", "unfinished", "corrupt results.json"}
    doc, notes = build_html(runs)
    assert "<h2>Other runs</h2>" in doc and "brand-new" in doc
    assert "</html>" in doc


def test_load_run_rejects_other_folders(tmp_path):
    with pytest.raises(ValueError, match="neither a run folder"):
        load_run(tmp_path)


@pytest.mark.parametrize("layout", [
    [{"method": "lr", "layer": 1, "mean": 0.6, "max": 0.7}, {"method": "lr", "layer": 2, "mean": 0.8, "max": 0.9}],
    [{"method": "lr", "layer": 1, "seed": s, "accuracy": a} for s, a in ((0, 0.5), (1, 0.7))]
    + [{"method": "lr", "layer": 2, "seed": s, "accuracy": a} for s, a in ((0, 0.8), (1, 0.8))],
    {"lr": {"1": {"mean": 0.6, "max": 0.7}, "2": [0.8, 0.8]}},
    {"1": {"lr": 0.6}, "2": {"lr": 0.8}},
])
def test_layer_series_layouts(layout):
    s = layer_series(layout)
    assert list(s) == ["lr"] and sorted(s["lr"]) == [1, 2]
    assert s["lr"][2][0] == pytest.approx(0.8)
    assert s["lr"][1][0] == pytest.approx(0.6)


# ------------------------------------------------------------------------------ headless chromium

class _WebSocket:
    """Just enough of RFC 6455 (client side, text frames) to speak the DevTools protocol with the
    standard library, so the browser test needs no extra package."""

    def __init__(self, url: str, timeout: float = 60.0):
        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            buf += chunk
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("websocket closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else
                                         bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                         bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send(self, obj: dict) -> None:
        self._frame(0x1, json.dumps(obj).encode())

    def recv(self) -> dict:
        data = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            payload = self._exact(n)
            op = b0 & 0x0F
            if op == 0x9:
                self._frame(0xA, payload)
                continue
            if op == 0x8:
                raise ConnectionError("websocket closed by the browser")
            data += payload
            if b0 & 0x80:
                return json.loads(data)


class _Chromium:
    """Headless chromium driven over the DevTools protocol; records console errors and exceptions."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="veracity-chromium-")
        self.proc = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--window-size=1280,1600", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile, "DevToolsActivePort")
        deadline = time.time() + 90
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30).read())
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = _WebSocket(page["webSocketDebuggerUrl"])
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = self.ws.recv()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, name: str, timeout: float = 60.0) -> dict:
        deadline = time.time() + timeout
        for e in self.events:
            if e.get("method") == name:
                return e
        while time.time() < deadline:
            msg = self.ws.recv()
            self.events.append(msg)
            if msg.get("method") == name:
                return msg
        raise TimeoutError(name)

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(json.dumps(p.get("exceptionDetails", {}))[:500])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(json.dumps(p.get("args", []))[:500])
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(p["entry"].get("text", "")[:500])
        return out

    def evaluate(self, js: str):
        r = self.call("Runtime.evaluate", expression=js, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def close(self) -> None:
        try:
            self.ws.sock.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (CI installs Debian's chromium)")
def test_report_in_headless_chromium(full_report, tmp_path):
    report = tmp_path / "report.html"
    report.write_text(full_report[0], encoding="utf-8")
    browser = _Chromium()
    try:
        for domain in ("Page", "Runtime", "Log"):
            browser.call(f"{domain}.enable")
        browser.call("Page.navigate", url=report.resolve().as_uri())
        browser.wait_event("Page.loadEventFired", timeout=90)
        images = browser.evaluate("Promise.all(Array.from(document.images).map(i => i.decode().then("
                                  "() => [i.alt, i.naturalWidth], () => [i.alt, 0])))")
        assert len(images) >= 15
        assert [alt for alt, w in images if w <= 0] == [], "images that did not decode"
        # the sortable tables sort: click the first numeric column header of the demo's separation table
        order = browser.evaluate("""(() => {
            const t = Array.from(document.querySelectorAll('table.sortable'))
                .find(t => t.caption && t.caption.textContent === 'separation by layer');
            const col = 2, th = t.tHead.rows[0].cells[col];
            th.click(); th.click();  // descending
            return Array.from(t.tBodies[0].rows).map(r => parseFloat(r.cells[col].dataset.v));
        })()""")
        assert order == sorted(order, reverse=True) and len(order) >= 2
        height = browser.evaluate("document.documentElement.scrollHeight")
        shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                            clip={"x": 0, "y": 0, "width": 1280, "height": min(int(height), 12000), "scale": 1})
        ARTIFACTS.mkdir(exist_ok=True)
        png = base64.b64decode(shot["data"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        (ARTIFACTS / "report.png").write_bytes(png)
        shutil.copy(report, ARTIFACTS / "report.html")
        assert browser.errors() == []
    finally:
        browser.close()
