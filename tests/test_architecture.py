"""Imports go one way only: the import-linter contracts of pyproject.toml hold for the package as it stands.

apps -> engines -> (data, hub, outputs, science, transforms, warp_drives) -> configuration -> (pickle_policy, fileio)
-> errors; no package (at any depth) imports its own importer. ``lint-imports`` checks the same contracts from the
command line.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter.api import read_configuration
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
from importlinter.contracts.layers import LayersContract
from importlinter.domain.contract import Contract

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
CONTRACT_TYPES: dict[str, type[Contract]] = {c.type_name: c for c in (LayersContract, AcyclicSiblingsContract)}


@pytest.fixture(scope="module")
def contracts() -> list[Contract]:
    options = read_configuration(str(PYPROJECT))
    session = options["session_options"]
    return [
        CONTRACT_TYPES[o["type"]](name=o["name"], session_options=session, contract_options=o)
        for o in options["contracts_options"]
    ]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("Engineering", cache_dir=None)


def _broken(contracts: list[Contract], graph: grimp.ImportGraph) -> dict[str, Any]:
    """Name of each broken contract -> what breaks it."""
    out = {}
    for contract in contracts:
        check = contract.check(copy.deepcopy(graph), verbose=False)
        if not check.kept:
            out[contract.name] = check.metadata
    return out


def test_both_contracts_are_configured(contracts):
    assert sorted(type(c).type_name for c in contracts) == ["acyclic_siblings", "layers"]


def test_imports_go_one_way_and_no_package_imports_its_importer(contracts, graph):
    broken = _broken(contracts, graph)
    assert not broken, f"import contracts broken (run lint-imports for details): {broken}"


@pytest.mark.parametrize(
    ("importer", "imported", "breaks"),
    [
        ("Engineering.data.datamodule", "Engineering.engines.strategies", {"layers", "acyclic_siblings"}),
        # every middle package reaches configuration (the typed settings), so an import from it also closes a circle
        ("Engineering.configuration.cli", "Engineering.transforms", {"layers", "acyclic_siblings"}),
        ("Engineering.warp_drives.pythae.registry", "Engineering.warp_drives.pythae.station", {"acyclic_siblings"}),
    ],
    ids=["upward", "below-configuration", "circle-inside-a-package"],
)
def test_an_offending_import_breaks_the_contract(contracts, graph, importer, imported, breaks):
    bad = copy.deepcopy(graph)
    bad.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
    broken = _broken(contracts, bad)
    assert {type(c).type_name for c in contracts if c.name in broken} == breaks
