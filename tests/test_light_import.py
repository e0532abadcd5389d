"""`from translate import Translator` loads the networks and the image rules only: no training stack, no heavy
image libraries (checked in a fresh interpreter, whose sys.modules tells what was imported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAINING_ONLY = ["translate.engine", "translate.data", "translate.methods", "translate.config", "translate.evaluation",
                 "accelerate", "omegaconf", "scipy", "skimage", "cv2", "albumentations", "kornia"]


def imported_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return set(json.loads(result.stdout.splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return [name for name in TRAINING_ONLY if name in modules or any(m.startswith(name + ".") for m in modules)]


def test_translator_imports_no_training_stack():
    modules = imported_after("import translate\ntranslate.Translator")
    assert "translate.inference.translator" in modules and "translate.imageio" in modules
    assert heavy(modules) == []


def test_public_names_still_import():
    modules = imported_after("from translate import Config, load_config, register_recipe, register_generator, "
                             "register_discriminator, train, Translator, ConfigError, Recipe\n"
                             "assert Config.__name__ == 'Config' and callable(train) and Translator.from_pretrained")
    assert "translate.config" in modules and "translate.methods" in modules


def test_bare_import_loads_nothing_more():
    assert [m for m in imported_after("import translate") if m.startswith("translate.")] == []
