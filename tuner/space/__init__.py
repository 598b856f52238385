"""What a study searches: the search space (knobs and their ranges, resolved for one model and
machine), the app's baseline profiles and dm-tune's start points, and the context floor."""

from tuner.space._baselines import check_start_knobs, load_baselines, load_starts, starting_trials
from tuner.space._context_floor import ContextFloor, parse_min_ctx, resolve_floor
from tuner.space._search_space import (
    KV_KNOBS,
    Machine,
    SearchSpace,
    SearchSpaceConfig,
    key_of,
    load_search_space_config,
    resolve,
)

__all__ = [
    "KV_KNOBS",
    "ContextFloor",
    "Machine",
    "SearchSpace",
    "SearchSpaceConfig",
    "check_start_knobs",
    "key_of",
    "load_baselines",
    "load_search_space_config",
    "load_starts",
    "parse_min_ctx",
    "resolve",
    "resolve_floor",
    "starting_trials",
]
