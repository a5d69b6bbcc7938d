"""The reference: a private Postfix receiver configured like scenarios/postfix-strict.yaml.

It is tests/e2e/postfix.py's `Postfix` instance with a receiver's main.cf: the persona's
hostname, banner, local domain and recipients, HELO and sender restrictions, bare-LF
handling and error limits. What it leaves out is what it cannot see: strictmx's world is
hermetic (its DNS is the scenario's zone data, its clients are 127.0.0.x mapped to public
addresses), so Postfix's DNS-based restrictions (reject_unknown_helo_hostname,
reject_unknown_sender_domain, reject_unknown_*client_hostname, the RBL and RHSBL checks,
SPF) would judge the real Internet instead. The sessions keep to names and clients that pass
those checks on strictmx's side (client 127.0.0.10 = 203.0.113.10, HELO mail.example.net,
senders @example.net, and the few names suite.EXTRA_RECORDS adds to strictmx's world), so
leaving them out changes no reply.

smtpd_error_sleep_time is 0 here and on strictmx's side (the test overrides the
scenario's session_limits error_sleep_time): the sleep changes when a reply comes, not
what it says, and would make the hard-limit sessions take tens of seconds.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping

from tests.e2e.postfix import _SBIN, Postfix

HOSTNAME = "mx.strictmx.test"
#: The loopback address sessions come from: strictmx's well-configured client.
CLIENT = "127.0.0.10"

SETTINGS: Mapping[str, str] = {
    "myhostname": HOSTNAME,
    "mydomain": "strictmx.test",
    "myorigin": "$myhostname",
    "mydestination": "strictmx.test",
    "local_recipient_maps": (
        "inline:{ {postmaster@strictmx.test=ok}, {abuse@strictmx.test=ok},"
        " {alice@strictmx.test=ok}, {bob@strictmx.test=ok} }"
    ),
    # 127.0.0.10 is not "mynetworks": relaying is refused to it as to any Internet client.
    "mynetworks": "127.0.0.1/32",
    "smtpd_banner": "$myhostname ESMTP Postfix",
    "smtpd_delay_reject": "yes",
    "smtpd_helo_required": "yes",
    "disable_vrfy_command": "yes",
    "smtpd_helo_restrictions": "reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname",
    "smtpd_sender_restrictions": (
        "reject_non_fqdn_sender,"
        " check_sender_access inline:{ {blocked.example=REJECT}, {.blocked.example=REJECT} }"
    ),
    # reject_non_fqdn_recipient first, so that a non-FQDN recipient shows its own refusal
    # rather than the relay refusal its unqualified domain would also earn.
    "smtpd_relay_restrictions": "reject_non_fqdn_recipient, reject_unauth_destination",
    "smtpd_recipient_restrictions": "reject_non_fqdn_recipient",
    "smtpd_forbid_bare_newline": "reject",
    "strict_7bit_headers": "yes",
    "smtpd_soft_error_limit": "10",
    "smtpd_hard_error_limit": "20",
    "smtpd_junk_command_limit": "100",
    "smtpd_error_sleep_time": "0",
    "message_size_limit": "10485760",
    "smtputf8_enable": "yes",
    "smtpd_peername_lookup": "no",
    # Accepted mail goes nowhere: the reference only answers.
    "transport_maps": "inline:{ {strictmx.test = discard:held by the reference instance} }",
}


def start(overrides: Mapping[str, str] | None = None) -> Postfix:
    """A started reference receiver on a free loopback port (`.smtpd_port`), with a
    per-case configuration's `overrides` of SETTINGS; `.stop()` it."""
    # The relay is never used: nothing is forwarded, accepted mail is discarded.
    return Postfix(("127.0.0.1", 9), settings={**SETTINGS, **(overrides or {})}).start()


def version() -> str:
    """The installed Postfix's version, as `postconf -d mail_version` reports it."""
    postconf = shutil.which("postconf", path=_SBIN)
    if postconf is None:
        return "unknown"
    done = subprocess.run(
        [postconf, "-d", "-h", "mail_version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.strip() or "unknown"
