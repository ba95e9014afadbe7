"""data/fineweb_edu/prepare.py on local parquet shards in FineWeb-Edu's published format: bins and meta,
the documented validation slice, EOT after every document, the OpenWebText prepare's re-run rules, one-line
errors, and train.py reading the result. Offline, like tests/test_data.py (whose environment it uses)."""

import json

import numpy as np
import pytest

import train
from errors import UserError
from tests.data_helpers import assert_one_line_error, leftovers, read_bin, run
from tests.helpers import REPO, metrics_rows, tiny_args
from vocab import EOT_TOKEN

PREPARE = REPO / "data" / "fineweb_edu" / "prepare.py"


def fineweb_rows(texts, start=0):
    """Rows with every column of FineWeb-Edu's parquet shards."""
    n = len(texts)
    return {
        "text": texts,
        "id": [f"<urn:uuid:{start + i:08d}>" for i in range(n)],
        "dump": ["CC-MAIN-2024-10"] * n,
        "url": [f"https://example.org/{start + i}" for i in range(n)],
        "file_path": ["s3://commoncrawl/crawl-data/CC-MAIN-2024-10/segments/x.warc.gz"] * n,
        "language": ["en"] * n,
        "language_score": [0.95] * n,
        "token_count": [len(t.split()) for t in texts],
        "score": [3.2] * n,
        "int_score": [3] * n,
    }


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two parquet shards (sorted names = published order) and their documents in that order."""
    from datasets import Dataset

    folder = tmp_path_factory.mktemp("fineweb_edu") / "sample" / "10BT"
    folder.mkdir(parents=True)
    docs = [
        f"Lesson {i}. " + "Photosynthesis turns light into sugar. " * (i % 5 + 1) + "naïve café 🙂" * (i % 2)
        for i in range(24)
    ]
    Dataset.from_dict(fineweb_rows(docs[:14])).to_parquet(str(folder / "000_00000.parquet"))
    Dataset.from_dict(fineweb_rows(docs[14:], 14)).to_parquet(str(folder / "001_00000.parquet"))
    return folder, docs


def documents(tokens):
    pieces = np.split(tokens, np.flatnonzero(tokens == EOT_TOKEN) + 1)
    assert len(pieces[-1]) == 0  # the bin ends with an EOT
    return [p[:-1].tolist() for p in pieces[:-1]]


def test_bins_meta_and_the_first_documents_as_val(env, shards, tmp_path):
    from vocab import get_gpt2_encoding

    enc = get_gpt2_encoding()
    folder, docs = shards
    out = tmp_path / "out"
    result = run(env, PREPARE, "--data_path", folder, "--val_docs", "5", "--out_dir", out, "--num_proc", "2")
    assert result.returncode == 0, result.stderr
    assert documents(read_bin(out / "val.bin")) == [enc.encode_ordinary(d) for d in docs[:5]]
    assert documents(read_bin(out / "train.bin")) == [enc.encode_ordinary(d) for d in docs[5:]]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"] == f"local:{folder} val_docs=5"
    assert (meta["tokenizer"], meta["vocab_size"], meta["split_seed"], meta["test_size"]) == ("gpt2", 50257, None, 5)
    assert meta["splits"]["val"]["documents"] == 5 and meta["splits"]["train"]["documents"] == 19
    assert leftovers(out) == ["meta.json", "train.bin", "val.bin"]

    # train.py reads it like any prepared dataset
    cfg = train.parse_args(tiny_args(out, tmp_path / "run", max_iters=2, eval_interval=2, block_size=16))
    train.train(cfg, train.setup_distributed(cfg))
    assert metrics_rows(tmp_path / "run")[-1]["iter"] == 2


def test_rerun_skips_another_split_is_refused_incomplete_is_rebuilt(env, shards, tmp_path):
    folder, _ = shards
    out = tmp_path / "out"
    args = (PREPARE, "--data_path", folder, "--val_docs", "5", "--out_dir", out, "--num_proc", "1")
    assert run(env, *args).returncode == 0
    good = (out / "train.bin").read_bytes()
    stamp = (out / "train.bin").stat().st_mtime_ns

    result = run(env, *args)
    assert result.returncode == 0 and "already prepared" in result.stdout
    assert (out / "train.bin").stat().st_mtime_ns == stamp

    assert_one_line_error(run(env, *args, "--val_docs", "4"), "--overwrite", "--out_dir")
    assert (out / "train.bin").stat().st_mtime_ns == stamp

    (out / "train.bin").write_bytes(good[: len(good) // 2])  # a copy cut short
    result = run(env, *args)
    assert result.returncode == 0 and "already prepared" not in result.stdout
    assert (out / "train.bin").read_bytes() == good


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("val_takes_everything", ["has 24 documents, not more than --val_docs=24", "lower --val_docs"]),
        ("max_docs_too_small", ["--max_docs=3 leaves no training documents", "--val_docs=5"]),
        ("hub_offline", ["cannot reach the Hugging Face Hub", "--data_path"]),
    ],
)
def test_bad_input_is_one_line_error(env, shards, tmp_path, case, fragments):
    folder, _ = shards
    out = tmp_path / "out"
    args = {
        "val_takes_everything": ["--data_path", folder, "--val_docs", "24"],
        "max_docs_too_small": ["--data_path", folder, "--val_docs", "5", "--max_docs", "3"],
        "hub_offline": [],
    }[case]
    assert_one_line_error(run(env, PREPARE, *args, "--out_dir", out), *fragments)
    assert leftovers(out) == []


@pytest.mark.skipif((REPO / "data" / "fineweb_edu" / "train.bin").exists(), reason="FineWeb-Edu is prepared here")
def test_gpt2_config_with_dataset_fineweb_edu_reads_data_fineweb_edu(tmp_path):
    cfg = train.parse_args(
        [
            str(REPO / "config" / "train_gpt2_small_sophiag.py"),
            "--dataset=fineweb_edu",
            "--device=cpu",
            f"--out_dir={tmp_path}",
        ]
    )
    fix = r"data/fineweb_edu/train.bin not found: run `python data/fineweb_edu/prepare.py`"
    with pytest.raises(UserError, match=fix):
        train.setup(cfg, train.setup_distributed(cfg), print)
