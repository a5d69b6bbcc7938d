"""Write the DKIM-signed message `bench/modern-strict.yaml` is measured with, and its key.

    python bench/signed_message.py    # rewrites bench/signed-message.eml and the key record

smtp-source (`-F`) sends a file's lines with CRLF added, so the message is signed in that
form: a bulk message from bench@example.net as RFC 8058 wants it (List-Unsubscribe with an
https URI, List-Unsubscribe-Post, both signed) with an RSA-2048 key, the commonest kind.
The private key is made here and dropped; only the public record is written, into the
scenario's world (`bench/modern-strict.yaml`, the `sel._domainkey.example.net` line).
"""

from __future__ import annotations

import re
from pathlib import Path

from strictmx.receiver.dkim_signing import rsa_key, sign

HERE = Path(__file__).resolve().parent
HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
)
LINES = [
    "From: Bench <bench@example.net>",
    "To: <alice@example.net>",
    "Subject: the load of the modern-strict benchmark",
    "Date: Fri, 27 Nov 2026 11:59:00 +0000",
    "Message-ID: <bench-modern-strict@example.net>",
    "List-Id: Bench news <news.example.net>",
    "List-Unsubscribe: <https://example.net/unsubscribe?u=alice%40example.net>",
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=us-ascii",
    "",
    *(f"Line {n:04d} of a message about one kilobyte long, as smtp-source's." for n in range(14)),
]


def main() -> None:
    key = rsa_key(2048)
    body = "".join(f"{line}\r\n" for line in LINES).encode()
    signature = sign(body, "sel", "example.net", key, headers=HEADERS)
    # The file as smtp-source reads it: LF line ends (it sends CRLF), folded signature kept.
    text = (signature + body).decode().replace("\r\n", "\n")
    (HERE / "signed-message.eml").write_text(text)
    scenario = HERE / "modern-strict.yaml"
    record = f'sel._domainkey.example.net: {{TXT: "{key.record}"}}'
    updated = re.sub(
        r"sel\._domainkey\.example\.net: \{TXT: \"[^\"]*\"\}", record, scenario.read_text()
    )
    scenario.write_text(updated)
    print(f"wrote {HERE / 'signed-message.eml'} and the key record in {scenario}")


if __name__ == "__main__":
    main()
