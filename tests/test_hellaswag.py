"""HellaSwag: the prepare script on a fixture in HellaSwag's format, the batched scorer against a direct
per-example computation, a model that memorised the fixture, 2 gloo ranks against 1 process through
train.py, no recompilation after the first eval under torch.compile, the eval script on a checkpoint and
an exported Hugging Face directory, and one-line errors. Tiny models (1 layer, 32 wide) throughout."""

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch._dynamo.utils
import torch.nn.functional as F

import hellaswag
import train
from errors import UserError
from hf import save_hf
from model import GPT, GPTConfig
from scripts.tools import eval_hellaswag
from tests.helpers import REPO, metrics_rows, run_train, tiny_args
from vocab import get_gpt2_encoding

PREPARE = REPO / "data" / "hellaswag" / "prepare.py"
RIGHT = "red green blue yellow black white orange purple brown pink gray silver".split()
WRONG = "table chair window door floor roof wall stair lamp shelf desk bench".split()  # never in a right ending
FILLER = "the a man woman dog runs walks then and slowly quickly street park house".split()
STEPS = 18  # of AdamW to memorise the fixture
BLOCK = 64  # rows of 13 to ~95 tokens: padded lengths 32 and 64, and some cut to the last 65 tokens


def fixture_examples(n=13, seed=0):
    """HellaSwag-format examples whose right ending is made of RIGHT words, the wrong ones of WRONG words."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ctx = " ".join(rng.choice(FILLER) for _ in range(rng.choice([4, 10, 25, 45, 80]))).capitalize() + "."
        label = rng.randrange(4)
        endings = [
            " ".join(rng.choice(RIGHT if k == label else WRONG) for _ in range(rng.randint(2, 12))) + "."
            for k in range(4)
        ]
        out.append(
            {
                "ind": i,
                "activity_label": "Fixture",
                "ctx_a": ctx,
                "ctx_b": "",
                "ctx": ctx,
                "split": "val",
                "split_type": "indomain",
                "label": label,
                "endings": endings,
                "source_id": f"fixture~{i}",
            }
        )
    return out


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def prepare(*args):
    return subprocess.run(
        [sys.executable, str(PREPARE), *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def assert_one_line(result, status, *fragments):
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in last, last


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(the fixture's rows, the prepared val.npz)."""
    base = tmp_path_factory.mktemp("hellaswag")
    rows = fixture_examples()
    result = prepare("--data_path", write_jsonl(base / "val.jsonl", rows), "--out_dir", base / "out")
    assert result.returncode == 0, result.stderr
    return rows, base / "out" / "val.npz"


@pytest.fixture(scope="module")
def examples(prepared):
    return hellaswag.load(prepared[1])


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=BLOCK))


# -----------------------------------------------------------------------------
# prepare


def test_prepare_tokenizes_context_and_spaced_endings(prepared, examples):
    rows, npz = prepared
    enc = get_gpt2_encoding()
    assert len(examples) == len(rows)
    for row, ex in zip(rows, examples):
        assert ex.ctx.tolist() == enc.encode_ordinary(row["ctx"])
        assert [e.tolist() for e in ex.endings] == [enc.encode_ordinary(" " + e) for e in row["endings"]]
        assert ex.label == row["label"]
    meta = json.loads((npz.parent / "meta.json").read_text())
    assert meta["examples"] == len(rows) and meta["tokenizer"] == "gpt2"
    assert {n for n, _, _ in hellaswag.batches(examples, BLOCK, 1024)} == {32, 64}
    assert any(len(ex.ctx) > BLOCK for ex in examples)  # some rows are cut to the model's context
    again = prepare("--data_path", npz.parent.parent / "val.jsonl", "--out_dir", npz.parent)
    assert again.returncode == 0 and "already prepared" in again.stdout


# -----------------------------------------------------------------------------
# the scorer


def direct_losses(model, example):
    """Per ending: (summed, mean) cross-entropy over its tokens, one unpadded row at a time, in float64."""
    out = []
    for ending in example.endings:
        row = torch.tensor(np.concatenate([example.ctx, ending])[-(BLOCK + 1) :])
        logits = model(row[None, :-1])[0][0, :, : hellaswag.GPT2_VOCAB_SIZE].double()
        n = min(len(ending), len(row) - 1)
        losses = F.cross_entropy(logits[-n:], row[-n:], reduction="none")
        out.append((losses.sum().item(), losses.mean().item()))
    return out


@torch.no_grad()
def test_batched_scorer_equals_direct_computation(examples):
    model = tiny_model().eval()
    direct = [direct_losses(model, ex) for ex in examples]
    for tokens_per_forward in (128, 100_000):  # 1 example per pass; all examples of a length in one
        for length, per_batch, indices in hellaswag.batches(examples, BLOCK, tokens_per_forward):
            x, y, mask = hellaswag.batch_tensors(examples, length, per_batch, indices, BLOCK, "cpu")
            sums, means = hellaswag.ending_losses(model, x, y, mask)
            for j, i in enumerate(indices):
                np.testing.assert_allclose(sums[j].tolist(), [s for s, _ in direct[i]], rtol=1e-5)
                np.testing.assert_allclose(means[j].tolist(), [m for _, m in direct[i]], rtol=1e-5)
        scores = hellaswag.evaluate(model, examples, BLOCK, tokens_per_forward)
        acc = np.mean([np.argmin([s for s, _ in d]) == ex.label for d, ex in zip(direct, examples)])
        acc_norm = np.mean([np.argmin([m for _, m in d]) == ex.label for d, ex in zip(direct, examples)])
        assert scores == {"eval/hellaswag_acc": pytest.approx(acc), "eval/hellaswag_acc_norm": pytest.approx(acc_norm)}
    assert model.training is False


def test_memorised_fixture_picks_its_right_endings(examples):
    """Trained only on each context followed by its right ending, the model scores every example right."""
    model, block = tiny_model(1), BLOCK // 2  # rows cut to 33 tokens: half the compute
    rows = [np.concatenate([ex.ctx, ex.endings[ex.label]])[-(block + 1) :] for ex in examples]
    x = torch.zeros(len(rows), block, dtype=torch.long)
    y = torch.full((len(rows), block), -1)
    for i, row in enumerate(rows):
        x[i, : len(row) - 1], y[i, : len(row) - 1] = torch.from_numpy(row[:-1]), torch.from_numpy(row[1:])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    before = hellaswag.evaluate(model, examples, block, 1024)
    for _ in range(STEPS):
        logits = model(x)[0]
        F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert hellaswag.evaluate(model, examples, block, 1024) == {
        "eval/hellaswag_acc": 1.0,
        "eval/hellaswag_acc_norm": 1.0,
    }
    assert before["eval/hellaswag_acc_norm"] < 1.0
    assert model.training


def test_nothing_recompiles_after_the_first_eval(examples):
    """Under torch.compile (inductor) the first eval compiles every shape it needs; the next compiles nothing."""
    torch._dynamo.reset()
    model = tiny_model()
    compiled = torch.compile(model)
    graphs = lambda: torch._dynamo.utils.counters["stats"]["unique_graphs"]  # noqa: E731
    start = graphs()
    first = hellaswag.evaluate(compiled, examples, BLOCK, 1024)
    after_first = graphs()
    second = hellaswag.evaluate(compiled, examples, BLOCK, 1024)
    assert after_first > start and graphs() == after_first
    assert first == second == hellaswag.evaluate(model, examples, BLOCK, 1024)
    torch._dynamo.reset()


# -----------------------------------------------------------------------------
# in the training loop, on 1 process and 2 gloo ranks; the eval script


def loop_args(data, out, npz, **overrides):
    # 4 sequences of 32 tokens per forward: 1 example per pass, 13 passes, so one rank of two runs an
    # extra, uncounted pass
    return tiny_args(
        data,
        out,
        **{
            "hellaswag_interval": 2,
            "hellaswag_data": npz,
            "max_iters": 2,
            "eval_interval": 1,
            "optimizer_name": "adamw",
            **overrides,
        },
    )


@pytest.fixture(scope="module")
def one_process(shakespeare, prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("hellaswag_run")
    result = run_train(loop_args(shakespeare, out, prepared[1]))
    return out, result.stdout


def hellaswag_rows(out):
    return [
        {k: r[k] for k in ("iter", "eval/hellaswag_acc", "eval/hellaswag_acc_norm")}
        for r in metrics_rows(out)
        if "eval/hellaswag_acc" in r
    ]


def test_loop_logs_accuracy_and_its_time(one_process):
    out, stdout = one_process
    assert [r["iter"] for r in hellaswag_rows(out)] == [0, 2]  # not at the eval of iteration 1
    lines = [line for line in stdout.splitlines() if line.startswith("eval iter")]
    assert len(lines) == 3 and [", hellaswag acc_norm " in line for line in lines] == [True, False, True]
    assert lines[0].endswith(" s)")


def test_two_gloo_ranks_give_the_accuracy_of_one_process(one_process, shakespeare, prepared, tmp_path):
    run_train(loop_args(shakespeare, tmp_path, prepared[1]), nproc=2)
    assert hellaswag_rows(tmp_path) == hellaswag_rows(one_process[0])


def test_eval_script_on_a_checkpoint_and_an_exported_directory(one_process, prepared, tmp_path, capsys):
    out, _ = one_process
    last = hellaswag_rows(out)[-1]
    expected = f"acc {last['eval/hellaswag_acc']:.4f} acc_norm {last['eval/hellaswag_acc_norm']:.4f} on 13 examples"
    assert eval_hellaswag.cli([str(out), "--data", str(prepared[1]), "--device", "cpu"]) == 0
    assert "ckpt_00000002.pt (iter 2): " + expected in capsys.readouterr().out
    model, _, _ = eval_hellaswag.load_model(str(out))
    save_hf(model, tmp_path / "hf")
    assert eval_hellaswag.cli([str(tmp_path / "hf"), "--data", str(prepared[1]), "--batch_tokens", "256"]) == 0
    assert expected in capsys.readouterr().out
    assert eval_hellaswag.cli([str(out), "--data", str(prepared[1]), "--limit", "5"]) == 0
    assert "on 5 examples" in capsys.readouterr().out


# -----------------------------------------------------------------------------
# one-line errors


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("missing_file", ["does not exist", "--data_path"]),
        ("malformed_line", [":2: not valid JSON", "fix or delete that line"]),
        ("label_outside", [":1: label 4 is not", "(0-3)"]),
        ("empty_ending", [":1: ending 2 has no tokens"]),
        ("three_endings", [":1: an example needs ctx (text), endings (4 texts) and label"]),
    ],
)
def test_bad_jsonl_is_one_line(tmp_path, case, fragments):
    good = fixture_examples(2)
    rows = {
        "missing_file": None,
        "malformed_line": [good[0], '{"ctx": "A man", "endings": ['],
        "label_outside": [{**good[0], "label": 4}],
        "empty_ending": [{**good[0], "endings": ["a.", "b.", " ", "d."]}],
        "three_endings": [{**good[0], "endings": ["a.", "b.", "c."]}],
    }[case]
    data = tmp_path / "nope.jsonl" if rows is None else write_jsonl(tmp_path / "val.jsonl", rows)
    assert_one_line(prepare("--data_path", data, "--out_dir", tmp_path / "out"), 2, *fragments)
    assert not (tmp_path / "out" / "val.npz").exists()


def test_char_level_dataset_or_model_is_one_line(prepared, tmp_path):
    (tmp_path / "input.txt").write_text("To be, or not to be, that is the question.\n" * 200)
    subprocess.run(
        [
            sys.executable,
            str(REPO / "data" / "shakespeare_char" / "prepare.py"),
            "--input",
            str(tmp_path / "input.txt"),
            "--out_dir",
            str(tmp_path / "char"),
        ],
        check=True,
        capture_output=True,
    )
    result = run_train(loop_args(tmp_path / "char", tmp_path / "out", prepared[1]), check=False)
    assert_one_line(
        result, 2, "HellaSwag is scored in GPT-2 tokens", "a vocabulary of 17 characters", "hellaswag_interval=0"
    )
    with pytest.raises(UserError, match="scored in GPT-2 tokens but x uses a vocabulary of 2 characters"):
        hellaswag.check_vocab({"tokenizer": "char", "chars": "ab"}, "x", "fix")


def test_missing_or_damaged_prepared_file_and_bad_interval_are_one_line(tmp_path, capsys):
    assert eval_hellaswag.cli(["gpt2", "--data", str(tmp_path / "val.npz")]) == 2
    assert "run `python data/hellaswag/prepare.py`" in capsys.readouterr().err
    (tmp_path / "val.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="is not a prepared HellaSwag file"):
        hellaswag.load(tmp_path / "val.npz")
    with pytest.raises(UserError, match="hellaswag_interval=3 must be 0 .* multiple of eval_interval=2"):
        train.parse_args(["--hellaswag_interval=3", "--eval_interval=2"])
