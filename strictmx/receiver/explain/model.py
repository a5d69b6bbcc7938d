"""The fitted model that names a bounce's class from every signal at once.

Each signal becomes a feature: the reply code and its class, the enhanced status code's
subject and detail, the class the registry or a provider's code names (signals.py), where
the input says the reply was given, how well the best catalogue text of each family matches
(match.py's text score) and whether it matches exactly, and the reply's own normalised words
and word pairs. A multinomial logistic regression turns them into one probability per class:
a strictmx family, a class strictmx does not emulate, or `unknown`.

The weights are not set by hand. `scripts/fit-explain-model` fits them with scikit-learn on
the train split of the labelled corpus (corpus.py), chooses the regularisation and the
temperature that calibrates the probabilities on the dev split, and writes them to
data/explain-model.json; the test split is only ever reported on. At run time the model is
a dot product and a softmax over that file's numbers: no numerical library is imported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from .extract import Extracted
from .normalise import features as word_features
from .signals import Fact, Signals

#: The label of a bounce that says nothing specific (no class).
UNKNOWN = "unknown"
#: A class is claimed at this probability or more (issue #15: a claim is a family at
#: confidence >= 0.5); below it the answer is "not recognised".
CLAIM = 0.5

#: A catalogue text scoring this much is the catalogue's own reply (match.EXACT).
_EXACT = 0.9

#: Similarity steps that become features of their own (see `features`).
_STEPS = (0.3, 0.45, 0.6, 0.75)

_FILE = "explain-model.json"
FORMAT = 1


class ModelError(ValueError):
    """The model file is missing or malformed."""


def features(
    found: Extracted,
    signals: Signals,
    fact: Fact | None,
    family_scores: Mapping[str, float],
    words: Sequence[str],
) -> dict[str, float]:
    """The features of one reply, by name (absent features are 0)."""
    out: dict[str, float] = {"bias:": 1.0}
    if found.code is not None:
        out[f"code:{found.code}"] = 1.0
        out[f"code_class:{str(found.code)[0]}"] = 1.0
    else:
        out["code:none"] = 1.0
    if found.dsn:
        klass, _, rest = found.dsn.partition(".")
        subject = rest.split(".", 1)[0]
        out[f"status:{rest}"] = 1.0
        out[f"status_subject:{subject}"] = 1.0
        out[f"status_class:{klass}"] = 1.0
    else:
        out["status:none"] = 1.0
    if found.stage is not None:
        out[f"stage:{found.stage.value}"] = 1.0
    if fact is not None:
        out[f"fact:{fact.family}"] = 1.0
    for hit in signals.providers:
        if hit.row.cls:
            out[f"provider:{hit.row.cls}"] = 1.0
    if signals.gmail:
        out["gmail"] = 1.0
    best = max(family_scores.values(), default=0.0)
    for family, score in family_scores.items():
        out[f"text:{family}"] = score
        # Graded steps as well as the score: how much a near text means is not linear (a
        # paraphrase scores 0.5, a stranger sharing two words 0.3), and the fit says how much.
        for step in _STEPS:
            if score >= step:
                out[f"text>={step}:{family}"] = 1.0
        if score == best and score >= _STEPS[0]:
            out[f"top:{family}"] = 1.0
        if score >= _EXACT:
            out[f"exact:{family}"] = 1.0
    if best < _STEPS[0]:
        out["no_near_text"] = 1.0
    for gram in word_features(words):
        out[f"w:{gram}"] = 1.0
    return out


@dataclass(frozen=True)
class Model:
    """A multinomial logistic regression: one weight per (feature, class), and a bias."""

    classes: tuple[str, ...]
    weights: Mapping[str, Sequence[float]]
    intercept: Sequence[float]
    #: Divides the logits before the softmax; chosen on the dev split to calibrate.
    temperature: float = 1.0
    #: What the fit was and what it measured (shown by `scripts/fit_explain_model.py`).
    about: Mapping[str, Any] | None = None
    #: For a family the model was not fitted on (a plug-in's): the text similarity from
    #: which the nearest catalogue text's family is claimed, and how often that was right on
    #: the fitting data (the claim's confidence). Both measured by the fit, not chosen.
    text_claim: float = 1.0
    text_claim_precision: float = 0.0
    #: Where no class reaches the claim threshold, the class the signals name by themselves
    #: (signals.decide) is claimed if their naming it was right this often on the fitting
    #: data (kept only where that reached the claim precision the fit asks for).
    fact_claims: Mapping[str, float] = field(default_factory=dict)

    def probabilities(self, given: Mapping[str, float]) -> list[tuple[str, float]]:
        """Every class with its probability, most probable first."""
        logits = list(self.intercept)
        for name, value in given.items():
            row = self.weights.get(name)
            if row is None:
                continue  # a feature the fit never saw says nothing
            for n, weight in enumerate(row):
                logits[n] += weight * value
        top = max(logits)
        exps = [math.exp((z - top) / self.temperature) for z in logits]
        total = sum(exps)
        ranked = [(cls, e / total) for cls, e in zip(self.classes, exps, strict=True)]
        return sorted(ranked, key=lambda item: item[1], reverse=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "classes": list(self.classes),
            "intercept": [round(v, 5) for v in self.intercept],
            "temperature": round(self.temperature, 5),
            "about": dict(self.about or {}),
            "text_claim": round(self.text_claim, 5),
            "text_claim_precision": round(self.text_claim_precision, 5),
            "fact_claims": {k: round(v, 5) for k, v in sorted(self.fact_claims.items())},
            "weights": {
                name: [round(v, 5) for v in row] for name, row in sorted(self.weights.items())
            },
        }

    @classmethod
    def from_json(cls, data: Any, where: str = _FILE) -> Model:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelError(f"{where}: not a format-{FORMAT} explain model")
        try:
            classes = tuple(str(c) for c in data["classes"])
            intercept = [float(v) for v in data["intercept"]]
            weights = {str(k): [float(v) for v in row] for k, row in data["weights"].items()}
            temperature = float(data.get("temperature", 1.0))
            text_claim = float(data.get("text_claim", 1.0))
            text_precision = float(data.get("text_claim_precision", 0.0))
            facts = {str(k): float(v) for k, v in data.get("fact_claims", {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"{where}: malformed: {exc}") from None
        width = len(classes)
        if len(intercept) != width or any(len(row) != width for row in weights.values()):
            raise ModelError(f"{where}: every row needs one weight per class ({width})")
        if not temperature > 0:
            raise ModelError(f"{where}: temperature must be positive")
        about = data.get("about")
        about = about if isinstance(about, dict) else None
        return cls(
            classes, weights, intercept, temperature, about, text_claim, text_precision, facts
        )


def bundled() -> Model:
    """The model fitted on the bundled corpus and shipped in the package."""
    path = resources.files("strictmx.receiver") / "data" / _FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{_FILE}: {exc}") from None
    return Model.from_json(data)


def reasons(
    model: Model, given: Mapping[str, float], cls: str, limit: int
) -> list[tuple[str, float]]:
    """The signals that pushed `cls` up most (weight times value), strongest first. The
    several features of one family's catalogue similarity count as one reason."""
    if cls not in model.classes:
        return []
    at = model.classes.index(cls)
    pushed: dict[str, float] = {}
    for name, value in given.items():
        row = model.weights.get(name)
        if row is None or name == "bias:":
            continue
        kind, _, subject = name.partition(":")
        if kind in ("top", "exact") or kind.startswith("text"):
            name = f"text:{subject}"
        pushed[name] = pushed.get(name, 0.0) + row[at] * value
    ranked = sorted(
        ((n, w) for n, w in pushed.items() if w > 0), key=lambda item: item[1], reverse=True
    )
    return ranked[:limit]
