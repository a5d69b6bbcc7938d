"""Sample values for the catalogue's placeholders, shared by the reproduce round trip
(tests/e2e/test_reproduce.py) and the real-MTA bounce generator
(tests/data/explain_corpus/generate_mta.py), so both run the same reproductions."""

from __future__ import annotations

#: What a customer's bounce shows where the catalogue has placeholders.
SAMPLES: dict[str, str] = {
    "ip": "198.51.100.23",
    "mx_ip": "192.0.2.225",
    "helo": "mail.example.net",
    "ptr": "host-23.example.net",
    "zone": "dnsbl.example.org",
    "domain": "example.net",
    "hostname": "mx.example.org",
    "mx": "mx.example.net",
    "spf_domain": "example.net",
    "from_domain": "example.net",
    "sender": "alice@example.net",
    "tag": "k5si1437052qkb.183",
    "count": "11",
    "limit": "10",
    "length": "1204",
    "line": "3",
    "age": "5",
    "verb": "EHLO",
    "previous": "old.example.net",
    "spf_result": "fail",
    "spf_identity": "MAIL FROM",
    "spf_explanation": "domain of example.net does not designate 198.51.100.23 as permitted sender",
    "txt": "https://dnsbl.example.org/lookup?ip=198.51.100.23",
    "txt_suffix": "; https://dnsbl.example.org/lookup?ip=198.51.100.23",
    "why": "host mx.example.net[192.0.2.225] said: 550 5.1.1 User unknown",
    "response": "550 5.1.1 <alice@example.net>: Recipient address rejected: User unknown",
    "sent": "RCPT TO:<alice@example.net>",
    "field": "Subject",
}
