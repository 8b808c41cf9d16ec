"""The `openai:<model>` judge against a fake OpenAI-compatible server on loopback (http.server in a thread):
P(" yes") from the returned top logprobs by hand, batching, the SQLite cache, retries (429, 500, connection
errors), the rate limiter, get_judge / describe, and `veracity eval truthfulqa --judge openai:...`; where the
prompts and the key may go (a base URL must be an explicit http(s) URL on every path, refused before any
request, through the library and every CLI command with --judge-base-url) and a damaged cache file."""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from veracity.evaluate import judges as jg


def p_yes(prompt: str) -> float:
    """The fake server's P(yes) for a prompt: 0.1 .. 0.7 from its length."""
    return (len(prompt) % 7 + 1) / 10


def top_for(prompt: str, yes: str = " yes", no: str = " no") -> dict[str, float]:
    """The fake server's first-token distribution; an answer containing "absent" has no "yes" in it."""
    p = p_yes(prompt)
    top = {no: math.log(0.6 * (1 - p)), "\n": math.log(0.4 * (1 - p))}
    if "absent" not in prompt:
        top[yes] = math.log(p)
    return dict(sorted(top.items(), key=lambda kv: -kv[1]))


class FakeState:
    def __init__(self):
        self.reset()

    def reset(self, fail_with: int | None = None, fail_times: int = 0, retry_after: str | None = None):
        self.requests: list[dict] = []
        self.fail_with, self.fail_times, self.retry_after = fail_with, fail_times, retry_after


class Handler(BaseHTTPRequestHandler):
    state: FakeState

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, obj: dict, headers: dict | None = None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        st = self.state
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        st.requests.append({"path": self.path, "body": body, "t": time.monotonic(),
                            "auth": self.headers.get("Authorization")})
        if st.fail_with and (st.fail_times < 0 or len(st.requests) <= st.fail_times):
            return self._send(st.fail_with, {"error": {"message": "fake failure"}},
                              {"Retry-After": st.retry_after} if st.retry_after else None)
        k = body.get("top_logprobs") if self.path.endswith("/chat/completions") else body.get("logprobs")
        if self.path == "/v1/completions":
            choices = []
            for i, prompt in enumerate(body["prompt"]):
                top = dict(list(top_for(prompt).items())[:k])
                tok = next(iter(top))
                choices.append({"index": i, "text": tok, "finish_reason": "length",
                                "logprobs": {"tokens": [tok], "token_logprobs": [top[tok]], "top_logprobs": [top],
                                             "text_offset": [len(prompt)]}})
            return self._send(200, {"object": "text_completion", "model": body["model"], "choices": choices[::-1]})
        if self.path == "/v1/chat/completions":
            prompt = body["messages"][-1]["content"]
            top = list(top_for(prompt, "Yes", "No").items())[:k]
            content = [{"token": top[0][0], "logprob": top[0][1],
                        "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in top]}]
            return self._send(200, {"object": "chat.completion", "model": body["model"], "choices": [
                {"index": 0, "message": {"role": "assistant", "content": top[0][0]}, "logprobs": {"content": content},
                 "finish_reason": "length"}]})
        self._send(404, {"error": {"message": f"no route {self.path}"}})


@pytest.fixture(scope="module")
def server():
    state = FakeState()
    handler = type("H", (Handler,), {"state": state})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.state = state
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def fake(server, monkeypatch):
    server.state.reset()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return server


QS = ["What is the capital of France?", "Are bats blind?", "Why?", "Who wrote Hamlet?", "Is the moon cheese?"]
AS = ["Paris.", "No, bats can see.", "absent", "Shakespeare wrote it.", "No."]


def expected(kind: str = "truth", normalize: bool = False) -> np.ndarray:
    out = []
    for q, a in zip(QS, AS):
        prompt = f"Q: {q}\nA: {a}\n{'True:' if kind == 'truth' else 'Helpful:'}"
        p = 0.0 if "absent" in prompt else p_yes(prompt)
        if normalize:
            p = p / (p + 0.6 * (1 - p_yes(prompt)))
        out.append(p)
    return np.array(out)


def test_completions_p_yes_by_hand(fake, tmp_path):
    j = jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url, cache=tmp_path / "c.sqlite", batch_size=3)
    got = j.score(QS, AS)
    np.testing.assert_allclose(got, expected("truth"), rtol=1e-12)
    assert got[2] == 0.0  # " yes" not among the top logprobs -> 0, as the original GPT-judge
    reqs = fake.state.requests
    assert len(reqs) == 2 and all(r["path"] == "/v1/completions" for r in reqs)  # 5 prompts, 3 per request
    b = reqs[0]["body"]
    assert b["model"] == "fake-judge" and b["max_tokens"] == 1 and b["temperature"] == 0 and b["logprobs"] == 5
    assert b["prompt"] == [jg.judge_prompt(q, a, "truth") for q, a in zip(QS[:3], AS[:3])]
    assert reqs[0]["auth"] is None  # no key, no header (a local vLLM)
    # normalised P(yes) / (P(yes) + P(no)): from the cache, no request
    n = jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url, cache=tmp_path / "c.sqlite", normalize=True)
    np.testing.assert_allclose(n.score(QS, AS), expected("truth", normalize=True), rtol=1e-12)
    assert len(fake.state.requests) == 2
    # exact tokens: only " yes" counts (here the same; a token "Yes" would not)
    e = jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url, cache=False, yes_tokens=[" Yes"])
    assert e.score(QS[:1], AS[:1])[0] == 0.0


def test_batched_equals_per_item(fake, tmp_path):
    one = jg.OpenAIJudge("fake-judge", "info", base_url=fake.url, cache=False, batch_size=1).score(QS, AS)
    assert len(fake.state.requests) == 5
    fake.state.reset()
    many = jg.OpenAIJudge("fake-judge", "info", base_url=fake.url, cache=False, batch_size=4).score(QS, AS)
    assert len(fake.state.requests) == 2
    np.testing.assert_array_equal(one, many)
    np.testing.assert_allclose(many, expected("info"), rtol=1e-12)
    fake.state.reset()  # duplicates are asked once; concurrency keeps the order
    conc = jg.OpenAIJudge("fake-judge", "info", base_url=fake.url, cache=False, batch_size=1, concurrency=3)
    np.testing.assert_array_equal(conc.score(QS + QS, AS + AS), np.concatenate([one, one]))
    assert len(fake.state.requests) == 5


def test_cache_rerun_sends_nothing(fake, tmp_path):
    path = tmp_path / "cache" / "judge.sqlite"
    first = jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url, cache=path).score(QS, AS)
    assert len(fake.state.requests) == 1 and path.exists()
    fake.state.reset()
    again = jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url, cache=path).score(QS, AS)
    assert fake.state.requests == [] and np.array_equal(first, again)
    # a new answer costs one prompt; another kind, model or top-k is another key
    jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url, cache=path).score(QS + ["Q?"], AS + ["A."])
    assert [r["body"]["prompt"] for r in fake.state.requests] == [["Q: Q?\nA: A.\nTrue:"]]
    fake.state.reset()
    jg.OpenAIJudge("fake-judge", "info", base_url=fake.url, cache=path).score(QS, AS)
    jg.OpenAIJudge("other", "truth", base_url=fake.url, cache=path).score(QS, AS)
    jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url, cache=path, top_logprobs=2).score(QS, AS)
    assert len(fake.state.requests) == 3


def test_default_cache_is_in_the_veracity_cache(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("VERACITY_CACHE", str(tmp_path / "vc"))
    j = jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url)
    assert j.cache.path == tmp_path / "vc" / "judge-cache.sqlite"
    j.score(QS[:2], AS[:2])
    jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url).score(QS[:2], AS[:2])
    assert len(fake.state.requests) == 1


def test_chat_endpoint(fake, tmp_path):
    j = jg.OpenAIJudge("chat-judge", "truth", base_url=fake.url, api="chat", cache=tmp_path / "c.sqlite",
                       top_logprobs=3)
    got = j.score(QS, AS)
    np.testing.assert_allclose(got, expected("truth"), rtol=1e-12)  # "Yes" reads as yes
    reqs = fake.state.requests
    assert len(reqs) == 5 and all(r["path"] == "/v1/chat/completions" for r in reqs)  # one per answer
    b = reqs[1]["body"]
    assert b["logprobs"] is True and b["top_logprobs"] == 3 and b["max_tokens"] == 1 and b["temperature"] == 0
    assert b["messages"] == [{"role": "system", "content": jg.CHAT_SYSTEM["truth"]},
                             {"role": "user", "content": jg.judge_prompt(QS[1], AS[1], "truth")}]
    fake.state.reset()  # the chat answers are cached apart from the completions ones
    jg.OpenAIJudge("chat-judge", "truth", base_url=fake.url, api="chat", cache=tmp_path / "c.sqlite",
                   top_logprobs=3).score(QS, AS)
    assert fake.state.requests == []
    jg.OpenAIJudge("chat-judge", "truth", base_url=fake.url, cache=tmp_path / "c.sqlite", top_logprobs=3).score(QS, AS)
    assert len(fake.state.requests) == 1
    fake.state.reset()
    j = jg.get_judge(f"openai-chat:chat-judge@{fake.url}", "info", cache=False, system="")
    j.score(QS[:1], AS[:1])
    assert j.api == "chat" and [m["role"] for m in fake.state.requests[0]["body"]["messages"]] == ["user"]


def test_429_is_retried_with_backoff_and_retry_after(fake):
    fake.state.reset(fail_with=429, fail_times=2, retry_after="0.3")
    j = jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url, cache=False, max_tries=3, backoff=0.001,
                       max_backoff=5)
    t0 = time.monotonic()
    got = j.score(QS, AS)
    took = time.monotonic() - t0
    np.testing.assert_allclose(got, expected("truth"), rtol=1e-12)
    assert len(fake.state.requests) == 3 and j.requests_sent == 3
    assert took >= 0.55  # Retry-After 0.3 s honoured twice (the backoff alone would be ~3 ms)


def test_500_fails_clearly_after_max_tries(fake):
    fake.state.reset(fail_with=500, fail_times=-1)
    j = jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url, cache=False, max_tries=4, backoff=0.001)
    with pytest.raises(jg.JudgeError) as e:
        j.score(QS, AS)
    msg = str(e.value)
    assert f"{fake.url}/completions" in msg and "HTTP 500" in msg and "4 tries" in msg
    assert e.value.status == 500 and e.value.url == f"{fake.url}/completions"
    assert len(fake.state.requests) == 4
    # a client error is not retried
    fake.state.reset(fail_with=401, fail_times=-1)
    with pytest.raises(jg.JudgeError, match="HTTP 401.*not retried"):
        j.score(QS, AS)
    assert len(fake.state.requests) == 1
    # a wrong path: 404, named
    fake.state.reset()
    bad = jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url.replace("/v1", "/v2"), cache=False)
    with pytest.raises(jg.JudgeError, match="404"):
        bad.score(QS, AS)


def test_connection_errors_are_retried(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    j = jg.OpenAIJudge("m", "truth", base_url=f"http://127.0.0.1:{port}/v1", cache=False, max_tries=3,
                       backoff=0.001)
    with pytest.raises(jg.JudgeError, match=f"127.0.0.1:{port}/v1/completions.*3 tries") as e:
        j.score(QS, AS)
    assert j.requests_sent == 3 and e.value.status is None


def test_rate_limiter_spaces_requests(fake):
    j = jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url, cache=False, batch_size=1, rate_limit=20)
    j.score(QS, AS)
    t = np.array([r["t"] for r in fake.state.requests])
    # 20 per second: sent >= 50 ms apart; the server's receipt times jitter on a loaded CPU, hence loosely
    assert len(t) == 5 and np.all(np.diff(t) >= 0.03) and t[-1] - t[0] >= 0.17
    # the limiter itself, on a fake clock
    now = [0.0]
    slept = []
    lim = jg.RateLimiter(4, clock=lambda: now[0], sleep=lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    for _ in range(5):
        lim.wait()
    assert now[0] == pytest.approx(1.0) and len(slept) == 4
    jg.RateLimiter(None).wait()  # no limit: returns at once


def test_get_judge_describe_and_api_key(fake, monkeypatch, tmp_path):
    j = jg.get_judge("openai:gpt-fake", "truth", base_url=fake.url + "/", cache=tmp_path / "c.sqlite")
    assert isinstance(j, jg.OpenAIJudge) and j.api == "completions" and j.base_url == fake.url
    d = j.describe()
    assert d["model"] == "gpt-fake" and d["base_url"] == fake.url and d["name"] == "openai:gpt-fake"
    assert d["kind"] == "truth" and d["api"] == "completions" and d["prompt"].endswith("True:")
    # the URL in the spec (what --judge-base-url records), a model name with "@", the env default
    spec = jg.with_base_url("openai:claude@2024", fake.url)
    assert spec == f"openai:claude@2024@{fake.url}"
    k = jg.get_judge(spec, "info", cache=False)
    assert k.model == "claude@2024" and k.base_url == fake.url and k.kind == "info"
    two = [jg.get_judge(f"openai:org/tqa-{{kind}}-judge@{fake.url}", kind, cache=False) for kind in ("truth", "info")]
    assert [t.model for t in two] == ["org/tqa-truth-judge", "org/tqa-info-judge"]  # one spec, both judges
    assert jg.with_base_url("local", fake.url) == "local" and jg.with_base_url("openai:m", None) == "openai:m"
    with pytest.raises(ValueError, match="already names"):
        jg.with_base_url(f"openai:m@{fake.url}", "http://elsewhere/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://10.0.0.1:9/v1")
    assert jg.get_judge("openai:m", "truth", cache=False).base_url == "http://10.0.0.1:9/v1"
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert jg.get_judge("openai:m", "truth", cache=False).base_url == "https://api.openai.com/v1"
    with pytest.raises(ValueError, match="openai:<model>"):
        jg.get_judge("gpt:m", "truth")
    # the key travels as a Bearer token and is never described
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    kj = jg.get_judge("openai:gpt-fake", "truth", base_url=fake.url, cache=False)
    kj.score(QS[:1], AS[:1])
    assert fake.state.requests[-1]["auth"] == "Bearer sk-test-123"
    assert "sk-test-123" not in json.dumps(kj.describe())
    assert jg.get_judge("none", "truth", base_url=fake.url) is None


def test_cli_eval_with_openai_judge(fake, tmp_path, monkeypatch, data_dir, cli):
    monkeypatch.setenv("VERACITY_CACHE", str(tmp_path / "vc"))  # the judge cache goes there
    args = ["eval", "truthfulqa", "--model", "tiny-llama", "--metrics", "judge", "--judge", "openai:fake",
            "--judge-base-url", fake.url, "--limit", "2", "--max-new-tokens", "4", "--data-dir", str(data_dir)]
    cli(args + ["--out", str(tmp_path / "e")])
    res = json.loads((tmp_path / "e" / "results.json").read_text())
    assert res["judges"]["truth"]["base_url"] == fake.url and res["judges"]["info"]["model"] == "fake"
    assert res["config"]["judge"] == f"openai:fake@{fake.url}"
    assert len(fake.state.requests) == 4  # 2 folds x (truth, info), one batch each
    for q in res["questions"]:
        prompt = jg.judge_prompt(q["question"], q["answer"], "truth")
        assert q["true_score"] == pytest.approx(0.0 if "absent" in prompt else p_yes(prompt))
    n = len(fake.state.requests)
    cli(args + ["--out", str(tmp_path / "e2")])  # the rerun: answers cached
    assert len(fake.state.requests) == n
    fake.state.reset(fail_with=401, fail_times=-1)  # a refused key: a clear CLI error, no traceback
    # cli's runner re-raises every exception but SystemExit: exit 2 means no JudgeError escaped
    assert "HTTP 401" in cli(["judge", "eval", "--kind", "truth", "--judge", "openai:never-seen",
                              "--judge-base-url", fake.url, "--data-dir", str(data_dir)], code=2)


def test_iti_validate_and_compare_reach_the_endpoint(fake, tmp_path, monkeypatch, data_dir, cli):
    """--judge-base-url on `iti validate` and `compare-interventions`: the judges built deep inside (and in
    sweep workers) get the URL through the recorded spec "openai:<model>@<url>"."""
    monkeypatch.setenv("VERACITY_CACHE", str(tmp_path / "vc"))
    common = ["--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data_dir), "--acts",
              str(tmp_path / "acts"), "--limit", "4", "--folds", "2", "--judge", "openai:fake", "--judge-base-url",
              fake.url, "--ce-texts", "0", "--num-heads", "2", "--alpha", "5"]
    cli(["iti", "validate", *common, "--no-baseline", "--out", str(tmp_path / "v")])
    assert json.loads((tmp_path / "v" / "config.json").read_text())["judge"] == f"openai:fake@{fake.url}"
    res = json.loads((tmp_path / "v" / "results.json").read_text())
    assert {"true", "info", "true_info"} <= set(res["summary"])
    n = len(fake.state.requests)
    assert n == 4 and {r["body"]["model"] for r in fake.state.requests} == {"fake"}  # 2 folds x truth, info
    monkeypatch.setenv("VERACITY_CACHE", str(tmp_path / "vc2"))  # a fresh judge cache: it must ask again
    cli(["compare-interventions", *common, "--methods", "baseline", "--side-effects", "none",
         "--out", str(tmp_path / "c")])
    rows = json.loads((tmp_path / "c" / "results.json").read_text())["methods"]
    assert "true_info" in rows[0] and len(fake.state.requests) > n


def _rows(path) -> int:
    import sqlite3

    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM judge_cache").fetchone()[0]


def test_429_then_success_is_cached_once(fake, tmp_path):
    fake.state.reset(fail_with=429, fail_times=1, retry_after="0")
    cache = tmp_path / "c.sqlite"
    j = jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url, cache=cache, max_tries=3, backoff=0.001)
    np.testing.assert_allclose(j.score(QS, AS), expected("truth"), rtol=1e-12)
    assert len(fake.state.requests) == 2 and _rows(cache) == len(QS)  # one row per prompt, written once
    fake.state.reset()
    again = jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url, cache=cache).score(QS, AS)
    np.testing.assert_allclose(again, expected("truth"), rtol=1e-12)
    assert fake.state.requests == []


def test_persistent_429_fails_and_retry_after_is_capped(fake, tmp_path):
    """Retry-After: 3600 is honoured only up to max_backoff (0.05 s here); after max_tries, one error."""
    fake.state.reset(fail_with=429, fail_times=-1, retry_after="3600")
    cache = tmp_path / "c.sqlite"
    j = jg.OpenAIJudge("fake-judge", "truth", base_url=fake.url, cache=cache, max_tries=3, backoff=0.001,
                       max_backoff=0.05)
    t0 = time.monotonic()
    with pytest.raises(jg.JudgeError, match="failed after 3 tries; last error: HTTP 429.*fake failure") as e:
        j.score(QS, AS)
    assert time.monotonic() - t0 < 2 and e.value.status == 429 and len(fake.state.requests) == 3
    assert _rows(cache) == 0


# ---------------------------------------------------------------------------- where the prompts may go
BAD_URLS = [  # (value, what the error says)
    ("localhost:8000/v1", "has no scheme"), ("127.0.0.1:8000/v1", "has no scheme"),
    ("ftp://127.0.0.1/v1", "ftp:// is not supported"), ("file:///etc/passwd", "file:// is not supported"),
    ("http://", "names no host"), ("http:///v1", "names no host"), ("http://:8000/v1", "names no host"),
    ("", "is empty"), ("   ", "is empty"), ("http://127.0.0.1:99999/v1", "port"),
    ("http://user:pw@127.0.0.1/v1", "user info"), ("http://127.0.0.1/v1?key=1", "no query"),
    ("http://127.0.0.1/v1 x", "whitespace"), ("http://[::1/v1", "not a valid URL"),
    ("http://bad_host!/v1", "not a valid URL"),
]


@pytest.fixture
def no_requests(monkeypatch):
    """Any HTTP request fails the test: refusals must come before the first byte is sent."""
    import httpx

    def send(*a, **k):
        raise AssertionError("a request was sent")

    monkeypatch.setattr(httpx.Client, "send", send)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-sent")


@pytest.mark.parametrize("url,expect", BAD_URLS, ids=[u or "empty" for u, _ in BAD_URLS])
def test_bad_base_url_is_refused_on_every_path(url, expect, no_requests, monkeypatch, tmp_path):
    """--judge-base-url, base_url=, $OPENAI_BASE_URL and the spec's @url: a BadInput naming where it came
    from, never a silent fallback to api.openai.com; nothing sent, no cache file made."""
    from veracity.validation import BadInput

    monkeypatch.setenv("VERACITY_CACHE", str(tmp_path / "vc"))
    with pytest.raises(BadInput, match="--judge-base-url.*" + re.escape(expect)):
        jg.with_base_url("openai:x", url)
    with pytest.raises(BadInput, match="--judge-base-url.*" + re.escape(expect)):
        jg.get_judge("openai:x", "truth", base_url=url)
    with pytest.raises(BadInput, match="base_url.*" + re.escape(expect)):
        jg.OpenAIJudge("x", "truth", base_url=url)
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    with pytest.raises(BadInput, match=r"\$OPENAI_BASE_URL.*" + re.escape(expect)):
        jg.get_judge("openai:x", "truth")
    with pytest.raises(BadInput, match=r"\$OPENAI_BASE_URL"):
        jg.with_base_url("openai-chat:x", None)  # checked when the CLI folds the spec, before any folder
    monkeypatch.delenv("OPENAI_BASE_URL")
    if url.strip() and "://" in url:  # in the spec: as written by hand
        with pytest.raises(BadInput, match=re.escape(expect)):
            jg.get_judge(f"openai:x@{url}", "truth")
    assert not (tmp_path / "vc").exists()


@pytest.mark.parametrize("spec,expect", [
    ("openai:x@localhost:8000/v1", "reads as a base URL without a scheme"),
    ("openai:x@127.0.0.1", "reads as a base URL without a scheme"),
    ("openai-chat:x@judge.example.com", "reads as a base URL without a scheme"),
    ("openai:x@", "nothing after '@'"), ("openai:", "empty model name"),
    ("openai:@http://127.0.0.1:1/v1", "empty model name"),
    ("openai:x@ftp://127.0.0.1/v1", "ftp:// is not supported"),
])
def test_bad_url_in_the_spec_is_refused(spec, expect, no_requests):
    from veracity.validation import BadInput

    with pytest.raises(BadInput, match=re.escape(expect)):
        jg.get_judge(spec, "truth")
    with pytest.raises(BadInput, match=re.escape(expect)):
        jg.with_base_url(spec, None)


def test_good_base_urls_and_model_names_with_at(no_requests):
    for url, want in [("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1"), ("https://judge.example/v1",) * 2,
                      ("http://[::1]:8000/v1",) * 2, ("  http://localhost:8000/v1  ", "http://localhost:8000/v1")]:
        assert jg.check_base_url(url) == want
        assert jg.with_base_url("openai:m", url) == f"openai:m@{want}"
    # "@" in a model name that does not read as a host stays in the model name
    assert jg.parse_openai_spec("openai:claude-3@20240229") == ("openai", "claude-3@20240229", None)
    assert jg.parse_openai_spec("openai:m@v1.2@http://h:1/v1") == ("openai", "m@v1.2", "http://h:1/v1")
    assert jg.with_base_url("local", None) == "local"
    from veracity.validation import BadInput

    with pytest.raises(BadInput, match="other than --judge-base-url"):  # two URLs: neither is picked
        jg.get_judge("openai:m@http://127.0.0.1:1/v1", "truth", base_url="http://127.0.0.1:2/v1", cache=False)


def test_key_rules(no_requests, monkeypatch):
    """The key goes to https anywhere and to plain http only on loopback; a key a header cannot carry is
    refused without being echoed; a trailing newline (a key read from a file) is dropped."""
    from veracity.validation import BadInput

    for url in ("https://10.0.0.1/v1", "http://localhost:1/v1", "http://127.0.0.2:1/v1", "http://[::1]:1/v1"):
        assert jg.OpenAIJudge("m", "truth", base_url=url, cache=False).api_key == "sk-never-sent"
    with pytest.warns(UserWarning, match="not sent to http://10.0.0.1:9/v1"):
        j = jg.OpenAIJudge("m", "truth", base_url="http://10.0.0.1:9/v1", cache=False)
    assert j.api_key is None and j.key_withheld
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abc\n")
    assert jg.OpenAIJudge("m", "truth", base_url="http://localhost:1/v1", cache=False).api_key == "sk-abc"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abc\r\nX-Evil: 1")
    with pytest.raises(BadInput, match="cannot carry") as e:
        jg.OpenAIJudge("m", "truth", base_url="http://localhost:1/v1", cache=False)
    assert "sk-abc" not in str(e.value)


@pytest.mark.parametrize("content", [b"garbage bytes, not SQLite" * 100, b"SQLite format 3\x00" + b"\x00" * 50,
                                     "other-db", "folder"], ids=["garbage", "truncated", "other-db", "folder"])
def test_damaged_cache_is_one_error_naming_the_file(content, tmp_path, fake):
    import sqlite3

    from veracity.validation import BadInput

    path = tmp_path / "judge-cache.sqlite"
    if content == "folder":
        path.mkdir()
    elif content == "other-db":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE judge_cache (x INTEGER)")
    else:
        path.write_bytes(content)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(BadInput, match=f"judge cache {re.escape(str(path))} cannot be used"):
        jg.OpenAIJudge("m", "truth", base_url=fake.url, cache=path)
    assert (path.read_bytes() if path.is_file() else None) == before  # left as it was
    assert fake.state.requests == []


def test_cli_refuses_a_bad_base_url_on_every_command(no_requests, tmp_path, monkeypatch, data_dir, cli):
    """Every command with --judge-base-url (read from the Typer app): --judge-base-url without a scheme,
    ftp:// or with an empty host, a bad @url in --judge and a bad $OPENAI_BASE_URL are refused with one
    line, exit 2, before any folder or cache file is made."""
    import typer.main

    from veracity.cli.main import app

    def walk(c, path):
        for n, s in (getattr(c, "commands", None) or {}).items():
            yield from walk(s, path + [n])
        if not getattr(c, "commands", None):
            yield path, c

    cmds = [(p, {q.name for q in c.params}) for p, c in walk(typer.main.get_command(app), [])
            if "judge_base_url" in {q.name for q in c.params}]
    assert len(cmds) >= 6, cmds  # compare-interventions, iti validate/sweep, eval truthfulqa, judge eval, steer sweep
    monkeypatch.setenv("VERACITY_CACHE", str(tmp_path / "vc"))
    cases = [(["--judge", "openai:x", "--judge-base-url", u], e, {}) for u, e in
             [("localhost:8000/v1", "--judge-base-url 'localhost:8000/v1' has no scheme"),
              ("ftp://127.0.0.1/v1", "ftp:// is not supported"), ("http://", "names no host")]]
    cases += [(["--judge", "openai:x@localhost:8000/v1"], "reads as a base URL without a scheme", {}),
              (["--judge", "openai:x"], "$OPENAI_BASE_URL 'ftp://h/v1'", {"OPENAI_BASE_URL": "ftp://h/v1"})]
    for path, params in cmds:
        for extra, expect, env in cases:
            out = tmp_path / "out"
            args = [*path, *extra] + (["--kind", "truth"] if "kind" in params else ["--out", str(out)])
            args += ["--model", "tiny-llama"] if "model" in params else []
            args += ["--data-dir", str(data_dir)] if "data_dir" in params else []
            for k, v in env.items():
                monkeypatch.setenv(k, v)
            text = cli(args, code=2)
            for k in env:
                monkeypatch.delenv(k)
            errors = [line for line in text.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and expect in errors[0], (args, text)
            assert "Traceback" not in text and not out.exists() and not (tmp_path / "vc").exists(), args


def test_cli_eval_with_a_nan_judge_reply(fake, tmp_path, monkeypatch, data_dir, cli):
    """A judge answering NaN: `eval truthfulqa` stops with one line naming the URL (it used to report
    True 100% and cache the NaN); nothing cached, no results.json."""
    monkeypatch.setenv("VERACITY_CACHE", str(tmp_path / "vc"))
    monkeypatch.setattr(sys.modules[__name__], "top_for", lambda prompt, yes=" yes", no=" no":
                        {yes: float("nan"), no: -1.0})
    text = cli(["eval", "truthfulqa", "--model", "tiny-llama", "--metrics", "judge", "--judge", "openai:fake",
                "--judge-base-url", fake.url, "--limit", "2", "--max-new-tokens", "2", "--data-dir", str(data_dir),
                "--out", str(tmp_path / "e")], code=2)
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    assert f"POST {fake.url}/completions: invalid reply" in errors[0] and "NaN" in errors[0]
    assert len(fake.state.requests) == 1 and _rows(tmp_path / "vc" / "judge-cache.sqlite") == 0
    assert not (tmp_path / "e" / "results.json").exists()


def test_cli_damaged_judge_cache(fake, tmp_path, monkeypatch, data_dir, cli):
    """A garbage judge-cache.sqlite in the veracity cache: one line naming it, exit 2, the file and --out
    left as they were, no request."""
    monkeypatch.setenv("VERACITY_CACHE", str(tmp_path / "vc"))
    (tmp_path / "vc").mkdir()
    bad = tmp_path / "vc" / "judge-cache.sqlite"
    bad.write_bytes(b"\x00garbage, not SQLite\xff" * 64)
    text = cli(["eval", "truthfulqa", "--model", "tiny-llama", "--metrics", "judge", "--judge", "openai:fake",
                "--judge-base-url", fake.url, "--limit", "2", "--data-dir", str(data_dir),
                "--out", str(tmp_path / "e")], code=2)
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"judge cache {bad} cannot be used" in errors[0], text
    assert bad.read_bytes() == b"\x00garbage, not SQLite\xff" * 64 and not (tmp_path / "e").exists()
    assert fake.state.requests == []
