"""What re-running a profile's tiers on this machine needs: the profile, the model it was
measured with, and the free VRAM that decides which tiers can run here at all.

Shared by `dm-tune verify` and `dm-tune soak`: both must load the very GGUF the profile was
measured with (other weights, other speed), and both must tell "no GPU here" (None) apart from
"a GPU with 0 MB free", never reporting a made-up 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from objectives.nvml import list_gpus
from tuner.errors import UserError
from tuner.machine import DEMO_MODEL_SHA256, ensure_demo_model
from tuner.model_file import sha256_cached
from tuner.profile.llm_profile import Profile, ProfileError, check_model, load_profile


def open_profile(path: Path) -> Profile:
    """load_profile with its one-line ProfileError turned into the CLI's UserError."""
    try:
        return load_profile(path)
    except ProfileError as exc:
        raise UserError(str(exc)) from None


def resolve_model(profile: Profile, model: Path | None) -> Path:
    """The GGUF to load: --model (checked against the profile's whole-file sha256, cached),
    else the demo model when the profile was measured with it; any other profile needs
    --model."""
    if model is not None:
        try:
            check_model(profile, model, full_sha256=sha256_cached)
        except ProfileError as exc:
            raise UserError(str(exc).replace(" or pass force=True (--force)", "")) from None
        return model
    if profile.model.sha256 == DEMO_MODEL_SHA256:
        return ensure_demo_model()
    raise UserError(
        f"the profile was measured with {profile.model.file} "
        f"(sha256 {profile.model.sha256[:12]}...); pass --model PATH to that file"
    )


@dataclass(frozen=True)
class FreeVram:
    """Free VRAM over all NVIDIA GPUs, or None with the reason when GPU tiers can't run here."""

    mb: float | None
    why_none: str = ""

    def describe(self) -> str:
        return f"{self.mb:.0f} MB available" if self.mb is not None else self.why_none


def _build_offloads() -> bool:
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # a broken build: let the child runs report it
        return True


def free_vram() -> FreeVram:
    """Read NVML now (before any child loads a model): llama.cpp spreads layers over every GPU."""
    gpus = list_gpus()
    if not gpus:
        return FreeVram(None, "no NVIDIA GPU")
    if not _build_offloads():
        return FreeVram(None, "llama-cpp-python is a CPU-only build (see `dm-tune doctor`)")
    return FreeVram(sum(g.free_mb for g in gpus))
