"""Build hook: copy the default configs (configs/*.yaml, the only copy in the repository) into
the wheel as tuner/_configs/, where tuner.paths finds them in a non-editable install. Everything
else about the package is in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONFIGS = Path(__file__).resolve().parent / "configs"
PACKAGED = Path("tuner") / "_configs"  # tuner.paths.PACKAGED_CONFIGS


class BuildWithConfigs(build_py):
    """build_py, plus the default configs. An editable install reads configs/ in place."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        sources = sorted(CONFIGS.glob("*.yaml"))
        if not sources:
            raise SystemExit(f"no default configs in {CONFIGS}: build from a full source tree")
        target = Path(self.build_lib) / PACKAGED
        target.mkdir(parents=True, exist_ok=True)
        for src in sources:
            shutil.copyfile(src, target / src.name)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        names = [str(Path(self.build_lib) / PACKAGED / p.name) for p in CONFIGS.glob("*.yaml")]
        return [*super().get_outputs(include_bytecode), *names]


setup(cmdclass={"build_py": BuildWithConfigs})
