"""The files a user deciding to depend on posenfs reads: license, citation, changelog, typing."""

from __future__ import annotations

import re
import tomllib

import yaml

from posenfs_cli import __version__
from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_license_matches_pyproject():
    text = (REPO / "LICENSE").read_text()
    assert PYPROJECT["project"]["license"] == {"text": "MIT"}
    assert text.startswith("MIT License") and "Copyright (c) 2026 the posenfs authors" in text
    assert "License :: OSI Approved :: MIT License" in PYPROJECT["project"]["classifiers"]


def test_citation_cff():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["message"] and cff["authors"] and cff["title"]
    assert cff["version"] == __version__, "bump CITATION.cff's version with the package"
    assert cff["license"] == "MIT"
    paper = cff["preferred-citation"]
    assert paper["title"] == "Pose Neural Fabrics Search" and paper["year"] == 2019
    assert [a["family-names"] for a in paper["authors"]] == ["Yang", "Yang", "Cui"]
    assert paper["doi"] == "10.48550/arXiv.1909.07068"


def test_changelog_has_unreleased_and_the_current_version():
    text = (REPO / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert headings[0] == "Unreleased"
    assert __version__ in headings, f"CHANGELOG.md has no section for {__version__}"
    # the format table names the versions the readers accept
    from posenfs_cli.engine.checkpoint import FORMAT_VERSION as CKPT
    from posenfs_cli.nas.genotype import FORMAT_VERSION as GENO

    assert f"| checkpoint (`.safetensors`) | {CKPT} |" in text
    assert f"| genotype JSON | {GENO} |" in text


def test_typing_marker_and_checker_configuration():
    assert (REPO / "src" / "posenfs_cli" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["posenfs_cli"]
    pins = [d for d in PYPROJECT["project"]["optional-dependencies"]["dev"] if "mypy" in d]
    assert pins and all("==" in d for d in pins), "the type checker must be pinned"
    strict = PYPROJECT["tool"]["mypy"]["overrides"][0]
    assert set(strict["module"]) >= {
        "posenfs_cli.nas.*",
        "posenfs_cli.models.*",
        "posenfs_cli.evaluation.*",
        "posenfs_cli.config",
    }
    assert strict["disallow_untyped_defs"] and strict["warn_return_any"]
    assert "python -m mypy" in (REPO / ".ci" / "run").read_text()
    assert "mypy" in (REPO / "README.md").read_text()


def test_every_type_ignore_says_why():
    bare = []
    for path in sorted((REPO / "src").rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "# type: ignore" not in line:
                continue
            prev = path.read_text().splitlines()[n - 2] if n > 1 else ""
            code = re.search(r"# type: ignore\[[a-z-, ]+\]", line)
            reason = line.split("]", 1)[-1].strip(" #") if code else ""
            if not code or not (reason or prev.strip().startswith("#")):
                bare.append(f"{path.relative_to(REPO)}:{n}")
    assert not bare, f"type: ignore without an error code and a reason: {bare}"


def test_bug_template_asks_for_env():
    text = (REPO / ".github" / "ISSUE_TEMPLATE" / "bug.md").read_text()
    assert text.startswith("---\nname: Bug report") and "posenfs env" in text
