"""Files people keep load forever: the format-1 fixtures in tests/data, and format versions.

``tests/data/format_v1*`` were written by posenfs 0.1.0, before checkpoints and genotype JSON
carried a ``format_version`` (see tests/data/make_format_v1.py). Never regenerate them: if a
test here fails, the change broke reading files users already have.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import recipe_from_dict
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.engine import checkpoint as ckpt_mod
from posenfs_cli.engine.checkpoint import build_from_checkpoint, read_checkpoint, save_checkpoint
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.build import build_model
from posenfs_cli.nas import genotype as geno_mod
from posenfs_cli.nas.genotype import (
    Genotype,
    apply_genotype,
    genotype_format_version,
    genotype_to_text,
    load_genotype,
    model_genotype,
    prune_specs,
    save_genotype,
)

DATA = Path(__file__).resolve().parents[1] / "data"
V1_CKPT = DATA / "format_v1.safetensors"
V1_GENOTYPE = DATA / "format_v1_genotype.json"
V1_IO = DATA / "format_v1_io.safetensors"

runner = CliRunner()


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def _arch_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.endswith((".alpha", ".beta"))}


# --- the committed format-1 files --------------------------------------------------------------


def test_fixtures_are_genuine_pre_version_files():
    # guards against someone regenerating them with newer code
    assert "format_version" not in _metadata(V1_CKPT)
    assert _metadata(V1_CKPT)["posenfs_version"] == "0.1.0"
    data = json.loads(V1_GENOTYPE.read_text())
    assert "format_version" not in data and data["format"] == "posenfs-genotype/1"


def test_v1_checkpoint_rebuilds_and_reproduces_stored_outputs():
    model, ckpt = build_from_checkpoint(V1_CKPT)
    assert ckpt.format_version == 1 and ckpt.epoch == 3 and ckpt.metrics == {"pckh": 0.5}
    assert ckpt.recipe.model.backbone == "fabric" and ckpt.recipe.data.keypoints == "mpii"
    # the pruning record is read back: the head part lacks an op, two cells and a slot
    head = prune_specs(ckpt.genotype)["head"]
    assert head.ops == {"dil_conv_3x3"} and head.cells == {(3, 2), (4, 1)}
    assert head.slots == {(5, 0): {2}}
    io = load_file(str(V1_IO))
    model.eval()
    with torch.no_grad():
        out = model(io["input"])
    assert out.shape == io["output"].shape == (1, 16, 8, 8)
    torch.testing.assert_close(out, io["output"], rtol=1e-4, atol=1e-5)


def test_v1_genotype_loads_and_applies_to_the_checkpoint_structure():
    genotype = load_genotype(V1_GENOTYPE)
    assert genotype.format_version == 1
    assert genotype_format_version(json.loads(V1_GENOTYPE.read_text())) == 1
    ckpt = read_checkpoint(V1_CKPT)
    model = build_model(
        ckpt.recipe.model,
        get_layout(ckpt.recipe.data.keypoints),
        prune=prune_specs(genotype),
        load_pretrained=False,
    )
    before = _arch_state(model)
    apply_genotype(model, genotype)
    after = _arch_state(model)
    stored = {k: v for k, v in ckpt.tensors.items() if k in after}
    assert set(stored) == set(after) and len(after) > 10
    assert any(not torch.equal(before[k], after[k]) for k in after)
    for k, v in after.items():
        assert torch.equal(v, stored[k]), k
    # today's writer describes the same architecture (apart from the new version field)
    again = model_genotype(model, "mpii")
    assert again == genotype
    written = again.to_json()
    assert written.pop("format_version") == 1
    assert written == json.loads(V1_GENOTYPE.read_text())


def test_v1_genotype_is_rewritten_byte_for_byte():
    # typed and back: the same text, but for the version line today's writer adds
    text = genotype_to_text(load_genotype(V1_GENOTYPE))
    lines = text.splitlines(keepends=True)
    assert lines[2] == '  "format_version": 1,\n'
    assert "".join(lines[:2] + lines[3:]) == V1_GENOTYPE.read_text()


def test_v1_files_through_the_cli(tmp_path):
    result = runner.invoke(
        app,
        [
            "visualize",
            "genotype-diff",
            str(V1_GENOTYPE),
            str(V1_CKPT),
            "--out",
            str(tmp_path / "d.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "+0.0000" in result.output and (tmp_path / "d.png").is_file()


# --- what today's code writes ------------------------------------------------------------------


def test_new_files_carry_the_format_version(tmp_path):
    model, ckpt = build_from_checkpoint(V1_CKPT)
    path = save_checkpoint(tmp_path / "new.safetensors", model, ckpt.recipe)
    assert _metadata(path)["format_version"] == str(ckpt_mod.FORMAT_VERSION) == "2"
    assert read_checkpoint(path).format_version == 2
    again, _ = build_from_checkpoint(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k

    g = save_genotype(tmp_path / "g.json", model_genotype(model, "mpii"))
    data = json.loads(g.read_text())
    assert data["format_version"] == geno_mod.FORMAT_VERSION == 1
    # `format` keeps its format-1 value so posenfs 0.1.0 still reads files written today
    assert data["format"] == "posenfs-genotype/1"
    assert load_genotype(g).to_json() == data


# --- newer or broken versions are refused with one line ----------------------------------------


def _rewrite_metadata(src: Path, dst: Path, **changes: str) -> Path:
    meta = _metadata(src)
    meta.update(changes)
    save_file(load_file(str(src)), str(dst), metadata=meta)
    return dst


def test_newer_checkpoint_is_refused(tmp_path):
    newer = _rewrite_metadata(V1_CKPT, tmp_path / "newer.safetensors", format_version="3")
    with pytest.raises(PosenfsError, match="checkpoint format 3 is newer than posenfs"):
        read_checkpoint(newer)
    # checked first: a newer format may rename or drop today's metadata keys
    meta = _metadata(newer)
    del meta["config"]
    save_file(load_file(str(newer)), str(tmp_path / "n2.safetensors"), metadata=meta)
    with pytest.raises(PosenfsError, match="format 3 is newer"):
        read_checkpoint(tmp_path / "n2.safetensors")


@pytest.mark.parametrize("value", ["0", "-1", "one", "1.5", ""])
def test_malformed_checkpoint_format_version(tmp_path, value):
    bad = _rewrite_metadata(V1_CKPT, tmp_path / "bad.safetensors", format_version=value)
    with pytest.raises(PosenfsError, match="format_version .* is not a positive integer"):
        read_checkpoint(bad)


def test_explicit_format_1_checkpoint_reads(tmp_path):
    ok = _rewrite_metadata(V1_CKPT, tmp_path / "v1.safetensors", format_version="1")
    assert read_checkpoint(ok).format_version == 1


def test_newer_checkpoint_in_the_cli_is_one_line_rc_2(tmp_path):
    newer = _rewrite_metadata(V1_CKPT, tmp_path / "newer.safetensors", format_version="7")
    result = runner.invoke(app, ["visualize", "arch", str(newer), "--out", str(tmp_path / "a")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "checkpoint format 7 is newer" in lines[0]
    assert "upgrade posenfs" in lines[0] and "Traceback" not in result.output


def _genotype_with(tmp_path: Path, **changes) -> Path:
    data = json.loads(V1_GENOTYPE.read_text())
    data.update(changes)
    path = tmp_path / "g.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "changes",
    [
        {"format_version": 2},
        {"format": "posenfs-genotype/2"},  # a newer file that only says it in `format`
        {"format": "posenfs-genotype/2", "format_version": 2},
    ],
)
def test_newer_genotype_is_refused(tmp_path, changes):
    path = _genotype_with(tmp_path, **changes)
    with pytest.raises(PosenfsError, match=r"g\.json: genotype format 2 is newer than posenfs"):
        load_genotype(path)
    with pytest.raises(PosenfsError, match="genotype format 2 is newer"):
        Genotype.from_json(json.loads(path.read_text()))


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"format_version": 0}, "is not a positive integer"),
        ({"format_version": "x"}, "is not a positive integer"),
        ({"format_version": True}, "is not a positive integer"),
        ({"format": "something-else/1"}, "not a posenfs genotype"),
        ({"cnfs": None}, 'no "cnfs" list'),
    ],
)
def test_malformed_genotype(tmp_path, changes, match):
    with pytest.raises(PosenfsError, match=match):
        load_genotype(_genotype_with(tmp_path, **changes))


def test_newer_genotype_in_the_cli_is_one_line_rc_2(tmp_path):
    path = _genotype_with(tmp_path, format_version=3)
    result = runner.invoke(app, ["visualize", "arch", str(path), "--out", str(tmp_path / "a")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "genotype format 3 is newer" in lines[0]


def test_fixture_copy_is_not_modified(tmp_path):
    # reading never rewrites a user's file (e.g. to "upgrade" it in place)
    copy = shutil.copy(V1_CKPT, tmp_path / "c.safetensors")
    before = Path(copy).read_bytes()
    build_from_checkpoint(copy)
    assert Path(copy).read_bytes() == before


def test_recipe_of_v1_checkpoint_round_trips():
    ckpt = read_checkpoint(V1_CKPT)
    assert recipe_from_dict(ckpt.recipe.to_dict()) == ckpt.recipe


def test_format_1_checkpoints_keep_their_per_level_pyramid_adapters(tmp_path):
    """0.1.0 gave each matching pyramid level an identity adapter; format 2 follows the authors'
    all-or-nothing rule. A format-1 file (no ``format_version``, no ``model.adapters``) must
    still rebuild the structure it was written with."""
    from posenfs_cli.config import load_recipe
    from posenfs_cli.models.build import build_from_recipe
    from posenfs_cli.models.size import count_params
    from tests.conftest import RECIPES

    old = load_recipe(RECIPES / "synthetic/tiny.yaml", ["model.adapters=per_level"])
    new = load_recipe(RECIPES / "synthetic/tiny.yaml")
    legacy = build_from_recipe(old, load_pretrained=False)
    current = build_from_recipe(new, load_pretrained=False)
    # the tiny model's backbone matches the CNF at one level only: the rules differ there
    assert count_params(legacy).total < count_params(current).total

    written = save_checkpoint(tmp_path / "new.safetensors", legacy, old)
    meta = _metadata(written)
    assert meta["format_version"] == "2"
    config = json.loads(meta["config"])
    assert config["model"]["adapters"] == "per_level"  # explicit from format 2 on
    del meta["format_version"]
    del config["model"]["adapters"]
    meta["config"] = json.dumps(config)
    v1 = tmp_path / "v1.safetensors"
    save_file(load_file(str(written)), str(v1), metadata=meta)

    ck = read_checkpoint(v1)
    assert ck.format_version == 1 and ck.recipe.model.adapters == "per_level"
    model, _ = build_from_checkpoint(ck)  # strict load: every tensor in its place
    x = torch.randn(1, 3, 64, 64)
    legacy.eval()
    with torch.no_grad():
        assert torch.equal(model.eval()(x), legacy(x))
