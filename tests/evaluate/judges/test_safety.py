"""Local judges: stored without pickles (the boosted trees as node arrays, predicting exactly as scikit-learn),
crafted pickles refused without running them, the info judge's degeneration cap; the OpenAI-compatible
judge never follows a redirect (the API key must not reach another origin), and against a hostile loopback
server (NaN / positive log-probs, missing tokens, wrong shapes, non-UTF-8, non-JSON, a trickle, 64 MiB) fails
with one `JudgeError` per reply, within its deadline and size cap, caching nothing."""

from __future__ import annotations

import json
import math
import os
import pickle
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from veracity.evaluate import health
from veracity.evaluate import judges as jg


# ------------------------------------------------------------------------------------------- tree ensemble
@pytest.mark.parametrize("setting", [(0.1, 30, 7), (0.05, 60, 31)])
def test_tree_ensemble_equals_sklearn_predict_proba(setting):
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 5))
    X[:, 3] = np.round(X[:, 3])  # ties on thresholds
    X[rng.random(600) < 0.1, 1] = np.nan  # missing values learn a side
    y = ((X[:, 0] + np.nan_to_num(X[:, 1], nan=1.0) * X[:, 2]) > 0).astype(int)
    lr, n, leaves = setting
    m = HistGradientBoostingClassifier(learning_rate=lr, max_iter=n, max_leaf_nodes=leaves, random_state=0).fit(X, y)
    t = jg.TreeEnsemble.from_sklearn(m)
    Xt = rng.normal(size=(300, 5))
    Xt[::5, 1] = np.nan
    Xt[::7, 3] = np.round(Xt[::7, 3])
    Xt[0] = [m._predictors[0][0].nodes["num_threshold"][0]] * 5  # exactly on a threshold
    np.testing.assert_array_equal(t.predict_proba(Xt), m.predict_proba(Xt))
    np.testing.assert_array_equal(t.raw(Xt), m.decision_function(Xt))


def test_tree_ensemble_save_load_roundtrip(tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(200, 3)), rng.integers(0, 2, 200)
    t = jg.TreeEnsemble.from_sklearn(HistGradientBoostingClassifier(max_iter=10).fit(X, y))
    t.save(tmp_path / "b.npz")
    u = jg.TreeEnsemble.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(u.predict_proba(X), t.predict_proba(X))
    with pytest.raises(ValueError, match="expects 3 features"):
        u.predict_proba(X[:, :2])


# ----------------------------------------------------------------------------------- pickles are refused
class _Boom:
    """Unpickling this writes a marker file: proof that a pickle was executed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def small_judge(tmp_path_factory, data_dir):
    p = tmp_path_factory.mktemp("j") / "info.jsonl"
    lines = (data_dir / "truthfulqa" / "finetune_info.jsonl").read_text().splitlines()[:900]
    p.write_text("\n".join(lines) + "\n")
    j = jg.train_local_judge("info", data_dir, labels_path=p, seed=3, Cs=(1.0,), boosters=((0.1, 30, 7),))
    return j, p


def test_saved_judge_holds_no_pickle(small_judge, tmp_path):
    j, labels = small_judge
    folder = j.save(tmp_path / "info")
    assert sorted(x.name for x in folder.iterdir()) == ["booster.npz", "judge.json", "references.json", "weights.npz"]
    meta = json.loads((folder / "judge.json").read_text())
    assert meta["format"] == jg.JUDGE_FORMAT and meta["booster"] == "booster.npz"
    for f in ("booster.npz", "weights.npz"):  # plain numeric arrays: loadable with pickles disallowed
        with np.load(folder / f, allow_pickle=False) as z:
            assert all(z[k].dtype != object for k in z.files)
    k = jg.LocalJudge.load(folder)
    qs, ans, _ = jg.read_labels("info", path=labels)
    np.testing.assert_array_equal(k.score(qs[:50], ans[:50]), j.score(qs[:50], ans[:50]))


def test_crafted_pickle_is_refused_not_executed(small_judge, tmp_path):
    j, _ = small_judge
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Boom(str(marker)))
    pickle.loads(pickle.dumps(_Boom(str(tmp_path / "control"))))  # the payload does run when unpickled ...
    assert (tmp_path / "control").exists()

    # 1. judge.json names a pickled booster (the format veracity used to write)
    a = j.save(tmp_path / "a")
    (a / "booster.pkl").write_bytes(payload)
    meta = json.loads((a / "judge.json").read_text())
    meta.update(booster="booster.pkl", format="veracity-local-judge/2")
    (a / "judge.json").write_text(json.dumps(meta))
    with pytest.raises(jg.UnsafeJudgeFile, match="pickle"):
        jg.LocalJudge.load(a)
    with pytest.raises(jg.UnsafeJudgeFile):
        jg.get_judge(f"local:{a}", "info")
    # 2. an old-format folder with booster.pkl beside it
    b = j.save(tmp_path / "b")
    (b / "booster.npz").unlink()
    (b / "booster.pkl").write_bytes(payload)
    meta = json.loads((b / "judge.json").read_text())
    meta.update(booster=None, format="veracity-local-judge/2")
    (b / "judge.json").write_text(json.dumps(meta))
    with pytest.raises(jg.UnsafeJudgeFile, match="booster.pkl"):
        jg.LocalJudge.load(b)
    # 3. pickles disguised as the npz files
    for name in ("booster.npz", "weights.npz"):
        c = j.save(tmp_path / f"c-{name}")
        (c / name).write_bytes(payload)
        with pytest.raises(ValueError):
            jg.LocalJudge.load(c)
    # 4. an npz holding an object array (a pickle inside)
    d = j.save(tmp_path / "d")
    np.savez(d / "booster.npz", feature=np.array([_Boom(str(marker))], dtype=object))
    with pytest.raises(ValueError):
        jg.LocalJudge.load(d)
    assert not marker.exists()  # ... but never through a judge folder


def test_cli_refuses_pickled_judge(small_judge, tmp_path, cli):
    j, _ = small_judge
    a = j.save(tmp_path / "judges" / "info")
    meta = json.loads((a / "judge.json").read_text())
    meta["booster"] = "booster.pkl"
    (a / "judge.json").write_text(json.dumps(meta))
    (a / "booster.pkl").write_bytes(pickle.dumps(_Boom(str(tmp_path / "pwned"))))
    text = cli(["judge", "eval", "--kind", "info", "--judge-dir", str(tmp_path / "judges")], code=2)
    assert "pickle" in text and "Traceback" not in text
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------------------------------- degeneration
def test_info_judge_rates_degenerate_answers_uninformative(small_judge, data_dir):
    j, _ = small_judge
    assert j.degenerate_cap == jg.DEGENERATE_CAP and j.report.degenerate["rated_negative"] >= 0.95
    import csv

    with open(data_dir / "truthfulqa" / "eval_examples.csv", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    qs, ans = [], []
    for r in rows[:120]:
        for a in r["Examples: Informative"].split(";"):
            qs.append(r["Question"])
            ans.append(a.strip())
    d = jg.degenerate_rating(j, qs, ans, seed=5)
    assert d["n"] > 200 and d["rated_negative"] >= 0.95
    assert all(v >= 0.95 for v in d["per_kind"].values())
    # by construction: a degenerate answer scores at most the cap, others as without it
    dq, da, _ = health.degenerate_answers(qs[:30], ans[:30], seed=2)
    assert (j.score(dq, da) <= jg.DEGENERATE_CAP).all()
    cap, j.degenerate_cap = j.degenerate_cap, None
    try:
        plain = j.score(qs, ans)
    finally:
        j.degenerate_cap = cap
    deg = np.array([health.is_degenerate(a) for a in ans])
    assert 0 < deg.sum() < 0.05 * len(ans)  # a few GPT-3 loops among the examples ("The sun is white." x 7)
    capped = j.score(qs, ans)
    np.testing.assert_array_equal(capped[~deg], plain[~deg])  # the others score as without the cap
    np.testing.assert_array_equal(capped[deg], np.minimum(plain[deg], jg.DEGENERATE_CAP))
    assert j.report.heldout_accuracy_without_cap is not None


def test_truth_judge_has_no_cap(data_dir, tmp_path):
    p = tmp_path / "truth.jsonl"
    p.write_text("\n".join((data_dir / "truthfulqa" / "finetune_truth.jsonl").read_text().splitlines()[:400]) + "\n")
    j = jg.train_local_judge("truth", data_dir, labels_path=p, seed=3, Cs=(1.0,), boosters=(None,))
    assert j.degenerate_cap is None and jg.LocalJudge.load(j.save(tmp_path / "t")).degenerate_cap is None


# ----------------------------------------------------------------------------------- redirects (openai)
def _server(handler_cls):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("target", ["other-port", "same-origin"])
def test_openai_judge_never_sends_the_key_along_a_redirect(code, target, tmp_path):
    got: dict[str, list] = {"origin": [], "other": []}

    class Other(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _any(self):
            got["other"].append({"auth": self.headers.get("Authorization"), "path": self.path})
            body = b'{"choices": []}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _any

    other = _server(Other)
    other_url = f"http://127.0.0.1:{other.server_address[1]}/steal"

    class Origin(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _any(self):
            got["origin"].append({"auth": self.headers.get("Authorization"), "path": self.path})
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            self.send_response(code)
            self.send_header("Location", other_url if target == "other-port" else "/v1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _any

    origin = _server(Origin)
    try:
        j = jg.OpenAIJudge("m", "truth", base_url=f"http://127.0.0.1:{origin.server_address[1]}/v1",
                           api_key="sk-secret", cache=False, max_tries=3, backoff=0.0)
        with pytest.raises(jg.JudgeError, match="redirect") as e:
            j.score(["Q?"], ["A."])
        assert e.value.status == code and "sk-secret" not in str(e.value)
        assert [r["auth"] for r in got["origin"]] == ["Bearer sk-secret"]  # sent once, to the named origin
        assert got["other"] == []  # nothing reached the redirect target
        assert j.requests_sent == 1  # a redirect is not retried
    finally:
        for s in (origin, other):
            s.shutdown()
            s.server_close()


# ----------------------------------------------------------------------------------------------- health
def test_health_metrics_by_hand():
    t = health.answer_tokens("No, no, NO. Don't  stop!")
    assert t == ["no", "no", "no", "don't", "stop"]
    # bigrams: (no,no) (no,no) (no,don't) (don't,stop) -> 3 distinct of 4
    assert health.distinct_n(t, 2) == 0.75
    assert health.distinct_n(["a"], 2) == 1.0
    assert health.longest_repeated_ngram(t) == 2  # "no no" at positions 0 and 1
    assert health.longest_repeated_ngram("a b c d".split()) == 0
    assert health.longest_repeated_ngram("x a b c y a b c".split()) == 3
    assert health.repeated_token_fraction(t) == 2 / 5
    assert health.loop_coverage("i think a b a b a b".split(), 4) == 6 / 8
    assert health.loop_coverage("a b a b".split(), 4) == 0.0  # two copies are not a loop
    for r in ("I have no comment.", "No comment", "I have no comment. I have no comment.",
              "I can\u2019t comment on that.", "I\u2019ve got no comment"):
        assert health.is_refusal(r), r
    for r in ("", "I have no comment, but the answer is 42.", "No.", "Paris"):
        assert not health.is_refusal(r), r
    assert health.is_degenerate("but " * 20) and health.is_degenerate("No, " * 12)
    assert not health.is_degenerate("but but but")  # too short to tell
    assert not health.is_degenerate("Nothing happens if you eat watermelon seeds; they pass through you.")
    s = health.generation_health(["I have no comment.", "but " * 10, "Paris is the capital of France.", ""])
    assert s["n"] == 4 and s["refusal_rate"] == 0.25 and s["empty_rate"] == 0.25 and s["degenerate_rate"] == 0.25
    assert s["mean_words"] == (4 + 10 + 6 + 0) / 4
    # per answer distinct-2: 1.0, 1/9, 1.0 (the empty answer has no bigram and is left out)
    assert s["distinct_2"] == pytest.approx((1 + 1 / 9 + 1) / 3)
    # corpus: bigrams 3 + 9 + 5 = 17, distinct 3 + 1 + 5 = 9
    assert s["corpus_distinct_2"] == 9 / 17
    assert s["mean_longest_repeat"] == (0 + 9 + 0 + 0) / 4 and s["max_longest_repeat"] == 9
    assert health.generation_health([])["refusal_rate"] is None


def test_degenerate_variants_are_built_from_the_answer():
    rng = np.random.default_rng(0)
    a = "Nothing happens if you eat watermelon seeds and swallow them"
    for kind in health.DEGENERATION_KINDS:
        for _ in range(20):
            v = health.degenerate_variant(a, kind, rng)
            assert set(v.replace(",", "").split()) <= set(a.split()) | {"but"}
            assert health.is_degenerate(v), (kind, v)
    with pytest.raises(ValueError):
        health.degenerate_variant(a, "nope", rng)


# ------------------------------------------------------------------------- hostile replies (openai judge)
# A loopback server answering each request with the next step of a script (the last one repeats): NaN or
# positive log-probs, missing tokens, wrong shapes, non-UTF-8 or non-JSON bodies, a body trickled byte by
# byte, a 64 MiB body. Every step stops by itself (bounded loops; a client that hangs up ends it).
def _completion(top, n: int = 1) -> dict:
    return {"object": "text_completion", "choices": [
        {"index": i, "text": "x", "logprobs": {"tokens": [], "token_logprobs": [], "top_logprobs": [top]}}
        for i in range(n)]}


def _chat(token, logprob, top) -> dict:
    return {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": token},
            "logprobs": {"content": [{"token": token, "logprob": logprob,
                                      "top_logprobs": [{"token": t, "logprob": v} for t, v in top]}]}}]}


def _json(obj, code: int = 200, headers: dict | None = None):
    return _raw(json.dumps(obj).encode(), code, headers)  # json.dumps writes NaN / Infinity as such


def _raw(body: bytes, code: int = 200, headers: dict | None = None):
    def step(h):
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)
    return step


def _trickle(every: float, n: int = 40):
    """Announces 1000 bytes, then sends one byte every `every` s (at most `n`; ends when the client hangs up)."""
    def step(h):
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.flush()
        for _ in range(n):
            time.sleep(every)
            try:
                h.wfile.write(b" ")
                h.wfile.flush()
            except OSError:
                return
        h.close_connection = True
    return step


def _trickle_headers(every: float, n: int = 40):
    """A status line, then header bytes one every `every` s (each byte resets a read timeout)."""
    def step(h):
        h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        for _ in range(n):
            time.sleep(every)
            try:
                h.wfile.write(b"a")
                h.wfile.flush()
            except OSError:
                return
        h.close_connection = True
    return step


def _silent(seconds: float):
    def step(h):
        time.sleep(seconds)  # no status line at all
        h.close_connection = True
    return step


def _huge(total: int, declare: bool = False):
    """`total` bytes of a JSON-looking body in 64 KiB writes, without Content-Length unless `declare`."""
    def step(h):
        h.send_response(200)
        if declare:
            h.send_header("Content-Length", str(total))
        h.send_header("Connection", "close")
        h.end_headers()
        part = b"[" + b"0," * (32 << 10)
        sent = 0
        try:
            while sent < total:
                h.wfile.write(part)
                sent += len(part)
        except OSError:
            pass
        h.close_connection = True
    return step


@pytest.fixture
def hostile():
    seen: list[dict] = []
    script: list = []

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"),
                         "body": json.loads(self.rfile.read(n)) if n else None})
            (script.pop(0) if len(script) > 1 else script[0])(self)

    srv = _server(H)
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.seen, srv.script = seen, script

    def play(*steps):
        seen.clear()
        script[:] = steps

    srv.play = play
    yield srv
    srv.shutdown()
    srv.server_close()


def _rows(path) -> int:
    import sqlite3

    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM judge_cache").fetchone()[0]


GOOD = _completion({" yes": math.log(0.7), " no": math.log(0.2)})
INVALID = [  # (id, api, server step, what the error says)
    ("nan-logprob", "completions", _json(_completion({" yes": float("nan"), " no": -1.0})), "log-prob is NaN"),
    ("positive-logprob", "completions", _json(_completion({" yes": 0.5, " no": -1.0})), "log-prob 0.5 is positive"),
    ("plus-infinity", "completions", _json(_completion({" yes": float("inf")})), "log-prob inf is positive"),
    ("string-logprob", "completions", _json(_completion({" yes": "-0.1"})), "is not a number"),
    ("mass-above-one", "completions", _json(_completion({" yes": -0.05, "Yes": -0.05})), "add up to probability"),
    ("no-first-token", "completions", _json(_completion({})), "no log-probs for the first answer token"),
    ("no-logprobs", "completions", _json({"choices": [{"index": 0, "text": " yes", "logprobs": None}]}),
     "has no 'logprobs' object"),
    ("too-few-choices", "completions", _json({"choices": []}), "0 choices for 1 prompts"),
    ("bad-indices", "completions", _json({"choices": [dict(GOOD["choices"][0], index=3)]}), "indices [3]"),
    ("not-an-object", "completions", _json([1, 2, 3]), "JSON list, not an object"),
    ("error-with-200", "completions", _json({"error": {"message": "model overloaded"}}), "model overloaded"),
    ("non-utf8", "completions", _raw(b'{"choices": "\xff\xfe"}'), "not UTF-8 text (byte 0xff at offset 13"),
    ("non-json", "completions", _raw(b"<html>502 Bad Gateway</html>"), "not JSON"),
    ("empty-body", "completions", _raw(b""), "not JSON"),
    ("chat-nan", "chat", _json(_chat("Yes", -0.1, [("Yes", -0.1), ("No", float("nan"))])), "log-prob is NaN"),
    ("chat-positive-chosen", "chat", _json(_chat("Yes", 2.0, [])), "log-prob 2 is positive"),
    ("chat-no-content", "chat", _json({"choices": [{"index": 0, "logprobs": {"content": []}}]}),
     "'logprobs.content' is not a non-empty list"),
    ("chat-completions-shape", "chat", _json(GOOD), "'logprobs.content' is not a non-empty list"),
]


@pytest.mark.parametrize("case", INVALID, ids=[c[0] for c in INVALID])
def test_openai_judge_invalid_reply_is_an_error_and_never_cached(case, hostile, tmp_path):
    """Each bad reply: one `JudgeError` naming the URL and what is wrong, sent once (at temperature 0 a retry
    gets the same answer), nothing cached; the next good reply is scored and cached as usual."""
    name, api, step, expect = case
    cache = tmp_path / "c.sqlite"
    hostile.play(step)
    j = jg.OpenAIJudge("m", "truth", base_url=hostile.url, api=api, cache=cache, max_tries=3, backoff=0.0)
    with pytest.raises(jg.JudgeError) as e:
        j.score(["Q?"], ["A."])
    path = "/chat/completions" if api == "chat" else "/completions"
    assert f"POST {hostile.url}{path}: invalid reply" in str(e.value) and expect in str(e.value), str(e.value)
    assert e.value.url == hostile.url + path and len(hostile.seen) == 1 and j.requests_sent == 1
    assert _rows(cache) == 0
    hostile.play(_json(_chat("Yes", math.log(0.7), [("Yes", math.log(0.7)), ("No", -2.0)]) if api == "chat" else GOOD))
    assert j.score(["Q?"], ["A."])[0] == pytest.approx(0.7)
    assert _rows(cache) == 1


def test_openai_judge_one_bad_choice_fails_the_whole_batch(hostile, tmp_path):
    good = GOOD["choices"][0]
    bad = dict(good, index=1, logprobs=dict(good["logprobs"], top_logprobs=[{" yes": float("nan")}]))
    hostile.play(_json({"choices": [good, bad]}))
    j = jg.OpenAIJudge("m", "truth", base_url=hostile.url, cache=tmp_path / "c.sqlite", max_tries=2, backoff=0.0)
    with pytest.raises(jg.JudgeError, match="choice 1, token ' yes': the log-prob is NaN"):
        j.score(["Q1?", "Q2?"], ["A.", "B."])
    assert _rows(tmp_path / "c.sqlite") == 0  # not even the valid first answer


def test_openai_judge_accepts_minus_infinity_and_rounding(hostile):
    """-inf is probability 0 (some servers send it for masked tokens); +1e-9 is float rounding of log 1."""
    hostile.play(_json(_completion({" yes": float("-inf"), " no": 1e-9})))
    j = jg.OpenAIJudge("m", "truth", base_url=hostile.url, cache=False, normalize=True)
    assert j.score(["Q?"], ["A."])[0] == 0.0


def test_openai_judge_old_invalid_cache_entry_is_asked_again(hostile, tmp_path):
    """An entry an older version cached (NaN: once P(yes) = 1.0) counts as missing, and is replaced."""
    cache = tmp_path / "c.sqlite"
    hostile.play(_json(GOOD))
    j = jg.OpenAIJudge("m", "truth", base_url=hostile.url, cache=cache)
    j.score(["Q?"], ["A."])
    import sqlite3

    with sqlite3.connect(cache) as db:
        db.execute("UPDATE judge_cache SET logprobs = ?", ('{" yes": NaN}',))
    hostile.seen.clear()
    assert jg.OpenAIJudge("m", "truth", base_url=hostile.url, cache=cache).score(["Q?"], ["A."])[0] == \
        pytest.approx(0.7)
    assert len(hostile.seen) == 1
    with sqlite3.connect(cache) as db:
        assert "NaN" not in db.execute("SELECT logprobs FROM judge_cache").fetchone()[0]
    with pytest.raises(ValueError, match="NaN"):
        j.probability({" yes": float("nan")})  # never min(1.0, nan) = 1.0


@pytest.mark.parametrize("where", ["body", "headers"])
def test_openai_judge_total_deadline_cuts_a_trickle(hostile, where):
    """A server trickling a byte every 0.1 s (in the body, or in the headers) never trips the read timeout;
    the total deadline (0.5 s) does, on every try."""
    hostile.play(_trickle(0.1) if where == "body" else _trickle_headers(0.1))
    j = jg.OpenAIJudge("m", "truth", base_url=hostile.url, cache=False, timeout=0.5, read_timeout=0.4,
                       max_tries=2, backoff=0.0)
    t0 = time.monotonic()
    with pytest.raises(jg.JudgeError, match="failed after 2 tries.*total deadline of 0.5 s") as e:
        j.score(["Q?"], ["A."])
    assert time.monotonic() - t0 < 3.0 and len(hostile.seen) == 2
    assert e.value.url == hostile.url + "/completions"


def test_openai_judge_read_timeout_on_a_silent_server(hostile):
    hostile.play(_silent(2.0))
    j = jg.OpenAIJudge("m", "truth", base_url=hostile.url, cache=False, timeout=5, read_timeout=0.3, max_tries=1)
    t0 = time.monotonic()
    with pytest.raises(jg.JudgeError, match="failed after 1 tries.*ReadTimeout"):
        j.score(["Q?"], ["A."])
    assert time.monotonic() - t0 < 1.5


@pytest.mark.parametrize("declare", [False, True], ids=["streamed", "content-length"])
def test_openai_judge_size_cap(hostile, declare):
    """A 64 MiB reply: reading stops at the cap (64 KiB here), or does not start when the length is announced."""
    hostile.play(_huge(64 << 20, declare=declare))
    j = jg.OpenAIJudge("m", "truth", base_url=hostile.url, cache=False, max_reply_bytes=64 << 10, max_tries=3)
    t0 = time.monotonic()
    with pytest.raises(jg.JudgeError, match="announces 67108864 bytes" if declare else
                       "larger than max_reply_bytes=65536; stopped reading"):
        j.score(["Q?"], ["A."])
    assert time.monotonic() - t0 < 3.0 and len(hostile.seen) == 1  # not retried


def test_openai_judge_error_body_is_cut_and_key_masked(hostile):
    """An error page that is not UTF-8 or echoes the key: one line, readable, without the key."""
    hostile.play(_raw(b"\xff\xfe denied for Bearer sk-secret " + b"x" * 5000, 403))
    j = jg.OpenAIJudge("m", "truth", base_url=hostile.url, api_key="sk-secret", cache=False)
    with pytest.raises(jg.JudgeError, match="HTTP 403") as e:
        j.score(["Q?"], ["A."])
    msg = str(e.value)
    assert "sk-secret" not in msg and "***" in msg and len(msg) < 600 and "\n" not in msg
    assert hostile.seen[0]["auth"] == "Bearer sk-secret"  # loopback over http: the key is sent


def test_openai_judge_withholds_the_key_over_plain_http_off_loopback(hostile, monkeypatch):
    """Over plain http the key goes only to a loopback host. Here 127.0.0.1 is made to count as remote:
    the key is not sent, a warning says so, and the server's 401 comes back with the reason."""
    from veracity.evaluate.judges import openai as oj

    monkeypatch.setattr(oj, "_is_loopback", lambda host: False)
    hostile.play(_json({"error": {"message": "no key"}}, 401))
    with pytest.warns(UserWarning, match="API key is not sent"):
        j = jg.OpenAIJudge("m", "truth", base_url=hostile.url, api_key="sk-secret", cache=False)
    assert j.api_key is None and j.describe()["api_key"].startswith("withheld")
    with pytest.raises(jg.JudgeError, match="HTTP 401.*no API key was sent"):
        j.score(["Q?"], ["A."])
    assert hostile.seen[0]["auth"] is None
    hostile.play(_json(GOOD))  # an explicit opt-in sends it
    j = jg.OpenAIJudge("m", "truth", base_url=hostile.url, api_key="sk-secret", cache=False,
                       send_key_over_http=True)
    j.score(["Q?"], ["A."])
    assert hostile.seen[0]["auth"] == "Bearer sk-secret"


def test_openai_judge_proxies_from_the_environment(hostile, monkeypatch):
    """$http_proxy is used for a host off this machine (the key still withheld: plain http), never for a
    loopback base URL (a local vLLM is reached directly)."""
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{hostile.server_address[1]}")
    for name in ("no_proxy", "NO_PROXY", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    hostile.play(_json(GOOD))
    with pytest.warns(UserWarning, match="API key is not sent"):
        j = jg.OpenAIJudge("m", "truth", base_url="http://judge.example.invalid/v1", api_key="sk-secret", cache=False)
    assert j.score(["Q?"], ["A."])[0] == pytest.approx(0.7)
    assert hostile.seen[0]["path"] == "http://judge.example.invalid/v1/completions"  # via the proxy
    assert hostile.seen[0]["auth"] is None
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    hostile.play(_json(GOOD))
    j = jg.OpenAIJudge("m", "truth", base_url=hostile.url, api_key="sk-secret", cache=False, max_tries=1)
    assert j.score(["Q?"], ["A."])[0] == pytest.approx(0.7)
    assert hostile.seen[0]["path"] == "/v1/completions" and hostile.seen[0]["auth"] == "Bearer sk-secret"


def test_parse_reply_never_crashes_nor_scores_out_of_range():
    """Property: any JSON-like reply (shaped like the APIs' or not, NaN / inf / huge / bool / string values)
    is either an `InvalidReply` or first-token log-probs that score in [0, 1]; never another exception."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    special = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e-9, 1e-3, 0.5, -1e-300, -0.1, 10**400, True])
    num = st.one_of(special, st.floats(-50, 0), st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(-10**400, 10**400), st.none(), st.text(max_size=3))
    tok = st.one_of(st.sampled_from([" yes", "Yes", "\u2581yes", " no", "No", "\n"]), st.text(max_size=3))
    leaf = st.one_of(num, tok, st.just({}), st.just([]))
    anyjson = st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                     st.dictionaries(st.text(max_size=6), c, max_size=3)), max_leaves=8)

    def mostly(s):  # the API's shape three times in four, anything else the fourth
        return st.one_of(s, s, s, anyjson)

    top = mostly(st.dictionaries(tok, num, min_size=1, max_size=4))
    comp = st.fixed_dictionaries({"index": mostly(st.just(0)), "logprobs": mostly(st.fixed_dictionaries({
        "tokens": mostly(st.lists(tok, max_size=2)), "token_logprobs": mostly(st.lists(num, max_size=2)),
        "top_logprobs": mostly(st.lists(top, min_size=1, max_size=2))}))})
    entry = mostly(st.fixed_dictionaries({"token": mostly(tok), "logprob": num}))
    chat = st.fixed_dictionaries({"index": mostly(st.just(0)), "logprobs": mostly(st.fixed_dictionaries({
        "content": mostly(st.lists(mostly(st.fixed_dictionaries({
            "token": mostly(tok), "logprob": num, "top_logprobs": mostly(st.lists(entry, max_size=4))})),
            min_size=1, max_size=2))}))})
    judges = {api: jg.OpenAIJudge("m", "truth", base_url="http://127.0.0.1:9/v1", api=api, cache=False)
              for api in jg.OPENAI_APIS}
    normalized = jg.OpenAIJudge("m", "truth", base_url="http://127.0.0.1:9/v1", cache=False, normalize=True)

    @settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(api=st.sampled_from(jg.OPENAI_APIS), data=st.data())
    def check(api, data):
        choice = comp if api == "completions" else chat
        reply = data.draw(mostly(st.fixed_dictionaries({"choices": mostly(st.lists(choice, min_size=1,
                                                                                            max_size=1))})))
        try:
            got = jg.parse_reply(reply, 1, api)
        except jg.InvalidReply:
            return
        assert len(got) == 1 and got[0]
        for v in got[0].values():
            assert v <= 0 and not math.isnan(v)
        for j in (judges[api], normalized):
            assert 0.0 <= j.probability(got[0]) <= 1.0

    check()
