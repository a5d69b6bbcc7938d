"""The differential suite: strictmx's postfix-strict against a live reference Postfix.

sessions.yaml holds the sessions, player.py plays one over a raw socket, reference.py
starts the reference Postfix, suite.py compares, test_postfix_dialect.py is the pytest
form and `python -m tests.differential` prints the agreement table (docs/dialects.md).
"""
