"""Shared tokenization and writing for every data/<name>/prepare.py (docs/data.md).

A prepare script loads its source (`documents_to_prepare`), splits it into "train" and "val" and hands it to
`write_splits`: `num_proc` workers tokenize ranges of a few MB of text, the main process appends them in order to
`<split>.bin.tmp`, renamed into place when complete; meta.json is written last, so outputs are complete exactly when
meta.json exists and matches the bin sizes.
"""

import errno
import json
import math
import os
import pickle
import shutil
import signal
import time
from argparse import ArgumentParser, Namespace
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from atomic import atomic_write
from errors import UserError, run_cli as _run_cli
from vocab import EOT_TOKEN, GPT2_VOCAB_SIZE, get_gpt2_encoding

DTYPE = np.uint16  # every GPT-2 token id fits
SPLITS = ("train", "val")
TASK_TEXT_BYTES = 4_000_000  # text per worker task: ~1M tokens, a few MB in flight per task
BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".txt": "text"}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")  # datasets decompresses these on the fly
FORMATS = ".jsonl/.json/.parquet/.txt"


def prepare_parser(doc: str, script: str, outputs: str = "train.bin, val.bin and meta.json") -> ArgumentParser:
    """A prepare script's parser: its docstring's first paragraph, --out_dir (default: `script`'s dir), --overwrite."""
    parser = ArgumentParser(description=doc.split("\n\n")[0].strip())
    default_dir = str(Path(script).resolve().parent)
    parser.add_argument("--out_dir", default=default_dir, help=f"where {outputs} go (default: this folder)")
    parser.add_argument("--overwrite", action="store_true", help="redo complete outputs")
    return parser


def add_num_proc_arg(parser: ArgumentParser, default: int = 0, help_text: str = "") -> None:
    """--num_proc, by default min(8, cores); write_splits (and documents_to_prepare, earlier) check it is >= 1."""
    help_text = help_text or "worker processes for loading and tokenizing (default min(8, cores))"
    parser.add_argument("--num_proc", type=int, default=default or min(8, os.cpu_count() or 1), help=help_text)


def encode_document(enc: Any, text: str) -> np.ndarray:
    """`enc.encode_ordinary(text) + [EOT_TOKEN]` as a uint16 array, without building a list."""
    try:
        ids = enc.encode_to_numpy(text, disallowed_special=())
    except UnicodeEncodeError:  # lone surrogates: clean them up exactly as encode_ordinary does
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        ids = enc.encode_to_numpy(text, disallowed_special=())
    out = np.empty(len(ids) + 1, dtype=DTYPE)
    out[:-1], out[-1] = ids, EOT_TOKEN
    return out


def _builder(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in COMPRESSIONS]
    return BUILDERS.get(suffixes[-1]) if suffixes else None


def local_data_files(data_path: str) -> tuple[str, list[str]]:
    """(builder name, sorted file list) of a file or a folder of jsonl/json/parquet/txt files."""
    path = Path(data_path)
    if not path.exists():
        fix = f"pass a {FORMATS} file (optionally compressed) or a folder of them"
        raise UserError(f"--data_path {data_path} does not exist; {fix}")
    found = (p for p in path.rglob("*") if p.is_file() and _builder(p) and not p.name.startswith("."))
    files = [path] if path.is_file() else sorted(found)
    builders = {_builder(p) for p in files}
    if not files or None in builders:
        raise UserError(f"no {FORMATS} files at {data_path}; pass a file or folder of those formats")
    if len(builders) > 1:
        mixed = ", ".join(sorted(b for b in builders if b))
        raise UserError(f"{data_path} mixes file formats ({mixed}); put one format in the folder or pass a single file")
    return str(builders.pop()), [str(p) for p in files]


def documents_to_prepare(args: Namespace, describe_source: Callable[..., str]) -> tuple[Any, str]:
    """(documents, source): the first `args.max_docs` documents of split `args.split` of the Hub dataset or of the files
    at `args.data_path`, and `describe_source(args, local_data_files or None)`; documents None if prepared already."""
    if args.num_proc < 1:  # before the load, which can take long
        raise UserError(f"--num_proc must be >= 1, got {args.num_proc}")
    local = local_data_files(args.data_path) if args.data_path else None
    source = describe_source(args, local)
    if already_prepared(args.out_dir, source, args.overwrite):
        return None, source
    import datasets
    from datasets.exceptions import DatasetGenerationError, DatasetNotFoundError

    name = args.data_path or args.dataset
    try:
        if local:
            builder, files = local
            kwargs = {"sample_by": args.sample_by} if builder == "text" else {}
            num_proc = min(args.num_proc, len(files))
            dd = datasets.load_dataset(builder, data_files=files, num_proc=num_proc if num_proc > 1 else None, **kwargs)
        else:
            num_proc = args.num_proc if args.num_proc > 1 else None
            dd = datasets.load_dataset(args.dataset, args.name, revision=args.revision, num_proc=num_proc)
    except DatasetNotFoundError:
        fix = "check --dataset, or use --data_path"
        raise UserError(f"dataset {name!r} not found on the Hugging Face Hub; {fix}") from None
    except ConnectionError as e:
        fix = "connect to the internet (and unset HF_DATASETS_OFFLINE), or use --data_path"
        raise UserError(f"cannot reach the Hugging Face Hub ({e}); {fix}") from None
    except DatasetGenerationError as e:
        cause = str(e.__cause__ or e).splitlines()[0]
        raise UserError(f"could not read {name}: {cause}; check the files' format") from None
    except (StopIteration, ValueError) as e:  # datasets' ways of saying "no rows at all"
        if isinstance(e, ValueError) and "BuilderConfig" in str(e):
            fix = "pass --name with one of them"
            raise UserError(f"{args.dataset} has no config {args.name!r} ({str(e).splitlines()[0]}); {fix}") from None
        if isinstance(e, ValueError) and "corresponds to no data" not in str(e):
            raise
        raise UserError(f"{name} holds no documents; check the path") from None
    except RuntimeError as e:
        if "scripts are no longer supported" not in str(e):
            raise
        parquet = "the Hub's parquet export; check its size, exports of large datasets can be partial"
        fix = f"try --revision=refs/convert/parquet ({parquet}), or download the data and use --data_path"
        raise UserError(f"{name} only has a loading script, which datasets>=4 no longer runs; {fix}") from None
    if args.split not in dd:
        raise UserError(f"no split {args.split!r} in the dataset (splits: {', '.join(dd)}); pass --split NAME")
    docs = dd[args.split]
    return docs.select(range(min(args.max_docs, len(docs)))) if args.max_docs else docs, source


def split_train_val(dataset: Any, test_size: float, seed: int) -> Any:
    """Shuffled train/val split of a `datasets.Dataset`, exactly as nanoGPT splits OpenWebText ("test" renamed)."""
    if len(dataset) < 2:
        fix = "need at least 2 to split off a validation set; give it more documents"
        raise UserError(f"the dataset has {len(dataset)} document(s); {fix}")
    splits = dataset.train_test_split(test_size=test_size, seed=seed, shuffle=True)
    splits["val"] = splits.pop("test")
    return splits


def read_meta(data_dir: str | Path) -> dict | None:
    """A prepared dataset's meta.json (its one reader), None when there is none; a UserError when it is unreadable."""
    path = Path(data_dir) / "meta.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is unreadable ({e}): prepare the dataset again") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path} holds no JSON object: prepare the dataset again")
    return meta


def split_problem(data_dir: str | Path, split: str, meta: dict | None) -> str | None:
    """Why data_dir/<split>.bin is not a complete split of uint16 tokens (per meta's count if any), or None."""
    path = Path(data_dir) / f"{split}.bin"
    if not path.is_file():
        return "not found"
    size = path.stat().st_size
    if size == 0:
        return "is empty"
    if size % 2:
        return f"has an odd size ({size} bytes), so it is not uint16 tokens"
    expected = (meta or {}).get("splits", {}).get(split, {}).get("tokens")
    if expected is not None and size != 2 * expected:
        return f"is truncated or stale: {size // 2} tokens, meta.json says {expected}"
    return None


def make_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create --out_dir {out_dir} ({e.strerror}); choose another --out_dir") from None


def already_prepared(out_dir: str | Path, source: str, overwrite: bool, sha256: str | None = None) -> bool:
    """True when `out_dir` holds complete outputs from `source` (or text of this `sha256`) and not `overwrite`;
    a UserError for complete outputs from another source."""
    try:
        meta = read_meta(out_dir)
    except UserError:  # unreadable: prepared again
        meta = None
    splits = (meta or {}).get("splits", {})
    if overwrite or meta is None or any(s not in splits or split_problem(out_dir, s, meta) for s in SPLITS):
        return False
    same = meta.get("sha256") == sha256 if sha256 else meta.get("source") == source
    if not same:
        fix = "pass --overwrite to replace it, or choose another --out_dir"
        raise UserError(f"{out_dir} already holds data prepared from {meta.get('source')!r}; {fix}")
    tokens = f"{meta['splits']['train']['tokens']:,} train tokens"
    print(f"{out_dir} is already prepared from {meta['source']!r} ({tokens}); pass --overwrite to redo it")
    return True


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _check_text_column(splits: dict, text_column: str) -> None:
    for split, ds in splits.items():
        if len(ds) == 0:
            raise UserError(f"the {split} split is empty; check the input data")
        if text_column not in ds.column_names:
            columns = ", ".join(ds.column_names)
            raise UserError(f"no column {text_column!r} in the dataset (columns: {columns}); pass --text_column NAME")
        dtype = getattr(ds.features[text_column], "dtype", None)
        if dtype not in ("string", "large_string"):
            fix = "not text; pass --text_column with a text column"
            raise UserError(f"column {text_column!r} holds {dtype or ds.features[text_column]}, {fix}")


def _reopened(ds: Any) -> Any:
    """A fresh handle on a split backed by memory-mapped Arrow files (it pickles as file paths): dropping it unmaps
    every page read through it, so resident memory does not grow with the input (nanoGPT #287's "memmap leak")."""
    return pickle.loads(pickle.dumps(ds)) if ds.cache_files else ds


def _estimate_size(ds: Any, text_column: str, enc: Any, sample_docs: int = 64) -> tuple[float, int]:
    """(UTF-8 bytes, tokens with EOTs) of a split: the bytes from Arrow offsets, the tokens from a sample's ratio."""
    import pyarrow.compute as pc

    ds = _reopened(ds)
    table = ds.data  # the whole backing table; a split is a fraction of its rows
    text_bytes = (pc.sum(pc.binary_length(table.column(text_column))).as_py() or 0) * len(ds) / max(table.num_rows, 1)
    idx = np.unique(np.linspace(0, len(ds) - 1, num=min(sample_docs, len(ds))).astype(int))
    texts = [ds[int(i)][text_column] or "" for i in idx]
    sample_bytes = sum(len(t.encode("utf-8")) for t in texts)
    sample_tokens = sum(len(encode_document(enc, t)) - 1 for t in texts)
    return text_bytes, int(text_bytes * sample_tokens / max(sample_bytes, 1)) + len(ds)


_worker: dict = {}


def _init_worker(splits: dict, text_column: str, ignore_sigint: bool) -> None:
    if ignore_sigint:  # Ctrl-C is handled once, by the main process
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker.update(splits=splits, text_column=text_column, enc=get_gpt2_encoding())


def _tokenize_range(split: str, start: int, end: int) -> tuple[str, int, np.ndarray]:
    texts = _reopened(_worker["splits"][split])[start:end][_worker["text_column"]]
    for i, text in enumerate(texts):
        if text is None:
            fix = "drop empty rows from the input or pick another --text_column"
            raise UserError(f"document {start + i} of the {split} split has no text (null); {fix}")
    return split, end - start, np.concatenate([encode_document(_worker["enc"], t) for t in texts])


def _tokenized_ranges(splits: dict, text_column: str, docs_per_task: dict, num_proc: int) -> Generator:
    """Yield (split, documents, tokens) for consecutive ranges of documents, in split order."""
    starts = [(s, start) for s, ds in splits.items() for start in range(0, len(ds), docs_per_task[s])]
    tasks = [(s, start, min(start + docs_per_task[s], len(splits[s]))) for s, start in starts]
    if num_proc == 1:
        _init_worker(splits, text_column, ignore_sigint=False)
        try:
            yield from (_tokenize_range(*task) for task in tasks)
        finally:
            _worker.clear()
        return
    pool = ProcessPoolExecutor(num_proc, initializer=_init_worker, initargs=(splits, text_column, True))
    pending: deque[Future] = deque()
    try:
        for task in tasks:
            if len(pending) == 2 * num_proc:  # bound what is in flight: memory stays flat
                yield pending.popleft().result()
            pending.append(pool.submit(_tokenize_range, *task))
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def write_splits(
    splits: Any,
    out_dir: str | Path,
    *,
    source: str,
    split_seed: int | None,
    test_size: float | None,
    text_column: str = "text",
    num_proc: int = 1,
) -> dict:
    """Tokenize "train" and "val" of `splits` into `<out_dir>/<split>.bin`, then meta.json, replacing any outputs;
    returns meta. On any error or Ctrl-C the partial `<split>.bin.tmp` files are removed."""
    assert set(splits) == set(SPLITS), f"expected splits {SPLITS}, got {tuple(splits)}"
    if num_proc < 1:
        raise UserError(f"--num_proc must be >= 1, got {num_proc}")
    out_dir, splits = Path(out_dir), {s: splits[s] for s in SPLITS}
    _check_text_column(splits, text_column)
    splits = {s: ds.select_columns([text_column]) for s, ds in splits.items()}
    enc = get_gpt2_encoding()
    sizes = {s: _estimate_size(ds, text_column, enc) for s, ds in splits.items()}  # (text bytes, tokens)
    needed = int(1.05 * 2 * sum(tokens for _, tokens in sizes.values()))
    make_out_dir(out_dir)
    paths = {s: out_dir / f"{s}.bin" for s in SPLITS}
    tmp = {s: paths[s].with_name(paths[s].name + ".tmp") for s in SPLITS}
    # the bins need their estimate with a 5% margin, counting the space the outputs being replaced will free
    free = shutil.disk_usage(out_dir).free + sum(p.stat().st_size for p in paths.values() if p.exists())
    if needed > free:
        disk = f"the bins need about {_fmt_bytes(needed)} and {_fmt_bytes(free)} is free"
        raise UserError(f"not enough disk space in {out_dir}: {disk}; free up space or pass --out_dir on a bigger disk")
    # tasks of ~TASK_TEXT_BYTES of text, yet at least 4 per worker so that small data balances
    docs_per_task = {}
    for s, ds in splits.items():
        n = min(int(TASK_TEXT_BYTES * len(ds) / max(sizes[s][0], 1)), math.ceil(len(ds) / (4 * num_proc)))
        docs_per_task[s] = max(n, 1)
    for p in [out_dir / "meta.json", *paths.values(), *tmp.values()]:  # meta first: outputs now incomplete
        p.unlink(missing_ok=True)
    t0 = time.time()
    try:
        ranges = _tokenized_ranges(splits, text_column, docs_per_task, num_proc)
        counts = _write_bins(ranges, tmp, {s: len(ds) for s, ds in splits.items()})
        for s in SPLITS:
            os.replace(tmp[s], paths[s])
        seconds = time.time() - t0
        meta = {"tokenizer": "gpt2", "vocab_size": GPT2_VOCAB_SIZE, "eot_token": EOT_TOKEN, "dtype": "uint16"}
        meta |= {"source": source, "split_seed": split_seed, "test_size": test_size}
        meta["splits"] = {s: {**counts[s], "bytes": 2 * counts[s]["tokens"]} for s in SPLITS}
        write_meta(out_dir, meta)
    except BaseException as e:
        for p in tmp.values():
            p.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            fix = "partial files removed; free up space or pass --out_dir on a bigger disk"
            raise UserError(f"disk full while writing to {out_dir}; {fix}") from None
        raise
    total = sum(r["tokens"] for r in meta["splits"].values())
    print(f"wrote {out_dir} (source: {meta['source']})")
    print(f"{'split':<6}{'documents':>12}{'tokens':>16}{'bytes':>16}")
    for s, r in meta["splits"].items():
        print(f"{s:<6}{r['documents']:>12,}{r['tokens']:>16,}{r['bytes']:>16,}")
    print(f"tokenized and wrote {total:,} tokens in {seconds:.1f} s ({total / max(seconds, 1e-9):,.0f} tokens/s)")
    return meta


def _write_bins(ranges: Generator, tmp_paths: dict[str, Path], num_docs: dict[str, int]) -> dict:
    """Append each (split, documents, tokens) range to its split's file; returns the counts."""
    counts = {s: {"documents": 0, "tokens": 0} for s in SPLITS}
    with ExitStack() as stack:
        files = {s: stack.enter_context(open(p, "wb")) for s, p in tmp_paths.items()}
        ranges = stack.enter_context(closing(ranges))  # stops the workers on any error
        bar = None
        for split, docs, tokens in ranges:
            if counts[split]["documents"] == 0:  # ranges arrive split after split, in order
                if bar is not None:
                    bar.close()
                bar = stack.enter_context(tqdm(total=num_docs[split], unit="doc", desc=f"tokenize+write {split}"))
            tokens.tofile(files[split])
            counts[split]["documents"] += docs
            counts[split]["tokens"] += len(tokens)
            bar.update(docs)
            bar.set_postfix(tokens=f"{counts[split]['tokens']:,}", refresh=False)
        for f in files.values():
            f.flush()
            os.fsync(f.fileno())  # durable before the rename makes it look complete
    for s, p in tmp_paths.items():
        assert os.path.getsize(p) == 2 * counts[s]["tokens"]
    return counts


def write_meta(out_dir: str | Path, meta: dict) -> None:
    """meta.json, atomically: every prepare script writes it last, through here (it marks the outputs complete)."""
    with atomic_write(Path(out_dir) / "meta.json") as f:
        f.write(json.dumps(meta, indent=2) + "\n")


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """A prepare script's `main(argv)`: a UserError is one line and exit code 2, Ctrl-C 130 (partial files removed)."""
    return _run_cli(main, argv, interrupted="interrupted; partial files removed")
