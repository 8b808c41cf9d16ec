"""Every bad input of issue 14, through the CLI on tiny models: exit status 2, one `error:` line naming the
cause, no traceback, and --out exactly as it was before (nothing created, nothing changed).

Each case is (id, argv template, expected text in the error line, setup of --out). Templates use {out},
{store} (a finished tiny-llama capture store), {tmp} (a per-test scratch folder) and {data} (the data
folder). Setups create what --out holds before the command runs (a user's folder, a run of another kind,
a regular file, ...)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from veracity.cli.main import app
from veracity.methods.steers import steers_with

runner = CliRunner()  # the table test below reads r.exception and names the failing row; the rest use `cli`
TINY = ["--model", "tiny-llama"]


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def store(tmp_path_factory, cli):
    """A finished 24-row store of tiny-llama residuals and heads (3 shards)."""
    out = tmp_path_factory.mktemp("store") / "cap"
    cli(["capture", *TINY, "--dataset", "synthetic", "--limit", "24", "--sites", "resid,heads", "--shard-size", "10",
         "--out", str(out)])
    return out


def snapshot(path: Path):
    """Everything under path (relative name -> bytes; folders as None), or None when it does not exist."""
    if not path.exists():
        return None
    if path.is_file():
        return path.read_bytes()
    return {str(p.relative_to(path)): (None if p.is_dir() else p.read_bytes()) for p in sorted(path.rglob("*"))}


def _user_folder(out: Path, tmp: Path) -> None:
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes")
    (out / "sub" / "data.csv").write_text("a,b\n1,2\n")


def _invalid_run_config(out: Path, tmp: Path) -> None:
    out.mkdir(parents=True)
    (out / "config.json").write_text("{not json")


def _probe_run(out: Path, tmp: Path) -> None:
    from veracity.runs import RunFolder

    run = RunFolder(out, "probe", {"model": "tiny-llama"}, seed=0)
    run.write_csv("summary.csv", [{"layer": 0, "acc": 0.5}])
    run.finish({"value": 1}, headline={"acc": 0.5})


def _capture_store(out: Path, tmp: Path) -> None:
    from veracity.capture import capture
    from veracity.models import load

    capture(load("tiny-llama", device="cpu"), ["a b", "c d"], "resid.0", out=out, progress=False)


def _regular_file(out: Path, tmp: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("not a folder")


def _gguf_files(out: Path, tmp: Path) -> None:
    (tmp / "empty.gguf").write_bytes(b"")
    (tmp / "garbage.gguf").write_bytes(b"hello, this is not a model\n" * 10)
    (tmp / "truncated.gguf").write_bytes(b"GGUF\x03\x00\x00\x00\x01\x02")


def _bad_model_folder(out: Path, tmp: Path) -> None:
    (tmp / "model").mkdir()
    (tmp / "model" / "config.json").write_text("{model_type: llama")


def _bad_tqa(out: Path, tmp: Path) -> None:
    (tmp / "tqa_missing").mkdir()
    (tmp / "tqa_bad" / "truthfulqa").mkdir(parents=True)
    (tmp / "tqa_bad" / "truthfulqa" / "TruthfulQA.csv").write_text('garbage,"unterminated\nx\n')
    mc = Path(os.environ.get("VERACITY_DATA", "")) / "truthfulqa" / "mc_task_v0.json"
    if mc.is_file():  # only the CSV is malformed
        shutil.copy(mc, tmp / "tqa_bad" / "truthfulqa" / mc.name)


def _bad_interventions(out: Path, tmp: Path) -> None:
    (tmp / "corrupt.json").write_text("{not json")
    (tmp / "corrupt.safetensors").write_bytes(b"\x00" * 16)
    (tmp / "badtensors.json").write_text(json.dumps({"format": "veracity-intervention", "alpha": 1.0, "n_layers": 4,
                                                     "n_heads": 4, "head_dim": 16, "k": 0, "heads": []}))
    (tmp / "badtensors.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")


def _llama_intervention(out: Path, tmp: Path) -> None:
    """An intervention fitted (as far as its record says) on tiny-llama: 4 layers x 4 heads x 16, like tiny-qwen2."""
    import torch

    from veracity.models import load
    from veracity.steer import Intervention

    lm = load("tiny-llama", device="cpu")
    Intervention(heads=[(1, 2), (3, 0)], directions=torch.nn.functional.normalize(torch.randn(2, 16), dim=-1),
                 sigmas=torch.ones(2), alpha=2.0, n_layers=4, n_heads=4, head_dim=16,
                 provenance={"model": "tiny-llama", "model_fingerprint": lm.fingerprint}).save(tmp / "llama_iv")


def _damaged_store(out: Path, tmp: Path) -> None:
    from veracity.capture import capture
    from veracity.models import load

    s = tmp / "damaged"
    capture(load("tiny-llama", device="cpu"), [f"text {i}" for i in range(6)], "resid", labels=[0, 1] * 3, out=s,
            shard_size=2, progress=False)
    shard = s / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:-64])


def _manifest_not_json(out: Path, tmp: Path) -> None:
    _damaged_store(out, tmp)
    (tmp / "damaged" / "manifest.json").write_text("{this is not json")


def _locked(out: Path, tmp: Path) -> None:
    from veracity.runs import FolderLock

    out.mkdir(parents=True)
    _locked.lock = FolderLock(out).acquire()  # held by "another process" for the duration of the case


def _detector(tmp: Path, model: str) -> None:
    """A kept detector of `model` at {tmp}/det (pre-generation token, layer 0)."""
    import numpy as np

    from veracity.evaluate.detector import Detector
    from veracity.models import load

    lm = load(model, device="cpu")
    d = lm.arch.hidden_size
    Detector([0], ["pre"], np.ones((1, d)), np.zeros(1), np.zeros((1, d)), np.ones((1, d)), np.ones(1), 0.0, 0.0,
             {"method": "platt", "a": 1.0, "b": 0.0}, lm.fingerprint).save(tmp / "det")


def _other_model_detector(out: Path, tmp: Path) -> None:
    _detector(tmp, "tiny-qwen2")


def _damaged_detector(out: Path, tmp: Path) -> None:
    _detector(tmp, "tiny-llama")
    (tmp / "det.safetensors").write_bytes(b"not a safetensors file")


def _read_only(out: Path, tmp: Path) -> None:
    pass  # see the monkeypatch in the test: no read-only file system can be mounted in a test


SWEEP = ["iti", "sweep", *TINY, "--limit", "4", "--alphas", "0,5", "--judge", "none", "--ce-texts", "0",
         "--side-effects", "none"]

CASES = [
    # ---- run folders
    ("overwrite-user-folder", ["probe", "--acts", "{store}", "--out", "{out}", "--overwrite"],
     "holds no veracity run (notes.txt, sub/)", _user_folder),
    ("write-into-user-folder", ["probe", "--acts", "{store}", "--out", "{out}"], "holds no veracity run", _user_folder),
    ("capture-overwrite-user-folder", ["capture", *TINY, "--limit", "4", "--out", "{out}", "--overwrite"],
     "holds no veracity run", _user_folder),
    ("sweep-into-probe-run", [*SWEEP, "--num-heads", "2", "--out", "{out}"], "holds a probe run", _probe_run),
    ("compare-into-probe-run", ["compare-interventions", *TINY, "--methods", "baseline", "--limit", "4",
                                "--out", "{out}"], "holds a probe run", _probe_run),
    ("capture-into-probe-run", ["capture", *TINY, "--limit", "4", "--out", "{out}"], "holds a probe run", _probe_run),
    ("probe-into-store", ["probe", "--acts", "{store}", "--out", "{out}"], "holds a capture run", _capture_store),
    ("eval-into-store", ["eval", "truthfulqa", *TINY, "--metrics", "mc", "--judge", "none", "--limit", "4",
                         "--out", "{out}"], "holds a capture run", _capture_store),
    ("out-with-invalid-config", ["probe", "--acts", "{store}", "--out", "{out}", "--overwrite"],
     "config.json is not valid JSON", _invalid_run_config),
    ("finished-run", ["probe", "--acts", "{store}", "--out", "{out}"], "already holds a finished run", _probe_run),
    ("out-is-a-file", ["probe", "--acts", "{store}", "--out", "{out}"], "is a file, not a folder", _regular_file),
    ("eval-out-is-a-file", ["eval", "truthfulqa", *TINY, "--metrics", "mc", "--judge", "none", "--out", "{out}"],
     "is a file, not a folder", _regular_file),
    ("out-read-only", ["probe", "--acts", "{store}", "--out", "{out}"], "read-only file system", _read_only),
    ("locked-folder", ["probe", "--acts", "{store}", "--out", "{out}", "--methods", "mass-mean", "--split", "random",
                       "--seeds", "1"], "in use by another veracity process", _locked),
    # ---- numbers
    ("num-heads-above-LxH", ["iti", "fit", *TINY, "--num-heads", "17", "--out", "{out}/iv"],
     "--num-heads 17 is more than the model's 4 layers x 4 heads = 16", None),
    ("num-heads-zero", ["iti", "validate", *TINY, "--num-heads", "0", "--out", "{out}"], "--num-heads must be at least 1",
     None),
    ("num-heads-negative-sweep", [*SWEEP, "--num-heads", "2,-1", "--out", "{out}"],
     "--num-heads must be at least 1, got -1", None),
    ("num-heads-above-LxH-sweep", [*SWEEP, "--num-heads", "2,99", "--out", "{out}"],
     "--num-heads 99 is more than", None),
    ("num-heads-above-LxH-compare", ["compare-interventions", *TINY, "--methods", "iti", "--num-heads", "64",
                                     "--limit", "4", "--out", "{out}"], "--num-heads 64 is more than", None),
    ("alpha-nan", ["iti", "validate", *TINY, "--alpha", "nan", "--out", "{out}"], "--alpha must be a finite number",
     None),
    ("alpha-inf-fit", ["iti", "fit", *TINY, "--alpha", "inf", "--out", "{out}/iv"], "--alpha must be a finite number",
     None),
    ("alphas-inf-sweep", ["iti", "sweep", *TINY, "--alphas", "0,inf", "--out", "{out}"],
     "--alphas must be a finite number", None),
    ("alpha-nan-bake", ["iti", "bake", *TINY, "-i", "{tmp}/iv", "--alpha", "nan", "--out", "{out}"],
     "--alpha must be a finite number", None),
    ("limit-0-eval", ["eval", "truthfulqa", *TINY, "--limit", "0", "--out", "{out}"], "--limit must be a positive", None),
    ("limit-0-compare", ["compare-interventions", *TINY, "--limit", "0", "--out", "{out}"],
     "--limit must be a positive", None),
    ("limit-negative-capture", ["capture", *TINY, "--limit", "-3", "--out", "{out}"], "--limit must be a positive", None),
    ("limit-0-sweep", ["iti", "sweep", *TINY, "--limit", "0", "--out", "{out}"], "--limit must be a positive", None),
    ("limit-0-sycophancy", ["sycophancy", *TINY, "--limit", "0", "--out", "{out}"], "--limit must be a positive", None),
    ("limit-0-ccs", ["ccs", *TINY, "--limit", "0", "--out", "{out}"], "--limit must be a positive", None),
    ("limit-0-spec", ["spec", "--main", "tiny-llama", "--limit", "0", "--out", "{out}"], "--limit must be a positive",
     None),
    ("folds-1-validate", ["iti", "validate", *TINY, "--folds", "1", "--out", "{out}"], "--folds must be at least 2", None),
    ("folds-above-questions-validate", ["iti", "validate", *TINY, "--num-heads", "2", "--folds", "9", "--limit", "4",
                                        "--judge", "none", "--out", "{out}"], "--folds 9 is more than the 4 questions",
     None),
    ("num-heads-default-above-LxH", ["iti", "validate", *TINY, "--limit", "4", "--out", "{out}"],
     "--num-heads 48 is more than the model's 4 layers x 4 heads", None),
    ("folds-1-eval", ["eval", "truthfulqa", *TINY, "--folds", "1", "--out", "{out}"], "--folds must be at least 2", None),
    ("folds-above-questions-eval", ["eval", "truthfulqa", *TINY, "--folds", "6", "--limit", "5", "--metrics", "mc",
                                    "--judge", "none", "--out", "{out}"], "--folds 6 is more than the 5 questions", None),
    # ---- conflicting or empty options
    ("probe-heads-with-site", ["probe", "--acts", "{store}", "--heads", "--site", "resid", "--out", "{out}"],
     "--heads probes the heads.* sites; drop --site resid", None),
    ("split-random-with-test-acts", ["probe", "--acts", "{store}", "--split", "random", "--test-acts", "{store}",
                                     "--out", "{out}"], "--test-acts is only used by --split transfer", None),
    ("judge-metric-without-judge", ["eval", "truthfulqa", *TINY, "--metrics", "judge", "--judge", "none",
                                    "--out", "{out}"], "measures nothing", None),
    # ---- models
    ("gguf-empty", ["capture", "--model", "{tmp}/empty.gguf", "--limit", "4", "--out", "{out}"],
     "is not a GGUF file (empty)", _gguf_files),
    ("gguf-garbage", ["capture", "--model", "{tmp}/garbage.gguf", "--limit", "4", "--out", "{out}"],
     "is not a GGUF file (no GGUF header)", _gguf_files),
    ("gguf-truncated", ["capture", "--model", "{tmp}/truncated.gguf", "--limit", "4", "--out", "{out}"],
     "could not be read as a GGUF model", _gguf_files),
    ("model-folder-bad-config", ["capture", "--model", "{tmp}/model", "--limit", "4", "--out", "{out}"],
     "config.json is not valid JSON", _bad_model_folder),
    ("mistyped-alias", ["capture", "--model", "smolm2", "--limit", "4", "--out", "{out}"],
     "no such model file or folder: smolm2 (no local folder by that name", None),
    ("missing-relative-path", ["capture", "--model", "./models/nothere", "--limit", "4", "--out", "{out}"],
     "no such model file or folder: ./models/nothere", None),
    ("spec-unknown-model", ["spec", "--main", "nosuch-model", "--out", "{out}"], "no such model file or folder", None),
    ("demo-unknown-model", ["demo", "--model", "nosuch-model", "--out", "{out}"], "no such model file or folder", None),
    ("finetune-unknown-model", ["finetune", "--model", "nosuch-model", "--out", "{out}"],
     "no such model file or folder", None),
    ("sites-layer-out-of-range", ["capture", *TINY, "--sites", "resid.99", "--limit", "4", "--out", "{out}"],
     "layer 99 out of range for a 4-layer model", None),
    ("ccs-layers-out-of-range", ["ccs", *TINY, "--layers", "99", "--limit", "4", "--no-zero-shot", "--out", "{out}"],
     "--layers: layer 99 out of range for a 4-layer model", None),
    ("probe-layers-out-of-range", ["probe", "--acts", "{store}", "--layers", "7", "--out", "{out}"],
     "--layers: layer 7 out of range", None),
    # ---- data and files
    ("eval-missing-truthfulqa", ["eval", "truthfulqa", *TINY, "--data-dir", "{tmp}/tqa_missing", "--metrics", "mc",
                                 "--judge", "none", "--out", "{out}"], "TruthfulQA.csv: file not found", _bad_tqa),
    ("eval-malformed-truthfulqa", ["eval", "truthfulqa", *TINY, "--data-dir", "{tmp}/tqa_bad", "--metrics", "mc",
                                   "--judge", "none", "--out", "{out}"], "TruthfulQA.csv, line 1: missing column",
     _bad_tqa),
    ("bake-missing-intervention", ["iti", "bake", *TINY, "-i", "{tmp}/nothere", "--out", "{out}"],
     "nothere.json not found", None),
    ("bake-corrupt-json", ["iti", "bake", *TINY, "-i", "{tmp}/corrupt", "--out", "{out}"],
     "corrupt.json is not valid JSON", _bad_interventions),
    ("bake-corrupt-tensors", ["iti", "bake", *TINY, "-i", "{tmp}/badtensors", "--out", "{out}"],
     "badtensors.safetensors is not a safetensors file", _bad_interventions),
    ("bake-other-model-same-shape", ["iti", "bake", "--model", "tiny-qwen2", "-i", "{tmp}/llama_iv", "--out", "{out}"],
     "intervention fitted on another model", _llama_intervention),
    ("acts-damaged-store", ["probe", "--acts", "{tmp}/damaged", "--out", "{out}"],
     "shard-00001.safetensors has", _damaged_store),
    ("acts-manifest-not-json", ["probe", "--acts", "{tmp}/damaged", "--out", "{out}"],
     "manifest.json is not valid JSON", _manifest_not_json),
    ("acts-not-a-store", ["probe", "--acts", "{tmp}", "--out", "{out}"], "is not an activation store", None),
    # ---- declared constraints (issue 25, mechanism 2): refused when the command's Config is built
    ("probe-kfold-k-0", ["probe", "--acts", "{store}", "--split", "kfold", "--k", "0", "--out", "{out}"],
     "--k must be at least 2, got 0", None),
    ("probe-k-without-kfold", ["probe", "--acts", "{store}", "--split", "random", "--k", "3", "--out", "{out}"],
     "--k is only used by --split kfold, not --split random", None),
    ("probe-methods-empty", ["probe", "--acts", "{store}", "--methods", "", "--out", "{out}"],
     "--methods must list at least 1 value, got nothing", None),
    ("eval-instruction-unknown", ["eval", "truthfulqa", *TINY, "--instruction", "nosuch", "--out", "{out}"],
     "--instruction must be one of default, informative, none, got 'nosuch'", None),
    ("eval-lm-docs-0", ["eval", "truthfulqa", *TINY, "--lm-docs", "0", "--out", "{out}"],
     "--lm-docs must be at least 1, got 0", None),
    ("eval-seed-negative", ["eval", "truthfulqa", *TINY, "--seed", "-1", "--out", "{out}"],
     "--seed must be an integer in [0, 2**32 - 1], got -1", None),
    ("iti-sweep-metric-unknown", ["iti", "sweep", *TINY, "--metric", "nosuch", "--out", "{out}"],
     "--metric must be one of true_info, true_info_per_answer, true, info", None),
    ("steer-sweep-metric-unknown", ["steer", "sweep", *TINY, "--metric", "nosuch", "--out", "{out}"],
     "--metric must be one of true_info, true_info_per_answer, true, info", None),
    ("iti-sweep-alphas-empty", ["iti", "sweep", *TINY, "--alphas", "", "--out", "{out}"],
     "--alphas must list at least 1 value, got nothing", None),
    ("steer-sweep-alphas-empty", ["steer", "sweep", *TINY, "--alphas", ",", "--out", "{out}"],
     "--alphas must list at least 1 value, got nothing", None),
    ("iti-sweep-num-heads-empty", ["iti", "sweep", *TINY, "--num-heads", "", "--out", "{out}"],
     "--num-heads must list at least 1 value, got nothing", None),
    ("steer-sweep-iti-with-layers", ["steer", "sweep", *TINY, "--method", "iti", "--layers", "1", "--out", "{out}"],
     f"--layers is only used by --method {' or '.join(steers_with('layers'))}, not --method iti; drop --layers", None),
    ("steer-sweep-caa-with-num-heads", ["steer", "sweep", *TINY, "--method", "caa", "--num-heads", "8", "--out",
                                        "{out}"],
     "--num-heads is only used by --method iti, not --method caa; drop --num-heads", None),
    ("steer-sweep-caa-with-direction", ["steer", "sweep", *TINY, "--direction", "probe", "--out", "{out}"],
     "--direction is only used by --method iti, not --method caa; drop --direction", None),
    ("steer-sweep-lat-with-sigma-from", ["steer", "sweep", *TINY, "--method", "lat", "--sigma-from", "all", "--out",
                                         "{out}"],
     "--sigma-from is only used by --method iti, not --method lat; drop --sigma-from", None),
    ("steer-sweep-param-undeclared", ["steer", "sweep", *TINY, "--method", "caa", "--steer-param", "reference=all",
                                      "--out", "{out}"],
     "--steer-param reference: no chosen steer (caa) has a parameter 'reference'; theirs: layer_select", None),
    ("steer-sweep-param-swept", ["steer", "sweep", *TINY, "--steer-param", "layer_select=cosmic", "--out", "{out}"],
     "--steer-param layer_select: the sweep sets layer_select itself (--cosmic reports COSMIC's layer)", None),
    ("steer-sweep-param-no-value", ["steer", "sweep", *TINY, "--method", "ace", "--steer-param", "reference",
                                    "--out", "{out}"],
     "--steer-param: give NAME=VALUE, got 'reference'", None),
    ("steer-sweep-param-bad-value", ["steer", "sweep", *TINY, "--method", "ace", "--steer-param", "reference=nosuch",
                                     "--out", "{out}"],
     "reference must be one of false, all, got 'nosuch'", None),
    ("steer-sweep-iti-with-cosmic", ["steer", "sweep", *TINY, "--method", "iti", "--cosmic", "--out", "{out}"],
     f"--cosmic is only used by --method {' or '.join(steers_with('layer_select'))}, not --method iti; drop --cosmic",
     None),
    ("compare-steer-param-no-chosen-steer", ["compare-interventions", *TINY, "--methods", "baseline,caa",
                                             "--steer-param", "alpha=90", "--out", "{out}"],
     "--steer-param alpha: no chosen steer (caa) has a parameter 'alpha'; theirs: layer_select", None),
    ("compare-steer-param-not-a-number", ["compare-interventions", *TINY, "--methods", "angular",
                                          "--steer-param", "alpha=wide", "--out", "{out}"],
     "--steer-param alpha: give a number, got 'wide'", None),
    ("iti-sweep-ray-option-local", ["iti", "sweep", *TINY, "--ray-workers", "2", "--out", "{out}"],
     "--ray-workers is only used by --executor ray, not --executor local", None),
    ("iti-validate-seed-negative", ["iti", "validate", *TINY, "--seed", "-1", "--out", "{out}"],
     "--seed must be an integer in [0, 2**32 - 1], got -1", None),
    ("iti-fit-direction-unknown", ["iti", "fit", *TINY, "--direction", "nosuch", "--out", "{out}/iv"],
     "--direction must be one of com, probe, random, ccs, got 'nosuch'", None),
    ("compare-methods-empty", ["compare-interventions", *TINY, "--methods", "", "--out", "{out}"],
     "--methods must list at least 1 value, got nothing", None),
    ("compare-residual-alpha-nan", ["compare-interventions", *TINY, "--residual-alpha", "nan", "--out", "{out}"],
     "--residual-alpha must be a finite number, got nan", None),
    ("compare-method-unknown", ["compare-interventions", *TINY, "--methods", "baseline,nosuch", "--out", "{out}"],
     "--methods must be a method (prompt, trainer, steer and '+' combinations), got 'nosuch'", None),
    ("compare-detector-missing", ["compare-interventions", *TINY, "--methods", "baseline", "--limit", "4",
                                  "--detector", "{tmp}/nosuch", "--out", "{out}"], "--detector: ", None),
    ("steer-sweep-detector-other-model", ["steer", "sweep", *TINY, "--limit", "4", "--detector", "{tmp}/det",
                                          "--out", "{out}"], "the detector was fitted on a model with fingerprint",
     _other_model_detector),
    ("iti-sweep-detector-damaged", [*SWEEP, "--num-heads", "2", "--detector", "{tmp}/det", "--out", "{out}"],
     "--detector: ", _damaged_detector),
    ("ccs-distractor-strengths-nan", ["ccs-distractor", "--acts", "{store}", "--strengths", "1,nan", "--out", "{out}"],
     "--strengths must be a finite number >= 0, got nan", None),
    ("detect-splits-not-summing-to-1", ["detect", *TINY, "--splits", "0.5,0.5,0.5,0.5", "--out", "{out}"],
     "--splits must be four fractions", None),
    ("detect-one-sample", ["detect", *TINY, "--n-samples", "1", "--out", "{out}"], "--n-samples", None),
    ("detect-probe-nosuch", ["detect", *TINY, "--probes", "nosuch", "--out", "{out}"], "--probes must be one of", None),
    ("detect-position-nosuch", ["detect", *TINY, "--positions", "middle", "--out", "{out}"], "--positions", None),
    ("ccs-seed-negative", ["ccs", *TINY, "--seed", "-1", "--out", "{out}"],
     "--seed must be an integer in [0, 2**32 - 1], got -1", None),
    ("probe-polarity-seed-negative", ["probe-polarity", *TINY, "--seed", "-1", "--out", "{out}"],
     "--seed must be an integer in [0, 2**32 - 1], got -1", None),
    ("sycophancy-dataset-unknown", ["sycophancy", *TINY, "--datasets", "truthfulqa,nosuch", "--out", "{out}"],
     "--datasets must be one of truthfulqa, true-false, got 'nosuch'", None),
    ("spec-threads-0", ["spec", "--main", "tiny-llama", "--threads", "0", "--out", "{out}"],
     "--threads must be at least 1, got 0", None),
    ("spec-temperature-without-sample", ["spec", "--main", "tiny-llama", "--temperature", "0.5", "--out", "{out}"],
     "--temperature is only used with --sample", None),
    ("finetune-max-length-0", ["finetune", *TINY, "--max-length", "0", "--out", "{out}"],
     "--max-length must be at least 2, got 0", None),
    ("finetune-max-steps-negative", ["finetune", *TINY, "--max-steps", "-1", "--out", "{out}"],
     "--max-steps must be at least 1, got -1", None),
    ("finetune-lora-r-0", ["finetune", *TINY, "--lora-r", "0", "--out", "{out}"], "--lora-r must be at least 1, got 0",
     None),
    ("capture-device-cuda7", ["capture", *TINY, "--device", "cuda:7", "--limit", "4", "--out", "{out}"],
     "--device cuda:7: this machine has no CUDA GPU", None),
    ("steer-fit-normalize-unknown", ["steer", "fit", "--acts", "{store}", "--normalize", "nosuch", "--out", "{out}"],
     "--normalize must be one of raw, sigma, unit, got 'nosuch'", None),
    ("steer-bake-alpha-inf", ["steer", "bake", *TINY, "--steer", "{tmp}/s", "--alpha", "inf", "--out", "{out}"],
     "--alpha must be a finite number, got inf", None),
    ("judge-train-heldout-1", ["judge", "train", "--kind", "truth", "--heldout", "1", "--out", "{out}"],
     "--heldout must be strictly between 0 and 1, got 1", None),
    ("judge-eval-kind-unknown", ["judge", "eval", "--kind", "nosuch"], "--kind must be one of truth, info", None),
    ("report-empty-title", ["report", "{tmp}", "--title", " ", "--out", "{out}"], "--title must be a non-empty text",
     None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, store, tmp_path, data_dir, monkeypatch):
    name, argv, expect, setup = case
    out, tmp = tmp_path / "out", tmp_path / "scratch"
    tmp.mkdir()
    if setup is not None:
        setup(out, tmp)
    if name == "out-read-only":
        import veracity.validation as v

        monkeypatch.setattr(v, "_read_only_fs", lambda p: True)
    if name == "capture-device-cuda7":  # as on a machine without a GPU, whatever this one has
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    args = [a.format(out=out, store=store, tmp=tmp, data=data_dir) for a in argv]
    before, store_before = snapshot(out), snapshot(store)
    try:
        r = runner.invoke(app, args)
    finally:
        lock = getattr(_locked, "lock", None)
        if lock is not None:
            lock.release()
            _locked.lock = None
    errors = [l for l in r.output.splitlines() if l.startswith("error:")]
    assert r.exit_code == 2, f"{name}: exit {r.exit_code}\n{r.output}\n{r.exception!r}"
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output, r.output
    assert len(errors) == 1 and expect in errors[0], f"{name}: {r.output}"
    after = snapshot(out)  # (locked-folder: the holder's lock file, before and after)
    assert after == before, f"{name}: --out changed:\n{before}\n->\n{after}"
    assert snapshot(store) == store_before


def test_cases_cover_every_command():
    """The table reaches every command that takes --out or --acts."""
    covered = {c[1][0] if c[1][0] not in ("iti", "eval") else " ".join(c[1][:2]) for c in CASES}
    for cmd in ("capture", "probe", "ccs", "iti fit", "iti bake", "iti validate", "iti sweep", "eval truthfulqa",
                "compare-interventions", "sycophancy", "spec", "finetune", "demo"):
        assert cmd in covered, cmd


def test_bake_into_the_fitted_model_is_accepted(tmp_path, cli):
    """The positive control of bake-other-model-same-shape: the same intervention bakes into tiny-llama."""
    _llama_intervention(tmp_path, tmp_path)
    cli(["iti", "bake", *TINY, "-i", str(tmp_path / "llama_iv"), "--out", str(tmp_path / "baked")])
    assert (tmp_path / "baked" / "config.json").exists()


def test_num_heads_is_only_checked_where_used(tmp_path, data_dir, cli):
    """The default --num-heads 48 exceeds a tiny model's 16 heads: refused where ITI runs (above), accepted
    when no method uses it (compare-interventions without an ITI method)."""
    cli(["compare-interventions", *TINY, "--device", "cpu", "--methods", "baseline", "--limit", "4", "--folds", "2",
         "--judge", "none", "--ce-texts", "0", "--side-effects", "none", "--out", str(tmp_path / "c")])


def test_resumed_capture_command_repairs_a_damaged_store(tmp_path, store, cli):
    """`veracity capture` again on a store with a missing middle shard re-captures it: equal to the original."""
    import torch

    from veracity.capture import open_store

    copy = tmp_path / "cap"
    shutil.copytree(store, copy)
    (copy / "shard-00001.safetensors").unlink()
    cli(["capture", *TINY, "--dataset", "synthetic", "--limit", "24", "--sites", "resid,heads", "--shard-size", "10",
         "--out", str(copy)])
    a, b = open_store(copy), open_store(store)
    torch.testing.assert_close(a.stack("heads"), b.stack("heads"))
    torch.testing.assert_close(a.stack("resid"), b.stack("resid"))
