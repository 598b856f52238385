"""Profiles: the file Desktop-Mate loads, and how dm-tune builds, exports, verifies and soaks it.

The app imports this package at start-up (or vendors its loader, see below), so this `__init__`
imports only the loader and selector (`llm_profile`: the app vendors it as
`src/ai/llm_profile.py`) and the app's history helper (`fit_history`, from `tuner.history_fit`):
no pydantic, optuna or plotly (tests/tuner/test_profile.py checks it in a fresh interpreter).
The app can vendor those two files instead: tuner/profile/llm_profile.py and
tuner/history_fit.py need PyYAML only (tests/tuner/test_profile_vendored.py). dm-tune's side is
in public submodules that import optuna, so they are imported by name, never from here:
`tuner.profile.build` (a profile from a study, and writing it), `tuner.profile.export`
(`dm-tune export`), `tuner.profile.verify` (`dm-tune verify`), `tuner.profile.soak`
(`dm-tune soak`) and `tuner.profile.run` (the model and free VRAM a verify or soak runs with)."""

from tuner.history_fit import fit_history
from tuner.profile.llm_profile import (
    APP_KEYS,
    MAX_PROFILE_BYTES,
    PROFILE_VERSION,
    READABLE_VERSIONS,
    Conversation,
    LlamaKeys,
    Measured,
    ModelRef,
    Prefer,
    Profile,
    ProfileError,
    ProfileWarning,
    Provenance,
    SchemaError,
    Stat,
    Tier,
    check_model,
    detect_free_vram_mb,
    load_profile,
    quick_digest,
    select_profile,
    select_tier,
)

__all__ = [
    "APP_KEYS",
    "MAX_PROFILE_BYTES",
    "PROFILE_VERSION",
    "READABLE_VERSIONS",
    "Conversation",
    "LlamaKeys",
    "Measured",
    "ModelRef",
    "Prefer",
    "Profile",
    "ProfileError",
    "ProfileWarning",
    "Provenance",
    "SchemaError",
    "Stat",
    "Tier",
    "check_model",
    "detect_free_vram_mb",
    "fit_history",
    "load_profile",
    "quick_digest",
    "select_profile",
    "select_tier",
]
