import json

import numpy as np
import pytest
import torch

from veracity.data.prompts import GroupedPrompt, load_prompts
from veracity.compare.acceptance import bootstrap_ci, permutation_p, run_study
from veracity.experiments.spec import SpecRun


pytestmark = pytest.mark.usefixtures("one_thread")  # shared CPU: oversubscribed threads are far slower


def test_permutation_and_bootstrap_by_hand():
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    # 6 equally likely splits of {1,2,3,4}; |diff| >= 2 for 2 of them -> exact p = 1/3
    p = permutation_p(a, b, n_perm=4000, seed=0)
    assert p == pytest.approx(1 / 3, abs=0.03)
    lo, hi = bootstrap_ci(a, b, n_boot=4000, seed=0)
    assert -3.0 <= lo <= -2.0 <= hi <= -1.0  # mean diff is -2; support of the bootstrap is [-3, -1]
    same = np.array([1.0, 1.0, 1.0])
    assert permutation_p(same, same, 100) == 1.0


def test_load_prompts_limit_and_file(tmp_path, data_dir):
    rows = load_prompts("honest-binary", data_dir, limit=10, seed=1)
    assert len(rows) == 10 and {r.group for r in rows} == {"female", "male"}
    assert not rows[0].text.endswith("[M].")
    f = tmp_path / "p.csv"
    f.write_text("prompt,group\nhello,a\nbye,b\n")
    assert [(r.text, r.group) for r in load_prompts(str(f))] == [("hello", "a"), ("bye", "b")]
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt\nhello\n")
    with pytest.raises(ValueError, match="group"):
        load_prompts(str(bad))


def test_run_study_on_tiny_pair(tmp_path, data_dir, tiny_llama):
    from veracity.models import build_tiny
    from veracity.models.arch import ArchSpec
    from veracity.models.loader import LoadedModel
    from veracity.runs import RunFolder

    main = tiny_llama
    m2, _ = build_tiny("tiny-llama", seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m2.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    asst = LoadedModel(m2, main.tokenizer, ArchSpec.from_model(m2), "noisy")
    prompts = [GroupedPrompt(t, grp) for t, grp in [("the woman is", "f"), ("she works as", "f"), ("her job", "f"),
                                                     ("the man is", "m"), ("he works as", "m"), ("his job", "m")]]
    res = run_study(main, asst, prompts, gamma=3, batch_size=4, max_new_tokens=8, n_boot=200, n_perm=200,
                    data_dir=data_dir)
    s = res.summary
    assert s["groups"] == ["f", "m"]
    comp = {c["metric"]: c for c in s["comparisons"]}
    f_vals = [r.mean_accepted for r in res.rows if r.group == "f"]
    assert comp["mean_accepted"]["mean_a"] == pytest.approx(np.mean(f_vals))
    assert 0 < comp["mean_accepted"]["p_value"] <= 1
    # 1 - TV at the last prompt position, recomputed from one unpadded plain forward per model per prompt
    for r, pr in zip(res.rows, prompts):
        ids = main.tokenizer(pr.text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            p, q = (lm.model(ids).logits[0, -1].float().softmax(-1) for lm in (main, asst))
        assert r.one_minus_tv_last == pytest.approx(1 - 0.5 * float((p - q).abs().sum()), abs=1e-5)
    assert "honest" in res.toxicity
    run = RunFolder(tmp_path / "spec", "spec", {"model": "tiny"})
    SpecRun(summary=res.summary, toxicity=res.toxicity, study=res).write(run)
    assert (tmp_path / "spec" / "histograms.png").exists()
    saved = json.loads((tmp_path / "spec" / "results.json").read_text())
    back = SpecRun.from_json(saved)
    assert back.schema_version == 1 and back.summary["groups"] == ["f", "m"]
    assert saved["headline"] == {"diff_mean_accepted": comp["mean_accepted"]["difference"],
                                 "p_value": comp["mean_accepted"]["p_value"]}
    import csv

    with open(tmp_path / "spec" / "prompts.csv", newline="", encoding="utf-8") as f:
        assert [r["group"] for r in csv.DictReader(f)] == [r.group for r in res.rows]
