"""One-line fixes: what the sending side changes so that an outcome no longer happens.

Kept here as one table rather than on each policy's `Outcome`, so that the advice reads
as one voice and the policies stay about detection. Keys are policy name, then outcome id;
an outcome missing here (a third-party policy's) falls back to its documentation.
"""

from __future__ import annotations

from collections.abc import Mapping

FIXES: Mapping[str, Mapping[str, str]] = {
    "helo_syntax": {
        "HELO_MISSING": "Send your server's host name with HELO/EHLO.",
        "HELO_INVALID": "Greet with a valid host name: letters, digits and hyphens in "
        "dot-separated labels, none starting or ending with a hyphen.",
        "HELO_NOT_FQDN": "Greet with your server's fully-qualified host name "
        "(e.g. mail.example.net), not 'localhost' or a short name.",
        "HELO_BAD_LITERAL": "Write an address literal as [192.0.2.1] or [IPv6:2001:db8::1], "
        "or better, greet with a host name.",
        "HELO_LITERAL_MISMATCH": "Greet with your host name, or with the literal of the address "
        "you really connect from.",
        "HELO_LITERAL_REFUSED": "Greet with a fully-qualified host name: this receiver refuses "
        "every address literal.",
        "HELO_BARE_IP": "Greet with a host name; an address must be bracketed ([192.0.2.1]).",
        "HELO_UTF8_WITHOUT_SMTPUTF8": "Greet with the A-label (xn--...) form of the name, or "
        "ask for SMTPUTF8 in MAIL FROM.",
    },
    "helo_dns": {
        "HELO_IS_ME": "Greet with your own host name, not the receiver's name or address.",
        "HELO_LITERAL_MISMATCH": "Greet with your host name, or with the literal of the address "
        "you really connect from.",
        "HELO_LITERAL_NO_PTR": "Give your address a PTR record whose name has an A/AAAA record "
        "back to it, or greet with that name.",
        "HELO_IS_CNAME": "Greet with a name that has its own A/AAAA record, not a CNAME alias.",
        "HELO_NOT_FOUND": "Greet with a name that exists in public DNS (an A or AAAA record).",
        "HELO_NOT_CONFIRMED": "Publish an A/AAAA record for your HELO name that points to the "
        "address you send from.",
        "HELO_PTR_MISMATCH": "Greet with the name your address's PTR record gives (or one in "
        "the same domain).",
        "HELO_NOT_VERIFIED": "Make the HELO name forward- and reverse-confirm to your sending "
        "address (A/AAAA record and PTR).",
        "HELO_DNS_TEMPFAIL": "Make the DNS servers for your HELO name answer reliably; the "
        "receiver will retry.",
    },
    "reverse_dns": {
        "NO_PTR": "Ask whoever owns your IP address (your provider) for a PTR record naming "
        "your mail server.",
        "FCRDNS_FAILED": "Publish an A/AAAA record for your PTR name that points back to your "
        "sending address.",
        "PTR_TEMPFAIL": "Make the reverse DNS servers for your address answer reliably; the "
        "receiver will retry.",
        "FORWARD_TEMPFAIL": "Make the DNS servers for your PTR name answer reliably; the "
        "receiver will retry.",
    },
    "dynamic_client": {
        "GENERIC_PTR": "Set a PTR name of your own (mail.example.net) instead of the provider's "
        "generic one, or relay through your provider's smarthost.",
        "DYNAMIC_PTR": "Send from a static address with its own PTR name, or relay through "
        "your provider's smarthost.",
        "POLICY_BLOCK_LISTED": "This range is for end users: relay through your provider's "
        "smarthost or an authenticated submission service.",
        "DYNAMIC_HELO": "Greet with your server's own host name, not one derived from the address.",
        "DYNAMIC_UNKNOWN_SENDER_DOMAIN": "Send from a domain with an MX or A record, from a "
        "static address with its own PTR.",
        "DNS_TEMPFAIL": "Make your DNS answer reliably; the receiver will retry.",
    },
    "dnsbl": {
        "DNSBL_LISTED": "Find out why your address is listed (the list's lookup page), fix the "
        "cause, and request delisting.",
        "RHSBL_HELO_LISTED": "Greet with a name in a domain that is not on the list, and get "
        "the domain delisted.",
        "RHSBL_SENDER_LISTED": "Send from a domain that is not listed, and get the domain "
        "delisted.",
        "DNSBL_TEMPFAIL": "Nothing on your side: the block list did not answer; the receiver "
        "will retry.",
    },
    "sender_domain": {
        "SENDER_INVALID": "Use a valid envelope sender: local-part@domain, RFC 5321 syntax.",
        "SENDER_NOT_FQDN": "Use a fully-qualified envelope sender domain (user@example.net, "
        "not user@localhost).",
        "SENDER_DOMAIN_NOT_FOUND": "Send from a domain that exists in public DNS with an MX "
        "(or A/AAAA) record.",
        "SENDER_DOMAIN_NULL_MX": "Send from a domain that receives mail: remove its null MX "
        "('MX 0 .') or use another domain.",
        "SENDER_DOMAIN_TEMPFAIL": "Make the DNS servers for your sender domain answer "
        "reliably; the receiver will retry.",
    },
    "sender_blocklist": {
        "SENDER_BLOCKED": "Send from an address or domain this receiver does not block, or "
        "ask its operator to remove the entry.",
    },
    "sender_verify": {
        "SENDER_UNVERIFIED": "Use an envelope sender that exists: your MX must accept RCPT TO "
        "for it (bounces come back there).",
        "SENDER_UNROUTABLE": "Give your sender domain an MX (or A/AAAA) record for a server "
        "that accepts mail.",
        "SENDER_CALLOUT_REFUSED": "Let your MX accept verification probes, including MAIL "
        "FROM:<> (RFC 5321 requires the null sender to be accepted).",
        "SENDER_VERIFY_TEMPFAIL": "Make your MX reachable on port 25 and answer promptly; the "
        "receiver will retry.",
        "SENDER_ACCEPT_ALL": "Have your MX refuse unknown local parts instead of accepting "
        "every address.",
        "POSTMASTER_MISSING": "Accept mail for postmaster@ your sender domain (RFC 5321 "
        "requires it).",
    },
    "domain_age": {
        "DOMAIN_TOO_NEW": "Send from an established domain, or warm the new one up slowly "
        "before sending in volume.",
        "DOMAIN_AGE_UNKNOWN": "Send from a domain whose registration date the registry "
        "publishes (RDAP).",
        "DOMAIN_AGE_TEMPFAIL": "Nothing on your side: the registry did not answer; the "
        "receiver will retry.",
    },
    "spf": {
        "SPF_FAIL": "Add your sending address to the domain's SPF record (ip4:/ip6:/include:), "
        "or send through a server it lists.",
        "SPF_SOFTFAIL": "List your sending address in the domain's SPF record and end it with "
        "-all once complete.",
        "SPF_NEUTRAL": "List your sending address in the domain's SPF record instead of '?all'.",
        "SPF_NONE": "Publish an SPF record (TXT 'v=spf1 ... -all') for the sender domain.",
        "SPF_TEMPERROR": "Make the DNS servers for your SPF record (and its includes) answer "
        "reliably; the receiver will retry.",
        "SPF_PERMERROR": "Fix the SPF record: one 'v=spf1' record, valid syntax, at most 10 "
        "DNS-querying terms (RFC 7208 §4.6.4).",
    },
    "headers": {
        "BARE_LF": "End every line with CRLF; never send a bare LF (RFC 5321 §2.3.8).",
        "LINE_TOO_LONG": "Fold long header fields onto continuation lines (at most 998 "
        "characters a line, RFC 5322 §2.1.1).",
        "HEADER_8BIT": "Encode non-ASCII header text (RFC 2047 encoded-words), or send with "
        "SMTPUTF8 to a receiver that offers it.",
        "FIELD_REPEATED": "Send each of Date, From, Sender, To, Subject, Message-ID at most "
        "once (RFC 5322 §3.6).",
        "FROM_MISSING": "Add a From header field with the author's address.",
        "FROM_INVALID": "Write From as a valid address: 'Name <user@example.net>' or "
        "'user@example.net'.",
        "FROM_MULTIPLE": "Put one address in From (or add a Sender field naming the one who "
        "sent it).",
        "DATE_MISSING": "Add a Date header field, e.g. Date: Fri, 27 Nov 2026 10:00:00 +0000.",
        "DATE_INVALID": "Write Date in RFC 5322 §3.3 form, e.g. Fri, 27 Nov 2026 10:00:00 +0000.",
        "DATE_TOO_OLD": "Set Date to the time the message is sent; check the sender's clock "
        "and queued-mail age.",
        "DATE_IN_FUTURE": "Set Date to the time the message is sent; check the sender's clock "
        "and time zone.",
        "MESSAGE_ID_MISSING": "Add a Message-ID header field, e.g. <unique-id@example.net>.",
        "MESSAGE_ID_INVALID": "Write Message-ID as <unique-id@domain> (RFC 5322 §3.6.4).",
    },
    "content_filter": {
        "CONTENT_REJECTED": "Remove what the rule matched (see the reason): a phrase, header "
        "or attachment type this receiver refuses.",
        "MESSAGE_TOO_BIG": "Send a smaller message: link to large files instead of attaching them.",
    },
    "session_limits": {
        "TOO_MANY_RSETS": "Send fewer RSETs: one per aborted transaction, not between every "
        "message.",
        "TOO_MANY_BAD_RCPTS": "Clean the recipient list: remove addresses the receiver refuses "
        "as unknown.",
        "HELO_CHANGED": "Greet with the same host name for the whole session.",
        "TOO_MANY_ERRORS": "Fix the commands the receiver refuses (see the transcript) instead "
        "of retrying them in the same session.",
        "TOO_MANY_ERRORS_FROM_IP": "Stop retrying refused commands from this address; fix "
        "their cause first.",
        "TOO_MANY_UNKNOWN_COMMANDS": "Send only commands the receiver advertises in its EHLO "
        "reply.",
    },
}


def fix_for(policy: str, outcome: str, doc: str = "") -> str:
    """The one-line fix for an outcome; its documentation when the table has none."""
    found = FIXES.get(policy, {}).get(outcome)
    if found:
        return found
    return f"See `strictmx policies` ({policy}): {doc}" if doc else "See `strictmx policies`."
