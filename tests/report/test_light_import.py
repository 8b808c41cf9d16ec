"""`veracity report` should draw a page without importing torch or transformers (seconds each): what the report
reads of a capture store (`verify_store`) and of an ITI intervention (its JSON half and its `head_scores`) is
read without torch, and package `__init__`s are lazy. Each check runs in a fresh subprocess and looks at
`sys.modules` afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers")


def _heavy_after(code: str) -> list[str]:
    """The heavy modules in `sys.modules` after running `code` in a fresh interpreter (it must succeed)."""
    probe = code + f"\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=600,
                         env={"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_report_inputs_read_without_torch(tmp_path, tiny_llama):
    """A capture store checked (`verify_store`, the report's `load_run`) and an intervention's head scores read
    (the iti-validate section) in a process that never imports torch; the scores equal the saved tensor."""
    import torch

    from veracity.capture import capture
    from veracity.steer import Intervention

    capture(tiny_llama, ["a b", "c d e", "f"], "resid.0", labels=[1, 0, 1], out=tmp_path / "cap", progress=False)
    a = tiny_llama.arch
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(a.n_layers, a.n_heads, generator=g)
    Intervention(heads=[(0, 1)], directions=torch.nn.functional.normalize(torch.randn(1, a.head_dim, generator=g)),
                 sigmas=torch.ones(1), alpha=2.0, n_layers=a.n_layers, n_heads=a.n_heads, head_dim=a.head_dim,
                 head_scores=scores).save(tmp_path / "intervention_fold0")
    code = (f"from pathlib import Path\n"
            f"from veracity.capture.store import verify_store\n"
            f"from veracity.artifacts import read_safetensors_array\n"
            f"m = verify_store(Path({str(tmp_path / 'cap')!r}))\n"
            f"assert m['n_rows'] == 3, m['n_rows']\n"
            f"s = read_safetensors_array(Path({str(tmp_path / 'intervention_fold0.safetensors')!r}), 'head_scores')\n"
            f"print(s.tolist())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == scores.tolist()
    assert _heavy_after(code) == []


def test_package_namespaces_are_lazy():
    """Importing a package (and its light modules) loads no torch; its exported names still resolve."""
    assert _heavy_after("import veracity.steer, veracity.probes, veracity.models, veracity.evaluate, "
                        "veracity.compare, veracity.capture, veracity.finetune, veracity.methods, veracity.data\n"
                        "from veracity.methods import options\n") == []
    assert "torch" in _heavy_after("from veracity.steer import ResidualSteer\nassert ResidualSteer.__name__\n")


def test_report_page_without_torch(tmp_path):
    """A report over a capture store and an unfinished run of every registered kind, drawn in a process that
    never imports torch or transformers."""
    code = (f"from pathlib import Path\n"
            f"from veracity.experiments.registry import STUDIES\n"
            f"from veracity.runs import RunFolder\n"
            f"from veracity.report import render_report\n"
            f"root = Path({str(tmp_path)!r})\n"
            f"for kind in STUDIES:\n"
            f"    RunFolder(root / kind, kind, {{}}).start()\n"
            f"render_report([root], root / 'report.html')\n")
    assert _heavy_after(code) == []
