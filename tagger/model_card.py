"""A README.md model card for a span-marker model directory.

The card is built only from what the directory's config carries (plus the training sentences when
the trainer has them at hand), so it can be regenerated for any checkpoint. Checkpoints trained
elsewhere have no ``tweetner`` metadata at all: every section reads it defensively and is left out,
or says what is unknown, rather than raising.
"""
from __future__ import annotations

import json
import platform
import shlex
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from tagger.configuration import SpanMarkerConfig
from tagger.conll import Sentence, spans_from_iob2

__all__ = ["render_model_card", "write_model_card"]

CARD_NAME = "README.md"
EXAMPLES_PER_LABEL = 3
MISSING = "—"
PLACEHOLDER_DIR = "path/to/model"
# Training arguments that say where things are rather than how the model was trained.
_NOT_HYPERPARAMETERS = ("train", "dev", "output", "device", "model_name", "model_version")
_LENGTH_LIMITS = ("entity_max_length", "marker_max_length", "model_max_length")
_FRAMEWORKS = ("torch", "transformers", "tokenizers", "tweetner")


def write_model_card(
    directory: str | Path,
    config: SpanMarkerConfig,
    train_sentences: Sequence[Sentence] | None = None,
    *,
    extra_sections: dict[str, str] | None = None,
) -> Path:
    """Write ``directory/README.md`` and return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CARD_NAME
    text = render_model_card(config, train_sentences, extra_sections=extra_sections, directory=directory)
    path.write_text(text, encoding="utf-8")
    return path


def render_model_card(
    config: SpanMarkerConfig,
    train_sentences: Sequence[Sentence] | None = None,
    *,
    extra_sections: dict[str, str] | None = None,
    directory: str | Path | None = None,
) -> str:
    """The model card as Markdown with YAML front matter."""
    meta = _dict(config.tweetner)
    sentences = list(train_sentences or [])
    model_dir = str(directory) if directory is not None else PLACEHOLDER_DIR
    parts = [
        _front_matter(config, meta),
        f"# {config.model_name}",
        _description(config, meta),
        _section("Labels", _labels_table(config, sentences)),
        _section("Training set metrics", _training_set_metrics(config, sentences)),
        _section("Hyperparameters", _hyperparameters(config, meta)),
        _section("Training results", _training_results(meta)),
        _section("Per-type dev F1", _per_type(config, meta.get("dev_per_type"))),
        _section("Throughput", _throughput(meta.get("throughput"))),
        _section("Framework versions", _framework_versions(config)),
        _section("How to use", _how_to_use(model_dir)),
        _section("Limitations", _limitations(config, directory)),
    ]
    for title, body in (extra_sections or {}).items():
        parts.append(_section(title, body.strip()))
    return "\n\n".join(p for p in parts if p) + "\n"


# --- front matter and description ------------------------------------------------------------


def _front_matter(config: SpanMarkerConfig, meta: dict[str, Any]) -> str:
    data: dict[str, Any] = {
        "language": ["en"],
        "library_name": "span-marker",
        "pipeline_tag": "token-classification",
        "tags": ["token-classification", "ner", "named-entity-recognition", "span-marker", "tweetner"],
    }
    base = config.encoder.get("_name_or_path")
    # A local path means nothing on the Hub; only a repo id is worth linking as the base model.
    if isinstance(base, str) and base and not base.startswith(("/", ".", "~")) and base.count("/") <= 1:
        data["base_model"] = base
    datasets = _datasets(meta)
    if datasets:
        data["datasets"] = datasets
    data["metrics"] = ["precision", "recall", "f1"]
    index = _model_index(config, meta)
    if index:
        data["model-index"] = index
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return f"---\n{body}---"


def _datasets(meta: dict[str, Any]) -> list[str]:
    if isinstance(meta.get("datasets"), list):
        return [str(d) for d in meta["datasets"]]
    files = [*_list(meta.get("train_files")), meta.get("dev_file")]
    # Local paths are not portable: the file names are what identifies the data to a reader.
    return list(dict.fromkeys(Path(str(f)).name for f in files if f))


def _model_index(config: SpanMarkerConfig, meta: dict[str, Any]) -> list[dict[str, Any]]:
    best_f1 = _float(meta.get("best_dev_f1"))
    if best_f1 is None:
        return []
    metrics = [{"type": "f1", "value": round(best_f1, 4), "name": "F1"}]
    best = _best_row(meta)
    for key, name in (("dev_precision", "precision"), ("dev_recall", "recall")):
        value = _float(best.get(key)) if best else None
        if value is not None:
            metrics.append({"type": name, "value": round(value, 4), "name": name.capitalize()})
    dev = meta.get("dev_file")
    dataset_name = Path(str(dev)).name if dev else "dev"
    return [{
        "name": config.model_name,
        "results": [{
            "task": {"type": "token-classification", "name": "Named Entity Recognition"},
            "dataset": {"name": dataset_name, "type": dataset_name, "split": "dev"},
            "metrics": metrics,
        }],
    }]


def _description(config: SpanMarkerConfig, meta: dict[str, Any]) -> str:
    enc = config.encoder
    name = enc.get("_name_or_path") or "an unnamed encoder"
    facts = [str(enc["model_type"])] if enc.get("model_type") else []
    layers = enc.get("num_hidden_layers") or enc.get("n_layers") or enc.get("num_layers")
    if layers:
        facts.append(f"{layers} layers")
    try:
        facts.append(f"hidden size {config.hidden_size}")
    except (TypeError, ValueError):
        pass  # encoder config without any hidden-size key: say nothing rather than guess
    detail = f" ({', '.join(facts)})" if facts else ""
    text = (
        f"A span classifier for named entities in tweets, in the SpanMarker layout, built on `{name}`{detail}. "
        f"Every run of up to {config.entity_max_length} words is a candidate; each candidate gets a pair of "
        "start/end marker tokens next to the tweet, and a linear head reads the two markers' encodings "
        f"to pick one of {len(config.labels) - 1} entity types or `O`. Overlapping predictions are "
        "resolved greedily by score."
    )
    version = meta.get("model_version")
    if version:
        text += f"\n\nModel version: `{version}`."
    return text


# --- data ----------------------------------------------------------------------------------------


def _entities(sentences: Iterable[Sentence]) -> list[tuple[str, str, int]]:
    """(label, surface form, length in words) of every gold entity."""
    out = []
    for sentence in sentences:
        for span in spans_from_iob2(sentence.tags):
            words = sentence.words[span.start : span.end]
            out.append((span.label, " ".join(words), len(words)))
    return out


def _labels_table(config: SpanMarkerConfig, sentences: list[Sentence]) -> str:
    labels = config.labels[1:]
    if not labels:
        return ""
    if not sentences:
        return _table(["Label"], [[f"`{label}`"] for label in labels])
    entities = _entities(sentences)
    counts = Counter(label for label, _, _ in entities)
    forms: dict[str, Counter[str]] = {label: Counter() for label in labels}
    for label, text, _ in entities:
        if label in forms:
            forms[label][text] += 1
    rows = []
    for label in labels:
        # most_common keeps first-seen order among ties, so the examples are stable across runs.
        examples = [f'"{text}"' for text, _ in forms[label].most_common(EXAMPLES_PER_LABEL)]
        rows.append([f"`{label}`", str(counts[label]), ", ".join(examples) or MISSING])
    return _table(["Label", "Training entities", "Examples"], rows)


def _training_set_metrics(config: SpanMarkerConfig, sentences: list[Sentence]) -> str:
    if not sentences:
        return ""
    entities = _entities(sentences)
    per_sentence = [len(spans_from_iob2(s.tags)) for s in sentences]
    lengths = [n for _, _, n in entities]
    rows = [
        ["Sentence length (words)", *_min_median_max([len(s.words) for s in sentences])],
        ["Entities per sentence", *_min_median_max(per_sentence)],
        ["Entity length (words)", *_min_median_max(lengths)],
    ]
    text = (
        f"{len(sentences)} sentences, {len(entities)} entities.\n\n"
        + _table(["Metric", "Min", "Median", "Max"], rows)
    )
    too_long = sum(n > config.entity_max_length for n in lengths)
    if too_long:
        text += (f"\n\n{too_long} training entities are longer than the {config.entity_max_length}-word "
                 "cap and were trained as `O`.")
    return text


def _min_median_max(values: list[int]) -> list[str]:
    if not values:
        return [MISSING] * 3
    return [_num(min(values)), _num(statistics.median(values)), _num(max(values))]


# --- training ------------------------------------------------------------------------------------


def _hyperparameters(config: SpanMarkerConfig, meta: dict[str, Any]) -> str:
    params: dict[str, Any] = {name: getattr(config, name) for name in _LENGTH_LIMITS}
    for key, value in _dict(meta.get("training")).items():
        # The config's limits are what the saved model uses; the training args only repeat them.
        if key not in _NOT_HYPERPARAMETERS and key not in params:
            params[key] = value
    return "\n".join(f"- {key}: {_value(value)}" for key, value in params.items())


def _history(meta: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for row in _list(meta.get("history")) if isinstance(row, Mapping)]


def _best_epoch(meta: dict[str, Any]) -> Any:
    if meta.get("best_epoch") is not None:
        return meta["best_epoch"]
    scored = [row for row in _history(meta) if _float(row.get("dev_f1")) is not None]
    return max(scored, key=lambda row: _float(row["dev_f1"]))["epoch"] if scored else None


def _best_row(meta: dict[str, Any]) -> Mapping[str, Any] | None:
    best = _best_epoch(meta)
    if best is None:
        return None
    return next((row for row in _history(meta) if row.get("epoch") == best), None)


def _training_results(meta: dict[str, Any]) -> str:
    history = _history(meta)
    if not history:
        return ""
    best = _best_epoch(meta)
    rows = []
    for row in history:
        cells = [
            _value(row.get("epoch")), _value(row.get("step")), _metric(row.get("train_loss")),
            _metric(row.get("dev_precision")), _metric(row.get("dev_recall")), _metric(row.get("dev_f1")),
            _seconds(row.get("seconds")),
        ]
        if best is not None and row.get("epoch") == best:
            cells = [f"**{c}**" for c in cells]
        rows.append(cells)
    text = _table(["Epoch", "Step", "Train loss", "Dev precision", "Dev recall", "Dev F1", "Seconds"], rows)
    notes = []
    if best is not None and _float(meta.get("best_dev_f1")) is not None:
        notes.append(f"The saved weights are those of epoch {best} (dev F1 {_metric(meta['best_dev_f1'])}).")
    if _float(meta.get("train_seconds")) is not None:
        notes.append(f"Training took {_seconds(meta['train_seconds'])} s.")
    return text + ("\n\n" + " ".join(notes) if notes else "")


def _per_type(config: SpanMarkerConfig, per_type: Any) -> str:
    per_type = _dict(per_type)
    if not per_type:
        return ""
    order = [label for label in config.labels[1:] if label in per_type]
    order += sorted(label for label in per_type if label not in order)
    rows = []
    for label in order:
        scores = _dict(per_type[label])
        rows.append([f"`{label}`", _metric(scores.get("precision")), _metric(scores.get("recall")),
                     _metric(scores.get("f1")), _value(scores.get("support"))])
    return _table(["Label", "Precision", "Recall", "F1", "Support"], rows)


def _throughput(bench: Any) -> str:
    """Rows from `tweetner bench tagger` output: one run, a list of runs, or the matrix's ``modes``."""
    context: dict[str, Any] = {}
    if isinstance(bench, Mapping) and isinstance(bench.get("modes"), Mapping):
        runs = [{"mode": mode, **_dict(run)} for mode, run in bench["modes"].items()]
        context = {k: v for k, v in bench.items() if k != "modes" and _is_scalar(v)}
    elif isinstance(bench, Mapping):
        runs = [dict(bench)]
    else:
        runs = [dict(run) for run in _list(bench) if isinstance(run, Mapping)]
    if not runs:
        return ""
    columns = list(dict.fromkeys(k for run in runs for k, v in run.items() if _is_scalar(v)))
    rows = [[_value(run.get(column)) for column in columns] for run in runs]
    text = _table(columns, rows)
    if context:
        text = ", ".join(f"{k}: {_value(v)}" for k, v in context.items()) + "\n\n" + text
    return text


# --- environment and usage -----------------------------------------------------------------------


def _framework_versions(config: SpanMarkerConfig) -> str:
    lines = [f"- Python: {platform.python_version()}"]
    for package in _FRAMEWORKS:
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "not installed"
        lines.append(f"- {package}: {version}")
    if config.extra.get("span_marker_version"):
        lines.append(f"- span_marker checkpoint format: {config.extra['span_marker_version']}")
    return "\n".join(lines)


def _how_to_use(model_dir: str) -> str:
    quoted = json.dumps(model_dir)
    shell_dir = shlex.quote(model_dir)
    return (
        "From the command line, one tweet at a time or a file of tweets (one per line):\n\n"
        "```bash\n"
        f"tweetner predict --model {shell_dir} \"Watching the Lakers game in Los Angeles with @jack\"\n"
        f"tweetner predict --model {shell_dir} --input tweets.txt\n"
        "```\n\n"
        "From Python:\n\n"
        "```python\n"
        "from tagger.inference import NerTagger\n\n"
        f"tagger = NerTagger.load({quoted})\n"
        "for entities in tagger.predict([\"Watching the Lakers game in Los Angeles with @jack\"]):\n"
        "    for entity in entities:\n"
        "        print(entity.label, entity.text, entity.start, entity.end, round(entity.score, 3))\n"
        "```"
    )


def _limitations(config: SpanMarkerConfig, directory: str | Path | None) -> str:
    lowercase = _lowercases(directory)
    if lowercase is True:
        casing = "The encoder is uncased: capitalisation, often the strongest hint for a name, is not seen."
    elif lowercase is False:
        casing = "The encoder is cased, so tweets written all in lower or upper case may lose entities."
    else:
        casing = "If the encoder is uncased, capitalisation (often the strongest hint for a name) is not seen."
    return "\n".join([
        "- Trained for English tweets; other languages and longer, edited text are outside its training data.",
        f"- {casing}",
        f"- Entities longer than {config.entity_max_length} words cannot be predicted, and text beyond "
        f"{config.model_max_length} tokens is cut off.",
        "- Entity types are the ones in the Labels table only; anything else is left untagged.",
    ])


def _lowercases(directory: str | Path | None) -> bool | None:
    """Whether the saved tokenizer lowercases its input; None when the directory does not say."""
    if directory is None:
        return None
    try:
        data = json.loads((Path(directory) / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("do_lower_case") if isinstance(data, dict) else None
    return value if isinstance(value, bool) else None


# --- formatting helpers ----------------------------------------------------------------------------


def _section(title: str, body: str) -> str:
    return f"## {title}\n\n{body}" if body else ""


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(text: str) -> str:
    # A raw pipe or newline in a surface form would split or end the Markdown table row.
    return str(text).replace("|", "\\|").replace("\n", " ")


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _metric(value: Any) -> str:
    number = _float(value)
    return MISSING if number is None else f"{number:.4f}"


def _seconds(value: Any) -> str:
    number = _float(value)
    return MISSING if number is None else f"{number:.1f}"


def _value(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value) or MISSING
    return str(value)
