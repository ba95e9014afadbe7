"""The character-level path: prepare (round trip and one-line errors), train, resume and sample on
it, and the refusals where a GPT-2 vocabulary is needed."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import train
from errors import UserError
from tests.helpers import REPO, run_train, tiny_args

PREPARE = REPO / "data" / "shakespeare_char" / "prepare.py"
TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak. \u2014 caf\u00e9 \u00e6\n"
) * 40


def prepare(*args):
    return subprocess.run([sys.executable, str(PREPARE), *map(str, args)], cwd=REPO, capture_output=True, text=True)


@pytest.fixture(scope="module")
def char_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("char")
    (tmp / "input.txt").write_text(TEXT, encoding="utf-8")
    out = prepare("--input", tmp / "input.txt", "--out_dir", tmp / "data")
    assert out.returncode == 0, out.stderr
    return tmp / "data"


def test_decoding_train_and_val_gives_back_the_input_exactly(char_data):
    meta = json.loads((char_data / "meta.json").read_text())
    chars = meta["chars"]
    assert meta["tokenizer"] == "char" and meta["vocab_size"] == len(chars) == len(set(TEXT))
    assert list(chars) == sorted(set(TEXT))
    ids = [np.fromfile(char_data / f"{s}.bin", dtype=np.uint16) for s in ("train", "val")]
    assert len(ids[0]) == int(0.9 * len(TEXT))  # nanoGPT's split: the first 90% is train
    assert "".join(chars[i] for i in np.concatenate(ids)) == TEXT
    assert meta["splits"]["val"]["tokens"] == len(ids[1])


def test_rerun_skips_and_another_text_is_refused_without_overwrite(char_data, tmp_path):
    again = prepare("--input", char_data.parent / "input.txt", "--out_dir", char_data)
    assert again.returncode == 0 and "already prepared" in again.stdout
    (tmp_path / "other.txt").write_text("something else entirely\n" * 10)
    other = prepare("--input", tmp_path / "other.txt", "--out_dir", char_data)
    assert other.returncode == 2 and "--overwrite" in other.stderr and len(other.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"caf\xe9 au lait\n", "is not UTF-8"),
        ("".join(map(chr, range(0x10000, 0x10000 + 2**16 + 1))).encode(), "more than the 65,536"),
        (b"x", "too few to split"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, content, message):
    (tmp_path / "in.txt").write_bytes(content)
    out = prepare("--input", tmp_path / "in.txt", "--out_dir", tmp_path / "data")
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr
    assert not (tmp_path / "data" / "meta.json").exists()


def test_missing_input_is_one_line(tmp_path):
    out = prepare("--input", tmp_path / "nope.txt", "--out_dir", tmp_path / "data")
    assert out.returncode == 2 and "cannot read" in out.stderr and len(out.stderr.splitlines()) == 1


def test_the_embedded_corpus_prepares(tmp_path):
    out = prepare("--out_dir", tmp_path)
    assert out.returncode == 0, out.stderr
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["tokenizer"] == "char" and 60 <= meta["vocab_size"] <= 100
    assert meta["splits"]["train"]["tokens"] > 4_000_000


@pytest.fixture(scope="module")
def char_run(char_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    train.main(tiny_args(char_data, out, max_iters=6, eval_interval=3, block_size=16))
    return out


def test_the_model_is_sized_by_the_dataset_vocabulary_and_the_checkpoint_carries_it(char_data, char_run):
    ckpt = torch.load(char_run / "ckpt_00000006.pt", weights_only=False)
    chars = json.loads((char_data / "meta.json").read_text())["chars"]
    assert ckpt["model_args"]["vocab_size"] == len(chars)
    assert ckpt["vocab"] == {"tokenizer": "char", "chars": chars}


def test_resume_continues_exactly_as_an_uninterrupted_run(char_data, char_run, tmp_path):
    train.main(tiny_args(char_data, tmp_path / "split", max_iters=3, eval_interval=3, block_size=16))
    train.main(tiny_args(char_data, tmp_path / "split", max_iters=6, eval_interval=3, block_size=16, init_from="auto"))
    whole = torch.load(char_run / "ckpt_00000006.pt", weights_only=False)["model"]
    resumed = torch.load(tmp_path / "split" / "ckpt_00000006.pt", weights_only=False)["model"]
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_sample_prints_characters_of_the_vocabulary(char_data, char_run):
    out = run_train(
        [
            "--out_dir",
            str(char_run),
            "--start",
            "All:",
            "--num_samples",
            "1",
            "--max_new_tokens",
            "30",
            "--device",
            "cpu",
        ],
        script=REPO / "sample.py",
    )
    text = out.stdout.split("---------------")[0]
    assert text.startswith("All:") and len(text.rstrip("\n")) >= 4
    assert set(text) <= set(TEXT)


def test_sample_refuses_a_character_outside_the_vocabulary(char_run):
    out = run_train(
        ["--out_dir", str(char_run), "--start", "Zebra", "--device", "cpu"], script=REPO / "sample.py", check=False
    )
    assert out.returncode == 2 and "not in the model's" in out.stderr and len(out.stderr.splitlines()) == 2
    assert out.stderr.splitlines()[0].startswith("loaded ")  # the line naming the checkpoint, then the error


def test_hugging_face_export_refuses_a_character_model(char_run, tmp_path):
    export = REPO / "scripts" / "tools" / "export_hf.py"
    out = run_train([str(char_run), str(tmp_path / "hf")], script=export, check=False)
    assert out.returncode == 2 and "character-level" in out.stderr.splitlines()[-1]
    assert not (tmp_path / "hf").exists()


def test_resuming_on_a_dataset_with_another_vocabulary_is_refused(char_run, shakespeare):
    with pytest.raises(UserError, match="trained on a vocabulary of .* characters but .* GPT-2's BPE"):
        train.main(tiny_args(shakespeare, char_run, max_iters=9, block_size=16, init_from="auto"))


def test_gpt2_weights_on_a_character_dataset_are_refused(char_data, tmp_path):
    with pytest.raises(UserError, match="init_from='gpt2' has GPT-2's vocabulary"):
        train.main(tiny_args(char_data, tmp_path / "r", init_from="gpt2"))
