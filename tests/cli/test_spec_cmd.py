import json


def test_spec_and_finetune_commands(tmp_path, data_dir, cli):
    cli(["spec", "--main", "tiny-llama", "--assistant", "int8", "--limit", "6",
         "--max-new-tokens", "4", "--gamma", "3", "--threads", "1",
         "--out", str(tmp_path / "s"), "--data-dir", str(data_dir)])
    res = json.loads((tmp_path / "s" / "results.json").read_text())
    assert res["kind"] == "spec" and set(res["summary"]["groups"]) == {"female", "male"}
    assert (tmp_path / "s" / "histograms.png").exists()
    assert "tokenizer" in cli(["spec", "--main", "tiny-llama", "--assistant", "tiny-gpt2", "--limit", "2",
                               "--out", str(tmp_path / "s2"), "--data-dir", str(data_dir)], code=2)
    cli(["finetune", "--model", "tiny-llama", "--data", "boolq-passages", "--corpus-limit", "8",
         "--max-steps", "2", "--batch-size", "4", "--eval-every", "2", "--track", "kl:tiny-llama",
         "--limit", "4", "--threads", "1", "--out", str(tmp_path / "f"), "--data-dir", str(data_dir)])
    res = json.loads((tmp_path / "f" / "results.json").read_text())
    assert [m["step"] for m in res["milestones"]] == [0, 2] and res["milestones"][0]["kl"] < 1e-5
