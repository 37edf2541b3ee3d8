"""Dependencies point one way: app -> labeling, judges, training.jobs, data; the rest -> data.

The layers are drawn in docs/ARCHITECTURE.md; a change to them changes both.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "labeling", "judges", "training", "data")


def imported_modules(path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, at_module_level) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top_level = {id(node) for node in tree.body}
    found: list[tuple[str, int, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno, id(node) in top_level))
            # `from training import jobs` imports training.jobs
            found += [
                (f"{node.module}.{a.name}", node.lineno, id(node) in top_level)
                for a in node.names
                if node.module in PACKAGES
            ]
    return found


def files_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def violations(package: str, allowed: callable) -> list[str]:
    bad = []
    for path in files_of(package):
        for module, line, _ in imported_modules(path):
            top = module.split(".")[0]
            if top in PACKAGES and top != package and not allowed(module):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


def test_every_package_exists() -> None:
    for package in PACKAGES:
        assert (ROOT / package / "__init__.py").exists(), package


def test_data_imports_no_other_package() -> None:
    assert violations("data", lambda m: False) == []


@pytest.mark.parametrize("package", ["labeling", "judges", "training"])
def test_libraries_import_only_data(package: str) -> None:
    assert violations(package, lambda m: m.split(".")[0] == "data") == []


def test_app_imports_training_only_through_jobs_and_runs() -> None:
    def allowed(module: str) -> bool:
        top = module.split(".")[0]
        if top == "training":
            # training.runs: the `runs` table's reads, as light as training.jobs
            return module in ("training", "training.jobs", "training.runs")
        return top in ("labeling", "judges", "data")

    assert violations("app", allowed) == []


def test_training_jobs_keeps_heavy_imports_out_of_module_level() -> None:
    """The UI imports training.jobs; torch & co. must load only inside the trainer subprocess."""
    heavy = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {module} at module level"
        for path in [ROOT / "training" / "jobs.py", ROOT / "training" / "__init__.py"]
        if path.exists()
        for module, line, top_level in imported_modules(path)
        if top_level and module.split(".")[0] in heavy
    ]
    assert bad == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """Guard against a checker that can never fail."""
    sample = tmp_path / "bad.py"
    sample.write_text("import app.cli\nfrom training import ppo\n\ndef f():\n    import torch\n")
    modules = {(m, top) for m, _, top in imported_modules(sample)}
    assert ("app.cli", True) in modules
    assert ("training.ppo", True) in modules
    assert ("torch", False) in modules


def test_importing_training_jobs_loads_no_heavy_library() -> None:
    """What the UI process imports for training (and all it pulls in) stays torch-free."""
    import subprocess
    import sys

    code = (
        "import sys, training.jobs, app.cli\n"
        "heavy = ('torch', 'transformers', 'trl', 'peft', 'accelerate')\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
