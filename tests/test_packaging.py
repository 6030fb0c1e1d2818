"""Packaging metadata that users and auditors rely on: licence, patterns, licences of extras."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_license_file_and_spdx_expression() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    # PEP 639: an SPDX expression and a License :: classifier must not both be given.
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    assert "Programming Language :: Python :: 3.11" in project["classifiers"]


def test_every_package_data_pattern_matches_a_real_file() -> None:
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        for pattern in patterns:
            assert list((REPO / package).glob(pattern)), f"{package}: {pattern} matches nothing"


def test_installed_code_names_no_path_of_the_development_machine() -> None:
    """Installed modules get their files from arguments, the environment or package data,
    never from where this repository or its data happened to live."""
    offenders = [
        f"{path.relative_to(REPO)}:{no}"
        for package in ("pillsnap_sdk", "pillsnap_train")
        for path in sorted((REPO / package).rglob("*.py"))
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if any(root in line for root in ('"/work/', "'/work/", '"/home/', '"/tmp/'))
    ]
    assert offenders == []


def test_readme_states_the_licences_of_the_extras() -> None:
    section = README.split("## Licences", 1)[1].split("\n## ", 1)[0]
    for name in (
        *PYPROJECT["project"]["dependencies"],
        *PYPROJECT["project"]["optional-dependencies"]["train"],
        *PYPROJECT["project"]["optional-dependencies"]["gpu"],
        *PYPROJECT["project"]["optional-dependencies"]["openvino"],
        *PYPROJECT["project"]["optional-dependencies"]["supervision"],
    ):
        dist = name.split(">")[0].split("=")[0].split("<")[0].strip()
        assert f"`{dist}`" in section, f"README licences section does not name {dist}"
    assert "AGPL-3.0" in section and "ONNX" in section


def test_model_card_template_states_the_detector_licence() -> None:
    from pillsnap_train.package import render_model_card

    card = render_model_card({"name": "x", "version": "1.0.0", "detector": {"ap50": 0.5}})
    assert "AGPL-3.0" in card and "Ultralytics" in card
