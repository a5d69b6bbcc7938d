"""explain's fitted model: fitted on train, reported on a test split it never saw.

The figures issue #15 asks for are measured here on the corpus's test split only
(tests/data/explain_corpus/, split by explain/corpus.py's fixed rule), with the shipped model
(strictmx/receiver/data/explain-model.json), which must be what scripts/fit_explain_model.py
fits on the train split: a model edited by hand or fitted on other data fails
`test_the_shipped_model_is_the_fit_of_the_train_split`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from strictmx.receiver.explain import CLAIM, Explainer, Model, ModelError, evaluate
from strictmx.receiver.explain import corpus as corpora

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "explain_corpus"
FIT = ROOT / "scripts" / "fit_explain_model.py"

#: Issue #15's targets on the test split.
MIN_ACCURACY = 0.90
MIN_PRECISION = 0.95
MIN_RECALL = 0.85

EXPLAINER = Explainer()


@pytest.fixture(scope="module")
def items() -> list[corpora.Item]:
    return corpora.load(CORPUS)


@pytest.fixture(scope="module")
def test_report(items: list[corpora.Item]) -> evaluate.Report:
    test = [i for i in items if i.split == "test"]
    return evaluate.Report(evaluate.score(EXPLAINER, test), frozenset(EXPLAINER.catalogue.families))


def test_the_test_split_meets_the_targets(test_report: evaluate.Report) -> None:
    print("\n" + test_report.render("test split") + "\n\n" + test_report.matrix())
    assert test_report.accuracy >= MIN_ACCURACY
    assert test_report.precision >= MIN_PRECISION
    assert test_report.recall >= MIN_RECALL


def test_the_confidences_are_calibrated(test_report: evaluate.Report) -> None:
    # Expected calibration error: a claim at confidence 0.8 is right about 80% of the time.
    assert test_report.calibration_error <= 0.1


def test_the_shipped_model_is_the_fit_of_the_train_split() -> None:
    done = subprocess.run(
        [sys.executable, str(FIT), "--check"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 of" in done.stdout


def test_the_model_knows_every_class_the_corpus_names(items: list[corpora.Item]) -> None:
    model = EXPLAINER.model
    assert model is not None
    train = Counter(evaluate.family_of(i.label) for i in items if i.split == "train")
    assert set(model.classes) == set(train)
    assert model.about is not None and model.about["train_items"] <= len(items)


# -- the split ----------------------------------------------------------------------------


def test_every_group_and_every_skeleton_is_on_one_side(items: list[corpora.Item]) -> None:
    sides: dict[str, set[str]] = {}
    for item in items:
        for key in item.keys:
            sides.setdefault(key, set()).add(item.split)
    assert [k for k, s in sides.items() if len(s) > 1] == []


def test_near_duplicates_share_a_side() -> None:
    # One reply with other addresses, ids and framing: one skeleton, so one side.
    a = "550 5.7.1 <bob@example.org>: Recipient address rejected: Access denied [AB12CD34]"
    b = (
        "Jun 14 10:22:31 relay postfix/smtp[2211]: 4W0Q7x1XYZz9sT: to=<jane@example.net>, "
        "status=bounced (host mx.example.net[198.51.100.4] said: 550 5.7.1 <jane@example.net>:"
        " Recipient address rejected: Access denied [ZZ99YY88] (in reply to RCPT TO command))"
    )
    assert corpora.skeleton(a) == corpora.skeleton(b)
    other = "550 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org"
    assert corpora.skeleton(other) != corpora.skeleton(a)


def test_the_split_is_about_sixty_twenty_twenty(items: list[corpora.Item]) -> None:
    sizes = Counter(i.split for i in items)
    assert 0.5 <= sizes["train"] / len(items) <= 0.7
    assert 0.1 <= sizes["test"] / len(items) <= 0.3


def test_a_bad_corpus_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("items:\n  - family: dnsbl\n")
    with pytest.raises(corpora.CorpusError, match=r"a.yaml: items\[0\].input"):
        corpora.load(tmp_path)
    (tmp_path / "a.yaml").write_text("items:\n  - family: dnsbl\n    input: '550 x'\n")
    assert corpora.load(tmp_path)[0].label == "dnsbl"


# -- the model file -----------------------------------------------------------------------


def test_a_malformed_model_is_refused_with_its_reason() -> None:
    good = {"format": 1, "classes": ["a", "b"], "intercept": [0, 0], "weights": {"x": [1, -1]}}
    assert Model.from_json(good).probabilities({"x": 1.0})[0][0] == "a"
    with pytest.raises(ModelError, match="one weight per class"):
        Model.from_json({**good, "weights": {"x": [1]}})
    with pytest.raises(ModelError, match="not a format-1"):
        Model.from_json({**good, "format": 2})
    with pytest.raises(ModelError, match="temperature"):
        Model.from_json({**good, "temperature": 0})


def test_probabilities_sum_to_one_and_unknown_features_say_nothing() -> None:
    model = EXPLAINER.model
    assert model is not None
    ranked = model.probabilities({"no such feature": 1.0})
    assert abs(sum(p for _, p in ranked) - 1.0) < 1e-9
    assert ranked == model.probabilities({})


def test_a_claim_names_its_confidence_and_reasons() -> None:
    found = EXPLAINER.explain("550 5.7.25 Reverse DNS validation failed for [203.0.113.9]")
    assert found.class_name == "reverse_dns"
    assert found.confidence is not None and found.confidence >= CLAIM
    assert any(name == "status:7.25" for name, _ in found.reasons)
    data = found.to_json()
    assert data["confidence"] == round(found.confidence, 3)
    assert json.dumps(data)  # serialisable
