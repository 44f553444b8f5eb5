"""Weight loading from local files or the Hugging Face Hub (no remote code) and Hugging Face export."""

from Engineering.hub.export import export_hf_folder, hf_config, model_card, push_to_hub, read_resolved_yaml
from Engineering.hub.loading import (
    LoadReport,
    MatchedState,
    load_into,
    match_state_dict,
    read_state_dict,
    resolve_weights_source,
)

__all__ = [
    "LoadReport",
    "MatchedState",
    "export_hf_folder",
    "hf_config",
    "load_into",
    "match_state_dict",
    "model_card",
    "push_to_hub",
    "read_resolved_yaml",
    "read_state_dict",
    "resolve_weights_source",
]
