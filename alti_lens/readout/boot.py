"""Loading a model by name: a built-in demo model, a local checkpoint directory, or a hub name.

Every path ends in `TransformerBridge.boot_transformers`, so what `alti_lens` loads is exactly what
a TransformerLens user would get. A hub name is only tried when the Hugging Face cache holds it or
the hub answers; otherwise the user gets at once an error that says how to work offline, instead of
the half minute of retries `transformers` spends before failing.
"""

import os
import re
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from alti_lens._contracts import validates_arguments
from alti_lens.errors import (
    InputError,
    InputTypeError,
    ModelUnavailableError,
    UnsupportedModelError,
)

from .protocol import HookedModel

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def builtin_models() -> dict[str, Path]:
    """The demo models shipped inside the package (name → checkpoint directory)."""
    from alti_lens.demo import BUILTIN_MODELS

    return dict(BUILTIN_MODELS)


def _bridge_class() -> Any:
    # TransformerLens 4.x also exports it at top level; 3.x (>= 3.0, as required) from here only
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise InputError(
            f"dtype must be one of {sorted(DTYPES)} or a torch dtype, got {dtype!r}. "
            'Fix: dtype="float32" (the default) or "float64" for exactness checks.'
        )
    return DTYPES[dtype]


def resolve(name_or_dir: str) -> tuple[str, str]:
    """("builtin" | "directory" | "hub", what to pass to `boot_transformers`)."""
    builtins = builtin_models()
    if name_or_dir in builtins:
        return "builtin", str(builtins[name_or_dir])
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(
                f"{name_or_dir!r} is a directory but holds no config.json, so it is not a Hugging "
                "Face checkpoint. Fix: point --model at the directory written by "
                "`model.save_pretrained(dir)` and `tokenizer.save_pretrained(dir)`."
            )
        return "directory", str(path)
    if path.exists() or name_or_dir.startswith((".", "/", "~")):
        raise InputError(
            f"model {name_or_dir!r} is neither a built-in name ({', '.join(sorted(builtins))}) "
            "nor an existing checkpoint directory; expected one of them. Fix: check the path."
        )
    return "hub", name_or_dir


def _in_hub_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of transformers
        return False
    found = try_to_load_from_cache(name, "config.json")
    return isinstance(found, str)


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_flag() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _download_command(name: str, version: str | None = None) -> str:
    """The command that downloads hub model `name` with the installed huggingface_hub.

    huggingface_hub 0.34 introduced `hf` and deprecated `huggingface-cli`, which 1.0 removed;
    older versions ship `huggingface-cli` only. `version` defaults to the installed one; when it
    is unknown, the scripts next to this Python (a virtual environment's bin folder) decide.
    """
    if version is None:
        try:
            version = metadata.version("huggingface_hub")
        except metadata.PackageNotFoundError:
            version = None
    parts = re.match(r"(\d+)\.(\d+)", version or "")
    if parts is not None:
        modern = (int(parts[1]), int(parts[2])) >= (0, 34)
    else:
        bindir = Path(sys.executable).parent
        has = {
            cmd
            for cmd in ("hf", "huggingface-cli")
            if (bindir / cmd).exists() or (bindir / f"{cmd}.exe").exists()
        }
        modern = "hf" in has or "huggingface-cli" not in has
    return f"hf download {name}" if modern else f"huggingface-cli download {name}"


def _encoder_decoder_tokenizer(where: str) -> Any:
    """The tokenizer exactly as the checkpoint configures it, for encoder-decoder models; None for
    the others (TransformerLens' own tokenizer set-up, with its BOS handling, is kept for them).

    Measured with TransformerLens 4.3 and transformers 5: `boot_transformers` reloads a
    tokenizers-backed tokenizer with `add_bos_token=True`, which rebuilds its post-processor and
    drops the EOS that encoder-decoder sources end with; a tokenizer passed in is kept as it is.
    """
    from transformers import AutoConfig, AutoTokenizer

    if not getattr(AutoConfig.from_pretrained(where), "is_encoder_decoder", False):
        return None
    return AutoTokenizer.from_pretrained(where)


@contextmanager
def _progress_bars(show: bool) -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if not show:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not show:
            hf_logging.enable_progress_bar()


@validates_arguments
def load_model(
    name_or_dir: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    progress: bool = True,
) -> HookedModel:
    """A `TransformerBridge` for a built-in demo model, a local checkpoint directory or a hub name.

    Args:
        name_or_dir: "demo-induction" or "demo-translator" (shipped with `alti_lens`), a directory
            holding a Hugging Face checkpoint (config.json, weights, tokenizer), or any model name
            TransformerLens can boot (downloaded where the machine has internet).
        device: where to put the model (default: TransformerLens' choice).
        dtype: "float32" (default), "float64", "float16", "bfloat16" or a torch dtype.
        progress: show transformers' progress bars while loading.

    Raises:
        InputError: a path that does not exist or is not a checkpoint; an unknown dtype.
        ModelUnavailableError: a hub name that is neither cached nor downloadable from here.
    """
    if not isinstance(name_or_dir, str | os.PathLike):
        raise InputTypeError(
            f"load_model expected a model name or a checkpoint directory (a str or a path); got "
            f"{type(name_or_dir).__name__}. Fix: load_model('demo-induction'), "
            "load_model('path/to/checkpoint') or load_model('gpt2'); an already loaded model goes "
            "to alti() directly."
        )
    kind, where = resolve(os.fspath(name_or_dir))
    torch_dtype = _dtype(dtype)
    if kind == "hub" and not _in_hub_cache(where):
        why = (
            "offline mode is set (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)"
            if _offline_flag()
            else "the Hugging Face Hub cannot be reached from this machine"
            if not _hub_reachable()
            else ""
        )
        if why:
            raise ModelUnavailableError(
                f"model {where!r} is not a built-in name ({', '.join(sorted(builtin_models()))}), "
                f"not a local directory, and not in the Hugging Face cache; {why}. Fix: use a "
                "built-in model (e.g. --model demo-induction), download the model where there is "
                f"internet (`{_download_command(where)}`, or `model.save_pretrained(dir)` with "
                "its tokenizer) and pass that directory, or run where huggingface.co is reachable."
            )
    bridge = _bridge_class()
    try:
        with _progress_bars(progress):
            tokenizer = _encoder_decoder_tokenizer(where)
            model = bridge.boot_transformers(
                where, device=device, dtype=torch_dtype, tokenizer=tokenizer
            )
    except OSError as err:  # transformers' "couldn't connect" / "is not a local folder" errors
        raise ModelUnavailableError(
            f"could not load model {where!r}: {err}. Fix: check the name, or pass a local "
            "checkpoint directory."
        ) from err
    except (ValueError, NotImplementedError, KeyError) as err:  # an architecture TL cannot boot
        raise UnsupportedModelError(
            f"TransformerLens cannot boot {where!r}: {type(err).__name__}: {err}"
        ) from err
    if kind == "builtin":  # name results and reports "demo-induction", not a site-packages path
        model.cfg.model_name = name_or_dir
    return model
