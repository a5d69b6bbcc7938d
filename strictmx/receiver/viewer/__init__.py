"""The session viewer: the journal and the running scenario in a browser, served by the
API's listener at `/` (`strictmx serve --api-listen`), with the API's token.

Server-rendered pages (Jinja2, autoescaped: HELO names, addresses, headers and bodies are
the client's), one small script for what needs one (live rows by server-sent events, the
copy buttons), one style sheet; nothing is built or downloaded. Every page but the live
updates works without JavaScript.

- `/` the sessions, newest first, with filters, a text search and keyset paging;
- `/sessions/{id}` the transcript, each verdict beside the reply that carried it with
  its reason, what RFC 5321 says and the fix; the stored messages, never rendered live;
- `/scenario` the running scenario; switch to a bundled one or edit it as YAML;
- `/dashboard` sessions by outcome and refusals by policy over time, drawn as SVG.

See docs/viewer.md.
"""

from .routes import setup

__all__ = ["setup"]
