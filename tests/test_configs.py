"""Every shipped config resolves to the values recorded in tests/assets/config_values.json: a change
to how configs are written (e.g. composing a size and an optimizer) moves no value. Regenerate the
file only for a change that means to move them: python -m tests.test_configs."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest

import train
from tests.helpers import REPO

ASSET = REPO / "tests" / "assets" / "config_values.json"
CONFIGS = sorted((REPO / "config").glob("train_*.py"))


def resolved(path: Path) -> dict:
    return asdict(train.parse_args([str(path)]))


def test_every_config_is_recorded():
    assert sorted(json.loads(ASSET.read_text())) == [p.name for p in CONFIGS]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_resolves_to_its_recorded_values(path):
    """Recorded keys keep their values; a key added to TrainConfig since is at its default."""
    values, recorded = resolved(path), json.loads(ASSET.read_text())[path.name]
    assert {k: values[k] for k in recorded} == recorded, "python -m tests.test_configs regenerates"
    defaults = asdict(train.TrainConfig())
    assert {k: v for k, v in values.items() if k not in recorded} == {k: defaults[k] for k in values.keys() - recorded}


if __name__ == "__main__":
    ASSET.write_text(json.dumps({p.name: resolved(p) for p in CONFIGS}, indent=1, sort_keys=True) + "\n")
