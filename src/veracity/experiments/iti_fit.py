"""`veracity iti fit`: ITI fitted on every TruthfulQA question (nothing held out; `iti validate` measures) and
saved as an intervention (PATH.json + PATH.safetensors). The orchestration lives here, not in the CLI, so a
script fits exactly what the command fits: resolve the settings (a --reproduce preset), claim the output
before any work, load the model and the probe data, fit, record the preset in the provenance, save."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .iti_common import ITIFitConfig


def run_iti_fit(cfg: ITIFitConfig, out: str | Path, *, model: str = "smollm2", device: str | None = None,
                model_dtype: str = "float32", device_map: str | None = None, acts: str | Path | None = None,
                data_dir: str | Path | None = None, overwrite: bool = False, log: Callable[[str], None] = print):
    """Fit and save the intervention of `cfg` (K = cfg.num_heads, alpha = cfg.alpha) on `model` (its load
    options as `models.loader.LoadConfig`'s); returns (the intervention, the path written). `acts`: the
    activation store (default: the veracity cache); `log` gets the preset's lines. A taken `out` is refused
    before any work unless `overwrite`."""
    from ..models.loader import LoadConfig
    from ..outputs import claim_output
    from ..steer.iti import fit
    from .iti_common import iti_config, load_data, load_model, preset_lines, resolve_settings

    LoadConfig(model=model, model_dtype=model_dtype, device=device, device_map=device_map)
    claim_output(out, "intervention", overwrite=overwrite)  # before any work; checked again when written
    st = resolve_settings(cfg.reproduce, cfg.direction, cfg.data, cfg.sigma_from, False, None, cfg.seed)
    icfg = iti_config(cfg.direction, st["sigma_from"], st["seed"], max_k=cfg.num_heads, st=st)
    for line in preset_lines(st):
        log(line)
    lm = load_model(model, device, model_dtype, device_map, num_heads=cfg.num_heads)
    data, _ = load_data(lm, data_dir, cfg.limit, acts, st)
    iv = fit(data, icfg, k=cfg.num_heads, alpha=cfg.alpha)
    iv.provenance.update(reproduce=st["reproduce"], remaining_differences=st["remaining_differences"])
    return iv, iv.save(out, overwrite=overwrite)
