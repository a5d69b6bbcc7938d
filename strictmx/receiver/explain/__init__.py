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

Matching is a TF-IDF cosine over word unigrams and bigrams, blended with difflib's
sequence ratio over the same tokens (word order matters in short replies), computed
against every catalogue entry's template. Both sides are normalised first so provider
noise does not count: addresses, IP addresses, host names, URLs, queue and session ids
and numbers become class tokens (`addr`, `ip`, `host`, `url`, `id`, `num`), continuation
codes inside joined lines go, `- gsmtp` style tags go. Words a customer's reply has that
the catalogue never uses still weigh in the cosine, so unknown text scores low instead of
matching on two shared words. The enhanced status code (RFC 3463) and the stage are
signals on top: a detail code that only some families use (X.7.25 reverse DNS, X.7.23
SPF, X.1.8 sender domain, ...) favours them, a code no catalogue entry uses (X.1.1 unknown
user, X.2.2 mailbox full) counts against every match, and a reply given at a stage the
outcome cannot be refused at counts against it.

A match is reported only at `THRESHOLD` or above; below it the answer is "not
recognised", with the nearest families and their scores, never a confident guess.

The strongest signals are facts on top of that (`signals`): the enhanced status code's
meaning in the IANA registry (data/enhanced-status-codes.yaml, with Gmail's reuses) and the
providers' own codes and links (data/provider-codes.yaml), each with its source. Where one
of them names a class unambiguously (X.7.25 reverse DNS, X.2.2 mailbox full, Yahoo's TSS04
rate limit, ...) and the catalogue's best text is neither exact nor of a family that class
or that code allows, the class decides: a strictmx family lists its nearest outcomes; a
class strictmx does not emulate (`classes`: a full mailbox, a rate limit, a greylisting,
...) is said plainly, with its fix, and no family is claimed.

A whole bounce e-mail is read recipient by recipient first (`bounce`: RFC 3464 DSNs, ARF
feedback reports, the plain-text bounces of Exim, Sendmail, qmail, Exchange, Gmail, Yahoo
and Postfix), and so are the Sendmail and Microsoft logs and the transcripts (`bounce.logs`,
`bounce.transcript`): each failed recipient is explained on its own, a delivered or relayed
one and a complaint are reported as what they are, and the returned original message is
context only, never matched.

The package, by job: `bounce` reads bounce e-mails, `extract` finds the reply in the input,
`normalise` turns reply texts into tokens, `signals` reads the status code's and the
providers' facts, `classes` names the classes strictmx does not emulate, `match` scores the
texts against the catalogue and says what it found, `cache` keeps the default explainer
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
