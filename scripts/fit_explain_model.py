#!/usr/bin/env python3
"""Fit `strictmx explain`'s model on the corpus's train split, choose on dev, report on test.

    python3 scripts/fit_explain_model.py            # fit, write the model, print the reports
    python3 scripts/fit_explain_model.py --check    # fit, compare with the shipped model

The corpus is tests/data/explain_corpus/ (explain/corpus.py: its files and the fixed split).
Each item's features are what the explainer gathers at run time (explain/model.py). A
multinomial logistic regression (scikit-learn, L2) is fitted on the train split for each
regularisation strength of a small grid; the one with the lowest log-loss on dev is kept,
then one temperature that calibrates its probabilities is chosen on dev the same way. The
weights go to strictmx/receiver/data/explain-model.json. Only then is the test split scored,
with the whole pipeline (exact catalogue replies first, then the model), and reported.

scikit-learn is a test dependency (pyproject's `test` extra), not a runtime one: at run time
the model is a dot product over the file's numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sklearn  # noqa: E402
from sklearn.feature_extraction import DictVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from strictmx.receiver.explain import corpus, evaluate  # noqa: E402
from strictmx.receiver.explain.classes import family_of  # noqa: E402
from strictmx.receiver.explain.explainer import Explainer  # noqa: E402
from strictmx.receiver.explain.extract import ExplainError, extract_all  # noqa: E402
from strictmx.receiver.explain.model import UNKNOWN, Model  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "explain_corpus"
OUTPUT = ROOT / "strictmx" / "receiver" / "data" / "explain-model.json"
#: Inverse regularisation strengths tried (scikit-learn's C).
GRID = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
TEMPERATURES = tuple(round(0.5 + 0.05 * n, 2) for n in range(51))
#: A word feature is kept when at least this many train items have it: rarer words are
#: noise the regularisation would only half silence, and they make the file big.
MIN_WORD_ITEMS = 2
SEED = 0
#: The nearest-text rule for plug-in families: the precision asked of it, over how many.
TEXT_PRECISION = 0.95
TEXT_SUPPORT = 20
TEXT_STEPS = tuple(round(0.5 + 0.05 * n, 2) for n in range(10))
#: How far the shipped model's top probability may be from a refit's (optimiser noise).
TOLERANCE = 0.02

Example = tuple[dict[str, float], str]


def examples(explainer: Explainer, items: Sequence[corpus.Item]) -> list[Example]:
    """Each item's features (of its first failed recipient) and its label as a class."""
    out = []
    for item in items:
        label = family_of(item.label)
        try:
            found = next(
                (f for f in extract_all(item.input) if f.action in (None, "failed", "delayed")),
                None,
            )
        except ExplainError:
            found = None
        if found is None:
            continue  # no reply to weigh: explain says "not recognised" whatever the model
        out.append((explainer.evidence(found).features, label))
    return out


def vocabulary(train: Sequence[Example]) -> set[str]:
    words = Counter(name for features, _ in train for name in features if name.startswith("w:"))
    return {name for name, n in words.items() if n >= MIN_WORD_ITEMS}


def pruned(data: Sequence[Example], keep: set[str]) -> list[Example]:
    return [
        ({k: v for k, v in f.items() if not k.startswith("w:") or k in keep}, label)
        for f, label in data
    ]


def log_loss(model: Model, data: Sequence[Example]) -> float:
    total = 0.0
    for features, label in data:
        p = dict(model.probabilities(features)).get(label, 0.0)
        total -= math.log(max(p, 1e-12))
    return total / max(1, len(data))


def fit(train: Sequence[Example], c: float) -> Model:
    vectoriser = DictVectorizer()
    x = vectoriser.fit_transform([f for f, _ in train])
    y = [label for _, label in train]
    regression = LogisticRegression(C=c, max_iter=5000, random_state=SEED)
    regression.fit(x, y)
    names = vectoriser.get_feature_names_out()
    classes = tuple(str(c) for c in regression.classes_)
    coef = regression.coef_
    weights = {
        str(name): [float(coef[k, j]) for k in range(len(classes))] for j, name in enumerate(names)
    }
    return Model(classes, weights, [float(v) for v in regression.intercept_])


def choose(train: Sequence[Example], dev: Sequence[Example]) -> tuple[Model, list[str]]:
    log = []
    best: tuple[float, float, Model] | None = None
    for c in GRID:
        model = fit(train, c)
        loss = log_loss(model, dev)
        log.append(f"C={c}: dev log-loss {loss:.4f}")
        if best is None or loss < best[0]:
            best = (loss, c, model)
    assert best is not None
    _, c, model = best
    temperature = min(
        TEMPERATURES,
        key=lambda t: log_loss(Model(model.classes, model.weights, model.intercept, t), dev),
    )
    text_claim, text_precision = text_threshold([*train, *dev])
    log.append(f"chosen C={c}, temperature {temperature}")
    log.append(
        f"nearest text's family claimed (plug-in families) from similarity {text_claim}: "
        f"right {text_precision:.3f} of the time on train and dev"
    )
    about = {
        "fitted_by": "scripts/fit_explain_model.py",
        "scikit_learn": sklearn.__version__,
        "C": c,
        "temperature": temperature,
        "train_items": len(train),
        "dev_items": len(dev),
    }
    fitted = Model(
        model.classes,
        model.weights,
        model.intercept,
        temperature,
        about,
        text_claim,
        text_precision,
    )
    return fitted, log


def text_threshold(data: Sequence[Example]) -> tuple[float, float]:
    """The lowest similarity step from which the nearest catalogue text's family is the
    label at least TEXT_PRECISION of the time (over at least TEXT_SUPPORT items), and that
    precision: how far a text alone can be trusted, for families the model does not know."""
    tops = []
    for features, label in data:
        texts = {k[5:]: v for k, v in features.items() if k.startswith("text:")}
        if texts:
            family, score = max(texts.items(), key=lambda item: item[1])
            tops.append((score, family == label))
    for step in TEXT_STEPS:
        above = [right for score, right in tops if score >= step]
        if len(above) >= TEXT_SUPPORT and sum(above) / len(above) >= TEXT_PRECISION:
            return step, sum(above) / len(above)
    return 1.0, 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped model")
    args = parser.parse_args()
    items = corpus.load(CORPUS)
    sides = {side: [i for i in items if i.split == side] for side in corpus.SPLITS}
    print("corpus:", ", ".join(f"{side} {len(sides[side])}" for side in corpus.SPLITS))
    gatherer = Explainer(model=None)
    train = examples(gatherer, sides["train"])
    keep = vocabulary(train)
    train = pruned(train, keep)
    dev = pruned(examples(gatherer, sides["dev"]), keep)
    model, log = choose(train, dev)
    print("\n".join(log))
    if args.check:
        return check(model, gatherer, items)
    OUTPUT.write_text(json.dumps(model.to_json(), indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({OUTPUT.stat().st_size} bytes)")
    fitted = Explainer(gatherer.catalogue, model)
    families = frozenset(fitted.catalogue.families)
    for side in ("dev", "test"):
        report = evaluate.Report(evaluate.score(fitted, sides[side]), families)
        print()
        print(report.render(f"{side} split"))
    print()
    print(f"classes: {', '.join(c for c in model.classes if c != UNKNOWN)}, {UNKNOWN}")
    return 0


def check(model: Model, gatherer: Explainer, items: Sequence[corpus.Item]) -> int:
    """Does the shipped model name the same class with the same probability (within the
    optimiser's run-to-run noise) as this fit, for every item of the corpus?"""
    shipped = Model.from_json(json.loads(OUTPUT.read_text()))
    if shipped.classes != model.classes or shipped.weights.keys() != model.weights.keys():
        print("shipped model DIFFERS from the fit: other classes or features")
        return 1
    differ = 0
    for features, _ in examples(gatherer, items):
        a, b = shipped.probabilities(features), model.probabilities(features)
        if a[0][0] != b[0][0] or abs(a[0][1] - b[0][1]) > TOLERANCE:
            differ += 1
    print(f"shipped model vs. this fit: {differ} of {len(items)} items differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
