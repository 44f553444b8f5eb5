"""Weight loading from local files or the Hugging Face Hub (no remote code, pickles weights-only) and export."""

from Engineering.hub.deepspeed import deepspeed_state_dict, is_deepspeed_checkpoint
from Engineering.hub.engine_weights import load_pretrained_weights, load_weights_into
from Engineering.hub.export import export_hf_folder, hf_config, model_card, push_to_hub, read_resolved_yaml
from Engineering.hub.loading import (
    LoadReport,
    MatchedState,
    load_into,
    match_state_dict,
    read_state_dict,
    resolve_weights_source,
)
from Engineering.pickle_policy import NO_TRUST, TrustedFiles, UnsafePickleError, load_pickle

__all__ = [
    "NO_TRUST",
    "LoadReport",
    "MatchedState",
    "TrustedFiles",
    "UnsafePickleError",
    "deepspeed_state_dict",
    "export_hf_folder",
    "hf_config",
    "is_deepspeed_checkpoint",
    "load_into",
    "load_pickle",
    "load_pretrained_weights",
    "load_weights_into",
    "match_state_dict",
    "model_card",
    "push_to_hub",
    "read_resolved_yaml",
    "read_state_dict",
    "resolve_weights_source",
]
