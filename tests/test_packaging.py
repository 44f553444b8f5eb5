"""pyproject.toml (pip / Poetry) and environment.yml (conda) must name the same dependencies."""

from __future__ import annotations

import re
import tomllib

import yaml

CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_DEPENDENCIES = {"python", "pip", "-e ."}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject(repo_root):
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    pip_names = {_name(d) for d in project["dependencies"]}
    env = yaml.safe_load((repo_root / "environment.yml").read_text())
    conda_names: set[str] = set()
    for dep in env["dependencies"]:
        specs = dep["pip"] if isinstance(dep, dict) else [dep]
        for spec in specs:
            if spec.strip() in NOT_DEPENDENCIES or _name(spec) in NOT_DEPENDENCIES:
                continue
            name = _name(spec)
            conda_names.add(CONDA_TO_PYPI.get(name, name))
    assert conda_names == pip_names, (
        f"only in environment.yml: {conda_names - pip_names}; only in pyproject: {pip_names - conda_names}"
    )


def test_poetry_packages_the_engineering_package(repo_root):
    data = tomllib.loads((repo_root / "pyproject.toml").read_text())
    assert data["build-system"]["build-backend"] == "poetry.core.masonry.api"
    assert {"include": "Engineering"} in data["tool"]["poetry"]["packages"]
