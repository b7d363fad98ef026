"""The lock (deploy/requirements.lock) must agree with pyproject's ranges: `make lock` after
any change to pyproject's dependencies, or CI fails here."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _locked() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "deploy" / "requirements.lock").read_text().splitlines():
        match = _PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return [Requirement(r) for r in [*project["dependencies"], *extras.get("dev", []), *extras.get("embedded", [])]]


def test_every_declared_dependency_is_locked_within_its_range() -> None:
    pins = _locked()
    assert len(pins) > 20, "the lock has almost no pins: regenerate it with `make lock`"
    problems = []
    for req in _declared():
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name} is not in the lock")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} in the lock is outside pyproject's {req.specifier}")
    assert not problems, "pyproject and deploy/requirements.lock disagree (run `make lock`): " + "; ".join(problems)


def test_lock_pins_torch_without_a_local_build_label() -> None:
    # `torch==X+cpu` would refuse the CUDA build of the same release on a GPU host.
    torch = [line for line in (ROOT / "deploy" / "requirements.lock").read_text().splitlines()
             if line.startswith("torch==")]
    assert len(torch) == 1 and "+" not in torch[0]
    constraint = (ROOT / "deploy" / "lock-constraints.txt").read_text()
    assert torch[0] in constraint.splitlines()


def test_installed_versions_are_the_locked_ones() -> None:
    """What `make install` (and so CI) put in the environment is the lock, not the newest release."""
    from importlib import metadata

    drift = []
    for name, version in _locked().items():
        if name == "torch":  # GPU hosts bring their own CUDA build
            continue
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            continue  # locked for an extra or a platform this environment does not use
        if installed != version:
            drift.append(f"{name} {installed} (lock {version})")
    assert not drift, "the environment is not the lock (run `make install`): " + "; ".join(drift)
