"""The layering is kept by CI: every import in the installed packages points down (or sideways
inside one package), never up.

    tweetner (the command, the embedded stack, replay, benchmarks)       top
    ingest | tagger.worker -> tagger | sink (stages; no stage imports another)
    contracts (messages, topics, the settings base, decoding, logging)   bottom

Research recipes (recipes/) and tests sit outside the packages and may import anything; no
package imports them.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("contracts", "ingest", "tagger", "sink", "tweetner")
_STAGES = {"ingest", "tagger", "sink"}


def _unit(module: str) -> str:
    """The unit a module belongs to: a top-level package, or tagger.worker."""
    parts = module.split(".")
    if parts[:2] == ["tagger", "worker"]:
        return "tagger.worker"
    return parts[0]


_RANK = {"contracts": 0, "ingest": 1, "tagger": 1, "sink": 1, "tagger.worker": 2, "tweetner": 3,
         "recipes": 4, "tests": 4}


def forbidden(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported`` (both dotted module names), or None."""
    src, dst = _unit(importer), _unit(imported)
    if dst not in _RANK or src == dst:
        return None  # a third-party module, or within one unit
    if src == "tagger.worker" and dst == "tagger":
        return None  # the worker runs the model library
    if _RANK[dst] > _RANK[src] or (dst == "tagger.worker" and src != "tweetner"):
        return f"{importer} imports {imported}: {dst} is above {src}"
    if src in _STAGES and dst in _STAGES | {"tagger.worker"}:
        return f"{importer} imports {imported}: stages do not import each other"
    return None


def imports_of(source: str, module: str) -> list[str]:
    """Every module ``source`` imports, at any depth (function-level imports count too)."""
    found: list[str] = []
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.append(node.module)
    return found


def violations(modules: dict[str, str]) -> list[str]:
    out = []
    for module, source in sorted(modules.items()):
        for imported in imports_of(source, module):
            why = forbidden(module, imported)
            if why:
                out.append(why)
    return out


def _package_modules() -> dict[str, str]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            modules[name] = path.read_text()
    return modules


def test_no_module_imports_upward() -> None:
    modules = _package_modules()
    assert len(modules) > 40 and "contracts.messages" in modules and "tagger.worker.agent" in modules
    assert violations(modules) == []


def test_an_upward_import_is_caught() -> None:
    modules = _package_modules()
    modules["contracts.messages"] += "\n\ndef _late():\n    from tweetner.stack import Stack\n"
    modules["sink.writer"] += "\nimport tagger.inference\n"
    modules["tagger.modeling"] += "\nfrom tagger.worker import agent\n"
    modules["ingest.service"] += "\nfrom tests.fixtures import tiny_model\n"
    found = violations(modules)
    assert any(v.startswith("contracts.messages imports tweetner.stack") for v in found)
    assert any(v.startswith("sink.writer imports tagger.inference") for v in found)
    assert any(v.startswith("tagger.modeling imports tagger.worker") for v in found)
    assert any(v.startswith("ingest.service imports tests.fixtures") for v in found)
    assert len(found) == 4


def test_relative_imports_resolve_to_their_package() -> None:
    assert imports_of("from .agent import x\nfrom ..tweetner import y\n", "tagger.worker.app") == [
        "tagger.worker.agent", "tagger.tweetner"]
