"""`veracity capture`: capture a data set's activations into a resumable store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import DataDirOpt, ModelDtypeOpt, ModelOpt, console, fail, print_table

def capture_command(
    model: str = ModelOpt,
    dataset: str = typer.Option("synthetic", "--dataset", "-d", help="Data set name (`veracity datasets`) or a CSV path."),
    sites: str = typer.Option("resid", "--sites", "-s", help="Comma-separated sites: resid, heads, mlp, resid.12, heads.-1, resid.embed."),
    positions: str = typer.Option("last", "--positions", help="last | mean"),
    out: Path = typer.Option(..., "--out", "-o", help="Store folder (resumed if it exists with the same config)."),
    batch_size: str = typer.Option("16", "--batch-size", "-b", help="Rows per forward, or 'auto' (128 on CUDA, "
                                   "16 on CPU); either way halved on out-of-memory and the size that worked kept."),
    dtype: str = typer.Option("float16", "--dtype", help="Stored dtype: float16, bfloat16 or float32."),
    shard_size: int = typer.Option(2048, "--shard-size", help="Rows per shard (bounds RAM)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N rows."),
    device: Optional[str] = typer.Option(None, "--device"),
    device_map: Optional[str] = typer.Option(None, "--device-map", help="'auto' spreads a large model over all GPUs."),
    model_dtype: str = ModelDtypeOpt,
    data_dir: Optional[Path] = DataDirOpt,
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard an existing store at --out."),
) -> None:
    """Capture activations of a data set into a store (manifest.json + safetensors shards)."""
    import torch

    from ..capture import StoreMismatch, capture_dataset
    from ..capture.engine import STORE_DTYPES, CaptureConfig
    from ..data import DataError, get_dataset
    from ..models import ModelNotAvailable, load
    from ..models.batching import parse_batch_size
    from ..models.loader import LoadConfig

    LoadConfig(model=model, model_dtype=model_dtype, device=device, device_map=device_map)
    cfg = CaptureConfig(dataset=dataset, sites=sites, positions=positions, batch_size=batch_size, dtype=dtype,
                        shard_size=shard_size, limit=limit)  # every option checked before anything is touched
    from ..runs import check_out_folder

    check_out_folder(out, "capture", overwrite=overwrite, resume=not overwrite)  # before loading anything
    batch_size = parse_batch_size(cfg.batch_size)
    try:
        ds = get_dataset(dataset, data_dir=data_dir, limit=limit)
    except DataError as e:
        fail(str(e))
    try:
        lm = load(model, dtype=model_dtype, device=device, device_map=device_map)
    except (ModelNotAvailable, ValueError) as e:
        fail(str(e))
    console.print(f"capturing [bold]{ds.name}[/bold] ({len(ds.texts)} rows) on [bold]{lm.name}[/bold] "
                  f"({lm.arch.n_layers} layers, {lm.arch.n_heads} heads) -> {out}")
    try:
        acts = capture_dataset(lm, ds, sites, positions=positions, batch_size=batch_size,
                               dtype=getattr(torch, STORE_DTYPES[dtype]), out=out, shard_size=shard_size,
                               overwrite=overwrite, config={"command": "capture", "model": model, "dataset": dataset,
                                                            "limit": limit, "batch_size": batch_size,
                                                            "model_dtype": model_dtype, "device_map": device_map})
    except (StoreMismatch, ValueError) as e:
        fail(str(e))
    s = acts.summary()
    print_table("store", ["key", "value"], [[k, v] for k, v in s.items()])


def register(app: typer.Typer) -> None:
    app.command("capture")(capture_command)
