"""`strictmx explain`: from a customer's bounce to the cause, the fix and the reproduction.

Input is whatever a support engineer has: a reply line (`550 5.7.1 ...`, with or without
a `smtp;` prefix, one line or several), a DSN e-mail (multipart/report with a
message/delivery-status part, RFC 3464), a Postfix log line (`status=bounced (host X
said: 550 ... (in reply to RCPT TO command))`), an Exim log line (`** addr ... SMTP
error from remote mail server after RCPT TO:<...>: 550 ...`), Sendmail's delivery log lines
(`to=<...>, ..., dsn=5.1.1, stat=...`), Microsoft's logs (Exchange message tracking, the
Microsoft 365 message trace's `{LED=...}`, the SMTP send protocol log) or a raw SMTP
transcript (swaks, `S:`/`C:`, `>>>`/`<<<`). `extract` finds the reply in it, with what the
input says besides: the enhanced status code, the stage it answered, the recipient, the
sender.

Each reply is then weighed on every signal at once. The evidence (`explainer.Evidence`):
how near the reply's text is to each catalogue entry's (`match`: a TF-IDF cosine over word
unigrams and bigrams blended with difflib's sequence ratio, both sides normalised so
addresses, hosts, ids and numbers do not count), the reply code, the enhanced status code
and its meaning in the IANA registry (`signals`, data/enhanced-status-codes.yaml, with
Gmail's reuses), the providers' own codes and links (data/provider-codes.yaml), the stage,
and the reply's own words. A multinomial logistic regression (`model`) turns them into one
calibrated probability per class: a strictmx family, a class strictmx does not emulate
(`classes`: a full mailbox, a rate limit, a greylisting, ...) or `unknown`. Its weights are
fitted, not set: scripts/fit_explain_model.py fits them on the train split of the labelled
corpus (`corpus`: tests/data/explain_corpus/, split by a fixed rule that keeps
near-duplicates on one side), chooses on dev, and `evaluate` reports on the test split.

The catalogue's own reply (similarity `EXACT` or more) names its family first. Otherwise
the most probable class is claimed at `CLAIM` (0.5) or more; below it the answer is "not
recognised", with the nearest classes, never a confident guess. A claimed strictmx family
lists its outcomes whose texts are nearest, with the cause, the fix and the reproduction;
a class strictmx does not emulate is said plainly, with its fix, and no family is claimed.
Each answer names the signals that weighed most for it.

A whole bounce e-mail is read recipient by recipient first (`bounce`: RFC 3464 DSNs, ARF
feedback reports, the plain-text bounces of Exim, Sendmail, qmail, Exchange, Gmail, Yahoo
and Postfix), and so are the Sendmail and Microsoft logs and the transcripts (`bounce.logs`,
`bounce.transcript`): each failed recipient is explained on its own, a delivered or relayed
one and a complaint are reported as what they are, and the returned original message is
context only, never matched.

The package, by job: `bounce` reads bounce e-mails, `extract` finds the reply in the input,
`normalise` turns reply texts into tokens, `signals` reads the status code's and the
providers' facts, `classes` names the classes strictmx does not emulate, `match` scores the
texts against the catalogue, `model` weighs the evidence, `explainer` gathers the evidence
and names the class, `explanation` says it as text and JSON, `corpus` and `evaluate` are
the labelled bounces and the figures measured on them, `cache` keeps the default explainer
between runs (building it imports every policy), `command` is `strictmx explain` on the
command line and `batch` its `--batch` over a folder, an mbox or a Maildir.
"""

from .bounce import Bounce, Recipient
from .bounce import read as read_bounce
from .command import (
    EXIT_BAD_INPUT,
    EXIT_NOT_RECOGNISED,
    add_input_argument,
    add_parser,
    main,
    read_input,
)
from .explainer import MAX_MATCHES, Evidence, Explainer, default_explainer, explain
from .explanation import Explanation, all_recognised, json_all, render_all, reproduce_command
from .extract import (
    MAX_INPUT,
    MAX_REPLY_TEXT,
    ExplainError,
    Extracted,
    decode,
    extract,
    extract_all,
)
from .match import EXACT, NEAR, Match, Matcher
from .model import CLAIM, Model, ModelError
from .normalise import tokens

__all__ = [
    "CLAIM",
    "EXACT",
    "EXIT_BAD_INPUT",
    "EXIT_NOT_RECOGNISED",
    "MAX_INPUT",
    "MAX_MATCHES",
    "MAX_REPLY_TEXT",
    "NEAR",
    "Bounce",
    "Evidence",
    "ExplainError",
    "Explainer",
    "Explanation",
    "Extracted",
    "Match",
    "Matcher",
    "Model",
    "ModelError",
    "Recipient",
    "add_input_argument",
    "add_parser",
    "all_recognised",
    "decode",
    "default_explainer",
    "explain",
    "extract",
    "extract_all",
    "json_all",
    "main",
    "read_bounce",
    "read_input",
    "render_all",
    "reproduce_command",
    "tokens",
]
