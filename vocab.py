"""The vocabulary a dataset is written in, and what a model trained on it needs to read and write it.

A prepared dataset's meta.json names its tokenizer: "gpt2" (GPT-2's BPE, the default when there is
no meta.json) or "char" (the dataset's own characters, in `chars`, token i = chars[i], as nanoGPT's
shakespeare_char meta.pkl). train.py sizes the model from it and stores it in every checkpoint, so
that sample.py decodes with the vocabulary the model was trained on.
"""
from errors import UserError
from model import PADDED_VOCAB_SIZE

GPT2 = {"tokenizer": "gpt2"}
MAX_CHARS = 2 ** 16  # token ids are stored as uint16


def from_meta(meta, where):
    """The vocabulary recorded in a dataset's meta.json (data.common.read_meta) or a checkpoint
    (GPT-2's when none is recorded)."""
    tokenizer = meta.get("tokenizer", "gpt2")
    if tokenizer == "gpt2":
        return GPT2
    chars = meta.get("chars")
    if tokenizer != "char" or not isinstance(chars, str) or not chars or len(set(chars)) != len(chars):
        raise UserError(f"{where}: tokenizer {tokenizer!r} with chars {str(chars)[:40]!r} is not a vocabulary "
                        f"this repository reads ('gpt2', or 'char' with a string of distinct characters): "
                        f"prepare the dataset again")
    return {"tokenizer": "char", "chars": chars}


def model_vocab_size(vocab):
    """Rows of the embedding (and the tied LM head) for a model trained on this vocabulary."""
    return PADDED_VOCAB_SIZE if vocab["tokenizer"] == "gpt2" else len(vocab["chars"])


def describe(vocab):
    """"GPT-2's BPE vocabulary" or "a vocabulary of 65 characters"."""
    return "GPT-2's BPE vocabulary" if vocab["tokenizer"] == "gpt2" else f"a vocabulary of {len(vocab['chars'])} characters"


def check_same(trained, data, out_dir, data_dir):
    """A resumed run must read its dataset in the vocabulary its checkpoint was trained on."""
    if trained != data:
        raise UserError(f"the checkpoint in {out_dir} was trained on {describe(trained)} but "
                        f"{data_dir} is written in {describe(data)}: use the dataset it was trained on, "
                        f"or another out_dir")


class CharCodec:
    """Text <-> token ids of a character vocabulary."""

    def __init__(self, chars):
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}

    def encode(self, text):
        missing = sorted(set(text) - self.index.keys())
        if missing:
            raise UserError(f"{''.join(missing)[:20]!r} not in the model's {len(self.chars)}-character vocabulary: "
                            f"use only characters of its training text")
        return [self.index[c] for c in text]

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)
