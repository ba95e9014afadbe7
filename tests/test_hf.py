"""Hugging Face GPT-2 formats: a run exports to a transformers model with the same logits, and an
exported directory trains, resumes and samples through init_from; mistakes are one line."""

import json
import os
import shutil
import subprocess
import sys
import time

import huggingface_hub.constants
import pytest
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

import checkpoint
import sample
import train
from checkpoint import load_model
from errors import UserError
from hf import is_pretrained, load_gpt2, save_hf
from model import GPT, GPTConfig
from scripts.tools import export_hf
from tests.helpers import REPO, metrics_rows, tiny_args
from vocab import GPT2, GPT2_VOCAB_SIZE, get_gpt2_encoding

TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=32)


def perturbed_gpt(**kw):
    """A tiny GPT whose biases and LayerNorm parameters are not their initial 0 and 1, so that a
    mapping that dropped or mixed them up would show in the logits."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY, **kw)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def logits_of(model, idx):
    with torch.no_grad():
        out = model(idx)
    return out.logits if hasattr(out, "logits") else out[0][..., :GPT2_VOCAB_SIZE]


def run_cli(entry, capsys, argv):
    """A script's cli(argv) as its command line runs it: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = entry(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code, err, *fragments):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


@pytest.fixture(scope="module")
def run_dir(shakespeare, tmp_path_factory):
    """A tiny trained run (bias=False, the default, and the padded 50304-row vocabulary)."""
    out = tmp_path_factory.mktemp("run")
    train.main(tiny_args(shakespeare, out, max_iters=2, eval_interval=2, optimizer_name="adamw", learning_rate=1e-2))
    return out


@pytest.fixture(scope="module")
def hf_dir(run_dir, tmp_path_factory):
    hf = tmp_path_factory.mktemp("export") / "hf"
    assert export_hf.cli([str(run_dir), str(hf)]) == 0
    return hf


@pytest.mark.parametrize(
    "kw",
    [dict(bias=True), dict(bias=False), dict(bias=False, scale_attn_by_inverse_layer_idx=True)],
    ids=["bias", "no_bias", "scale_attn_by_inverse_layer_idx"],
)
def test_export_logits_equal_ours_and_load_back(kw, tmp_path):
    model = perturbed_gpt(**kw)
    save_hf(model, tmp_path)
    hf = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert hf.config.scale_attn_by_inverse_layer_idx == kw.get("scale_attn_by_inverse_layer_idx", False)
    idx = torch.randint(0, GPT2_VOCAB_SIZE, (2, 32), generator=torch.Generator().manual_seed(1))
    ours = logits_of(model, idx)
    assert logits_of(hf, idx).shape == (2, 32, GPT2_VOCAB_SIZE)
    torch.testing.assert_close(logits_of(hf, idx), ours, rtol=0, atol=1e-4)
    back = load_gpt2(str(tmp_path))  # and back: GPT-2 always has biases, bias=False ones are zero
    torch.testing.assert_close(logits_of(back, idx), ours, rtol=0, atol=1e-4)


def test_export_script_writes_a_transformers_model_of_the_run(run_dir, hf_dir, capsys):
    names = {p.name for p in hf_dir.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
    } <= names
    assert not [p for p in hf_dir.parent.iterdir() if p.name.startswith(".")]  # no staging dir left
    ckpt = torch.load(sorted(run_dir.glob("ckpt_*.pt"))[-1], weights_only=True)
    model = GPT(GPTConfig(**ckpt["model_args"])).eval()
    model.load_state_dict(ckpt["model"])
    assert model.config.vocab_size > GPT2_VOCAB_SIZE  # the padded rows are what export leaves out
    idx = torch.randint(0, GPT2_VOCAB_SIZE, (2, 32), generator=torch.Generator().manual_seed(2))
    hf = GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    torch.testing.assert_close(logits_of(hf, idx), logits_of(model, idx), rtol=0, atol=1e-4)
    greedy = hf.generate(
        idx[:1, :8], max_new_tokens=8, do_sample=False, attention_mask=torch.ones(1, 8, dtype=torch.long)
    )
    assert torch.equal(greedy, model.generate(idx[:1, :8], 8, temperature=0, vocab_size=GPT2_VOCAB_SIZE))
    # a second export into the same directory needs --force
    code, _, err = run_cli(export_hf.cli, capsys, [str(run_dir), str(hf_dir)])
    assert_one_error_line(code, err, "is not empty", "--force")
    code, out, _ = run_cli(export_hf.cli, capsys, [str(run_dir), str(hf_dir), "--force"])
    assert code == 0 and "model.safetensors" in out


def test_exported_tokenizer_encodes_like_tiktoken(hf_dir, shakespeare):
    tok = AutoTokenizer.from_pretrained(hf_dir)
    enc = get_gpt2_encoding()
    text = (REPO / "README.md").read_text()[:3000] + " héllo  wörld 😀\t\n<|endoftext|> ROMEO:\n"
    assert tok(text)["input_ids"] == enc.encode(text, allowed_special={"<|endoftext|>"})
    assert tok.eos_token_id == 50256 and len(tok) == GPT2_VOCAB_SIZE


def test_train_from_exported_dir_learns_and_resumes(hf_dir, shakespeare, tmp_path):
    """A user's command line: the model's shape comes from the directory, not from n_layer & co
    (left at their 12-layer defaults); the run resumes, and so does a resumed one."""
    shape_keys = ("--n_layer=", "--n_head=", "--n_embd=")
    args = [
        a
        for a in tiny_args(
            shakespeare,
            tmp_path,
            init_from=str(hf_dir),
            max_iters=4,
            eval_interval=2,
            warmup_iters=1,
            optimizer_name="adamw",
            learning_rate=1e-2,
        )
        if not a.startswith(shape_keys)
    ]
    train.main(args)
    evals = [r["val/loss"] for r in metrics_rows(tmp_path) if "val/loss" in r]
    assert evals[-1] < evals[0] - 0.1, evals
    resume = [a for a in args if not a.startswith(("--init_from=", "--max_iters="))] + [
        "--init_from=auto",
        "--max_iters=6",
    ]
    train.main(resume)
    ckpt = torch.load(sorted(tmp_path.glob("ckpt_*.pt"))[-1], weights_only=True)
    assert ckpt["iter"] == 6 and ckpt["config"]["init_from"] == "auto"
    # the next start resumes from this checkpoint, which a resumed run wrote (its config says 'auto')
    model = checkpoint.model_from(ckpt, train.parse_args(resume))
    assert model.config.n_layer == 2 and model.config.bias


def test_sample_from_exported_dir(hf_dir, capsys):
    code, out, err = run_cli(
        sample.cli,
        capsys,
        [f"--init_from={hf_dir}", "--start=ROMEO:", "--num_samples=1", "--max_new_tokens=8", "--device=cpu"],
    )
    assert code == 0, err
    text = out.split("---------------")[0]
    assert text.startswith("ROMEO:") and len(text.strip()) > len("ROMEO:")


def non_gpt2_dirs(tmp_path):
    empty = tmp_path / "no_config"
    empty.mkdir()
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32}))
    return {"no config.json": (empty, "has no config.json"), "llama": (llama, "holds a 'llama' model")}


def test_bad_init_from_is_one_line(shakespeare, tmp_path, capsys, monkeypatch):
    for name, (path, fragment) in non_gpt2_dirs(tmp_path).items():
        code, _, err = run_cli(sample.cli, capsys, [f"--init_from={path}"])
        assert_one_error_line(code, err, fragment)
        monkeypatch.setattr(sys, "argv", ["train.py", *tiny_args(shakespeare, tmp_path / "out", init_from=str(path))])
        code, _, err = run_cli(lambda _: train.cli(), capsys, None)
        # a directory without config.json is not a Hugging Face model at all: train.py's check refuses it
        assert_one_error_line(code, err, "Hugging Face GPT-2 directory" if name == "no config.json" else fragment)
    missing = tmp_path / "missing"
    code, _, err = run_cli(sample.cli, capsys, [f"--init_from={missing}"])
    assert_one_error_line(code, err, "is neither a directory nor one of OpenAI's GPT-2 releases")
    monkeypatch.setattr(sys, "argv", ["train.py", *tiny_args(shakespeare, tmp_path / "out", init_from=str(missing))])
    code, _, err = run_cli(lambda _: train.cli(), capsys, None)
    assert_one_error_line(code, err, "Hugging Face GPT-2 directory")


def test_bad_export_is_one_line(run_dir, tmp_path, capsys):
    (tmp_path / "empty_run").mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    cases = {
        "no checkpoint": ([tmp_path / "empty_run", tmp_path / "hf1"], "no checkpoint in"),
        "no run dir": ([tmp_path / "missing", tmp_path / "hf2"], "is not a directory"),
        "unwritable target": ([run_dir, a_file / "hf"], "cannot write to"),
    }
    for argv, fragment in cases.values():
        code, _, err = run_cli(export_hf.cli, capsys, [str(a) for a in argv])
        assert_one_error_line(code, err, fragment)
    assert not (tmp_path / "hf1").exists()


def test_what_gpt2_cannot_represent_is_refused(tmp_path):
    with pytest.raises(UserError, match="vocab_size=65 is smaller than GPT-2's"):
        save_hf(GPT(GPTConfig(**{**TINY, "vocab_size": 65})), tmp_path / "char")
    relu = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=32, n_positions=32, activation_function="relu"))
    relu.save_pretrained(tmp_path / "relu")
    with pytest.raises(UserError, match="activation_function='relu'"):
        load_gpt2(str(tmp_path / "relu"))


def hub(monkeypatch, cache, offline, endpoint="https://huggingface.co"):
    """Point huggingface_hub (and transformers, which asks it) at another cache and endpoint."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)


def test_release_name_loads_from_the_cache_without_network(hf_dir, tmp_path, capsys, monkeypatch):
    """--init_from=gpt2 with the release in Hugging Face's cache (here: our tiny export under its name)."""
    snapshot = tmp_path / "models--gpt2" / "snapshots" / ("0" * 40)
    shutil.copytree(hf_dir, snapshot)
    (tmp_path / "models--gpt2" / "refs").mkdir()
    (tmp_path / "models--gpt2" / "refs" / "main").write_text("0" * 40)
    hub(monkeypatch, tmp_path, offline=True)
    code, out, err = run_cli(
        sample.cli,
        capsys,
        ["--init_from=gpt2", "--start=ROMEO:", "--num_samples=1", "--max_new_tokens=4", "--device=cpu"],
    )
    assert code == 0 and out.startswith("ROMEO:"), err


def test_release_name_fails_fast_when_the_hub_is_unreachable(tmp_path, capsys, monkeypatch):
    """Not offline, not cached, and the Hub unreachable (a closed local port): one quick request
    decides it, instead of a download's retries (they sleep 1+2+4+8+8 s)."""
    hub(monkeypatch, tmp_path, offline=False, endpoint="http://127.0.0.1:9")
    t0 = time.time()
    code, _, err = run_cli(sample.cli, capsys, ["--init_from=gpt2"])
    assert_one_error_line(code, err, "gpt2 is not in the Hugging Face cache and the Hub cannot be reached")
    assert time.time() - t0 < 5


def test_release_name_offline_is_one_line(tmp_path):
    """As a new user runs it: `python sample.py --init_from=gpt2` with HF_HUB_OFFLINE=1 and an empty HF_HOME."""
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(REPO / "sample.py"), "--init_from=gpt2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert_one_error_line(out.returncode, out.stderr, "gpt2 is not in the Hugging Face cache and HF_HUB_OFFLINE is set")


def test_is_pretrained_means_a_release_or_a_hugging_face_directory(tmp_path):
    (no_config, _), (llama, _) = non_gpt2_dirs(tmp_path).values()
    assert is_pretrained("gpt2-medium") and is_pretrained(str(llama))  # load_gpt2 then says it is not GPT-2
    assert not is_pretrained(str(no_config)) and not is_pretrained(str(tmp_path / "missing"))


def test_a_training_runs_out_dir_is_not_a_hugging_face_directory(run_dir):
    """Both have a config.json; a run's has no model_type, and load_model reads its checkpoint."""
    assert (run_dir / "config.json").is_file() and not is_pretrained(str(run_dir))
    model, vocab, what = load_model(str(run_dir))
    assert vocab == GPT2 and "ckpt_00000002.pt (iter 2)" in what
