"""Configuration layer: command-line options, ``§`` overrides, YAML/JSON resolution into one typed, checked
:class:`RunConfig`, run naming and resources."""

from Engineering.configuration.cli import OPTIONS, SCRIPTS, Option, build_parser, option_defaults, options_for
from Engineering.configuration.naming import RunPaths, make_run_name, run_paths
from Engineering.configuration.overrides import apply_json_overrides, apply_yaml_overrides, convert, tokenise
from Engineering.configuration.resolve import (
    ResolvedConfig,
    SystemResources,
    load_datajson,
    load_resolved,
    load_yaml_config,
    resolve,
    save_resolved,
    system_resources,
)
from Engineering.configuration.run_config import RunConfig
from Engineering.configuration.shapes import parse_shape
from Engineering.configuration.stored import resolve_run

__all__ = [
    "OPTIONS",
    "SCRIPTS",
    "Option",
    "ResolvedConfig",
    "RunConfig",
    "RunPaths",
    "SystemResources",
    "apply_json_overrides",
    "apply_yaml_overrides",
    "build_parser",
    "convert",
    "load_datajson",
    "load_resolved",
    "load_yaml_config",
    "make_run_name",
    "option_defaults",
    "options_for",
    "parse_shape",
    "resolve",
    "resolve_run",
    "run_paths",
    "save_resolved",
    "system_resources",
    "tokenise",
]
