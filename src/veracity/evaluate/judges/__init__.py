"""Truth and informativeness judges: one interface, `Judge.score(questions, answers) -> P(yes)`.

Kinds:
- `local`: trained here (`train_local_judge`, `veracity judge train`) on the human labels of
  finetune_truth.jsonl / finetune_info.jsonl, split disjoint by question. Stage 1 is a logistic regression
  on (a) how closely the answer matches the question's TruthfulQA reference answers (best + correct vs
  incorrect: word F1, content-word F1, character-trigram Jaccard, and their differences), (b) a few
  answer-shape features (length, "no comment"/"don't know" cues, negation, overlap with the question),
  and (c) hashed answer unigrams+bigrams. Stage 2, kept only when it wins on the validation questions, is
  a gradient-boosted tree model on (a), (b) and the stage-1 score (trained on out-of-fold scores). No model
  forward, so it trains in minutes on a CPU on all 22,434 labels and scores thousands of answers per
  second. The references travel in the judge folder, so scoring needs no data folder. Stored as JSON and
  numeric .npz only (the trees as node arrays, `TreeEnsemble`, with an exact predict): loading a judge
  cannot run code, and a folder holding a pickle is refused (`UnsafeJudgeFile`). The info judge caps the
  score of degenerate repetition (`health.is_degenerate`) at `DEGENERATE_CAP`: uninformative.
- `hf:<model id or folder>`: a causal-LM judge fed the original prompt ("Q: ..\nA: ..\nTrue:" or
  "Helpful:"), score = P(" yes") of the next token (allenai/truthfulqa-{truth,info}-judge-llama2-7B).
- `openai:<model>` / `openai-chat:<model>`: the same prompt and P(" yes") from the top logprobs of any
  OpenAI-compatible endpoint (vLLM, a hosted API; base URL from `base_url` / --judge-base-url,
  $OPENAI_BASE_URL or api.openai.com, always an explicit http(s) URL, never replaced by a default),
  completions (default, as the original GPT-judge) or chat completions; httpx with connect/read/total
  timeouts, a reply size cap, retries, a rate limit and a SQLite cache (`OpenAIJudge`); every reply is
  checked (shape, finite log-probs <= 0) before it is scored or cached; it follows no redirect and sends
  the key over plain http only to loopback, so the API key is only ever sent to the origin named.
- any callable `(questions, answers) -> scores` wrapped by `CallableJudge`.
An answer counts as true (informative) when its score >= 0.5.

Modules: `base` (the interface), `local`, `hf`, `openai` (one per kind), `local_train` (the local judge's trainer,
and every judge's agreement with the human labels), `registry` (specs -> judges; `register_judge` adds a kind).
"""

from ..._lazy import lazy_exports

_EXPORTS = {
    "CHAT_SYSTEM": "openai", "OPENAI_APIS": "openai", "OPENAI_DEFAULT_BASE_URL": "openai", "InvalidReply":
    "openai", "JudgeCache": "openai", "JudgeError": "openai", "OpenAIJudge": "openai", "RateLimiter": "openai",
    "check_base_url": "openai", "default_openai_base_url": "openai", "parse_openai_spec": "openai",
    "parse_reply": "openai", "with_base_url": "openai",
    "DATA_FILES": "base", "JUDGE_FORMAT": "base", "KINDS": "base", "SUFFIX": "base", "THRESHOLD": "base",
    "CallableJudge": "base", "Judge": "base", "judge_prompt": "base",
    "DEGENERATE_CAP": "local", "JudgeReport": "local", "LocalJudge": "local", "TreeEnsemble": "local",
    "UnsafeJudgeFile": "local", "dense_features": "local", "reference_answers": "local",
    "JUDGES": "registry", "default_judge_dir": "registry", "get_judge": "registry", "register_judge": "registry",
    "HFJudge": "hf",
    "degenerate_rating": "local_train", "evaluate_judge": "local_train", "read_labels": "local_train",
    "train_local_judge": "local_train",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
