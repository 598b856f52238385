"""Profiles: the file Desktop-Mate loads, and how dm-tune builds, exports, verifies and soaks it.

The app imports this package at start-up, so this `__init__` imports only the loader and
selector (`_app`, with `fit_history`, the app's history helper from `tuner.history_fit`): no
optuna, no plotly (tests/tuner/test_profile.py checks it in a fresh interpreter). dm-tune's side
is in public submodules that import optuna, so they are imported by name, never from here:
`tuner.profile.build` (a profile from a study), `tuner.profile.export` (`dm-tune export`),
`tuner.profile.verify` (`dm-tune verify`), `tuner.profile.soak` (`dm-tune soak`) and
`tuner.profile.run` (the model and free VRAM a verify or soak runs with)."""

from tuner.profile._app import (
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
    Provenance,
    Stat,
    Tier,
    check_model,
    detect_free_vram_mb,
    fit_history,
    load_profile,
    profile_to_yaml,
    select_profile,
    select_tier,
    write_profile,
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
    "Provenance",
    "Stat",
    "Tier",
    "check_model",
    "detect_free_vram_mb",
    "fit_history",
    "load_profile",
    "profile_to_yaml",
    "select_profile",
    "select_tier",
    "write_profile",
]
