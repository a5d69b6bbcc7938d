"""`strictmx serve` and `strictmx policies`: the commands that need the server and the
registry (strictmx/receiver/cli.py imports this module only when one of them is chosen)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import io
import ipaddress
import os
import signal
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from . import registry, session_log
from . import scenario as scenarios
from .api import Api
from .api_contract import BODY_DEADLINE, MAX_BODY, MAX_BUFFERED, MAX_CONNECTIONS
from .api_listener import exposed
from .policy import PolicyClass
from .registry import load_registry
from .scenario import ScenarioError
from .server import LOOPBACK, Receiver, ServerOptions, parse_networks
from .tls import TLSError, self_signed_context, server_context
from .trust import UnreadableFile, read_text_file
from .verdict import Stage
from .world.endpoints import EndpointError, split_host_port

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input from the command line: one line on stderr, exit 2."""


def _listen(value: str) -> tuple[str, int]:
    try:
        return split_host_port(value, default_host="127.0.0.1", names=True, port_zero=True)
    except EndpointError as exc:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r} ({exc})") from None


def add_parser(sub: Any) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve a scenario over SMTP",
        description="Serve a scenario over SMTP, and optionally its DNS and the HTTP API.",
        epilog=f"The API holds at most {MAX_CONNECTIONS} connections, bodies of"
        f" {MAX_BODY // 2**20} MiB that arrive within {BODY_DEADLINE:g}s, and"
        f" {MAX_BUFFERED // 2**20} MiB of bodies at once. A scenario uploaded through it"
        " may not name files, modules, URLs, listen addresses or real DNS unless"
        " --api-allow-host-access is given.",
    )
    serve.add_argument(
        "--scenario",
        default="default",
        help="a bundled scenario's name (`strictmx scenarios`) or a YAML path (default: default)",
    )
    serve.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", 2525),
        metavar="HOST:PORT",
        help="where SMTP listens; port 0 picks a free one (default: 127.0.0.1:2525)",
    )
    serve.add_argument(
        "--db",
        default="strictmx.db",
        help="the SQLite journal; ':memory:' keeps it in memory (default: strictmx.db)",
    )
    serve.add_argument(
        "--trusted",
        action="append",
        metavar="CIDR",
        help="networks allowed to send XCLIENT/PROXY; repeatable (default: loopback,"
        " 127.0.0.0/8 and ::1)",
    )
    serve.add_argument(
        "--proxy-protocol",
        action="store_true",
        help="expect a PROXY v1/v2 header from trusted peers (default: off)",
    )
    serve.add_argument(
        "--tls",
        metavar="self-signed|CERT,KEY",
        help="offer STARTTLS with a generated certificate or CERT,KEY files (default: no TLS)",
    )
    serve.add_argument(
        "--smtps-listen",
        type=_listen,
        metavar="HOST:PORT",
        help="also serve SMTP with implicit TLS (SMTPS, RFC 8314; port 465 style) here: the"
        " same scenario and journal, --tls's certificate, which it needs (default: no SMTPS)",
    )
    serve.add_argument(
        "--grace",
        type=float,
        default=5.0,
        help="seconds open sessions may go on after SIGTERM/SIGINT; then they get"
        " '421 4.3.2 Service shutting down' and are closed (default: 5)",
    )
    serve.add_argument(
        "--dns-listen",
        type=_listen,
        metavar="HOST:PORT",
        help="also serve the scenario's DNS over UDP and TCP here (overrides world.dns.serve;"
        " default: the scenario's world.dns.serve, else none)",
    )
    serve.add_argument(
        "--api-listen",
        type=_listen,
        metavar="HOST:PORT",
        help="serve the HTTP JSON API here (/api/v1; keep it on loopback or set a token)"
        " (default: no API)",
    )
    serve.add_argument(
        "--api-token-file",
        metavar="PATH",
        help="require 'Authorization: Bearer TOKEN' on API requests but health, TOKEN being"
        " this file's first line; or set $STRICTMX_API_TOKEN (never on the command line,"
        " where `ps` shows it to every user) (default: no token)",
    )
    # Kept only to say why it is gone: a token in argv is readable by every local user.
    serve.add_argument("--api-token", dest="api_token_argv", help=argparse.SUPPRESS)
    serve.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print no line per session (default: one line on stdout as each session ends)",
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="the line per session: text for people, or one JSON object per line with the"
        f" keys {', '.join(session_log.JSON_KEYS)}: {session_log.JSON_DOC} (default: text)",
    )
    serve.add_argument(
        "--api-allow-host-access",
        action="store_true",
        help="let scenarios uploaded through the API name files, Python modules, URLs,"
        " listen addresses and real DNS on this host (off: refused with 422); only for an"
        " API that nobody untrusted reaches (default: off)",
    )


def add_policies_parser(sub: Any) -> None:
    sub.add_parser("policies", help="list policies, their outcomes, replies and options")


def main(args: argparse.Namespace) -> int:
    """`serve` or `policies`, as args.command says."""
    try:
        if args.command == "policies":
            return cmd_policies()
        return cmd_serve(args)
    except (UsageError, ScenarioError, TLSError) as exc:
        print(f"strictmx: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def cmd_policies() -> int:
    for name, cls in sorted(load_registry().items()):
        _describe_policy(name, cls)
    return 0


def _describe_policy(name: str, cls: PolicyClass) -> None:
    print(f"{name} — {cls.summary}")
    print("  stages: " + ", ".join(s.value for s in sorted(cls.stages, key=_stage_order)))
    print("  outcomes:")
    for outcome in cls.outcomes:
        lines = outcome.default_reply().wire_lines()
        rfc = "" if outcome.rfc_allows else "  [RFC 5321 does not allow this refusal]"
        print(f"    {outcome.id}: {lines[0]}{rfc}")
        for more in lines[1:]:
            print(f"    {' ' * len(outcome.id)}  {more}")
        # What a scenario may name instead (`replies: {OUTCOME: {entry: ID}}`).
        entries = [e.id for e in registry.bundled().for_outcome(name, outcome.id)]
        if entries:
            indent = " " * (len(outcome.id) + 6)
            print(
                textwrap.fill(
                    "entries: " + ", ".join(entries),
                    96,
                    initial_indent=indent,
                    subsequent_indent=indent + "  ",
                    break_on_hyphens=False,
                )
            )
    fields: dict[str, FieldInfo] = cls.Options.model_fields
    if fields:
        print("  options:")
        for key, info in fields.items():
            default = info.get_default(call_default_factory=True)
            print(f"    {key} = {default!r}: {info.description or ''}")
    print()


def _stage_order(stage: Any) -> int:
    return list(Stage).index(stage)


def cmd_serve(args: argparse.Namespace) -> int:
    scenario = scenarios.load(args.scenario)
    if args.smtps_listen is not None and args.tls is None:
        raise UsageError(
            "--smtps-listen needs --tls (self-signed or CERT,KEY): SMTPS serves the"
            " certificate STARTTLS uses"
        )
    options = ServerOptions(
        host=args.listen[0],
        port=args.listen[1],
        db=args.db,
        proxy_protocol=args.proxy_protocol,
        grace=args.grace,
        trusted=_trusted(args.trusted),
        tls_context=_tls(args.tls, scenario.receiver.hostname),
        dns_listen=args.dns_listen,
        smtps_listen=args.smtps_listen,
        freeze_gc=True,  # this process is the receiver
    )
    token = _api_token(args)
    receiver = Receiver(scenario, options)
    if not args.quiet:
        receiver.session_log = _printer(args.log_format)
    try:
        return asyncio.run(_serve(receiver, args.api_listen, token, args.api_allow_host_access))
    except KeyboardInterrupt:
        return 0


def _printer(log_format: str) -> Callable[[session_log.SessionEnd], None]:
    """Print each ended session's line on stdout (start-up lines go there too)."""
    render = session_log.as_json if log_format == "json" else session_log.as_text
    if isinstance(sys.stdout, io.TextIOWrapper):
        # The text is escaped to printable characters already; a terminal whose encoding
        # cannot show one of them gets its escape rather than an error.
        sys.stdout.reconfigure(errors="backslashreplace")

    def emit(end: session_log.SessionEnd) -> None:
        sys.stdout.write(render(end) + "\n")
        sys.stdout.flush()

    return emit


#: The largest token file read: a token is a line, not a document.
MAX_TOKEN_FILE = 4096


def _api_token(args: argparse.Namespace) -> str | None:
    """The API token from --api-token-file or $STRICTMX_API_TOKEN, never from argv."""
    if args.api_token_argv is not None:
        raise UsageError(
            "--api-token is not taken: a token on the command line is shown by `ps` to every"
            " user of this host; put it in a file (--api-token-file PATH) or in"
            " $STRICTMX_API_TOKEN"
        )
    from_env = os.environ.get("STRICTMX_API_TOKEN") or None
    if args.api_token_file is None:
        return from_env
    if from_env is not None:
        raise UsageError("give the API token once: --api-token-file or $STRICTMX_API_TOKEN")
    try:
        text = read_text_file(Path(args.api_token_file), MAX_TOKEN_FILE, "token file")
    except UnreadableFile as exc:
        raise UsageError(f"--api-token-file: {exc}") from None
    lines = text.splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise UsageError(f"--api-token-file: {args.api_token_file!r} holds no token")
    return token


def _trusted(items: list[str] | None) -> Any:
    if not items:
        return LOOPBACK
    try:
        return parse_networks(items)
    except ValueError as exc:
        raise UsageError(f"--trusted: {exc}") from None


def _tls(spec: str | None, hostname: str) -> Any:
    if spec is None:
        return None
    if spec == "self-signed":
        return self_signed_context(hostname)
    cert, sep, key = spec.partition(",")
    if not sep:
        raise UsageError("--tls takes 'self-signed' or CERT,KEY")
    return server_context(cert, key)


async def _serve(
    receiver: Receiver, api_listen: tuple[str, int] | None, token: str | None, host_access: bool
) -> int:
    api = None
    if api_listen is not None:
        api = Api(receiver, *api_listen, token=token, host_access=host_access)
        receiver.attach(api)
    try:
        await receiver.start()
    except OSError as exc:
        # The DNS server names its own address in the error.
        where = exc.filename or f"{receiver.options.host}:{receiver.options.port}"
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"cannot listen on {where}: address already in use") from None
        raise UsageError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    except Exception as exc:  # the journal could not be opened, for one
        raise UsageError(str(exc)) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _announce(receiver, api)  # only once a stop signal is handled: supervisors act on these lines
    await stop.wait()
    print("strictmx: stopping; letting sessions finish", file=sys.stderr, flush=True)
    await receiver.stop()
    return 0


def _announce(receiver: Receiver, api: Api | None) -> None:
    scenario = receiver.scenario
    for host, port in receiver.addresses:
        shown = f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
        print(f"strictmx: listening on {shown}:{port}")
    for host, port in receiver.smtps_addresses:
        shown = f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
        print(f"strictmx: SMTPS (implicit TLS) on {shown}:{port}")
    if receiver.dns_server is not None:
        host, port = receiver.dns_server.address
        shown = f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
        print(f"strictmx: DNS on {shown}:{port}")
    if api is not None:
        print(f"strictmx: API on {api.url}")
        if not api.token_required and exposed(api.host):
            print(
                f"strictmx: warning: the API on {api.url} has no token"
                " (--api-token-file or $STRICTMX_API_TOKEN): anyone who reaches it can read"
                " the journal and swap the scenario",
                file=sys.stderr,
            )
        if api.host_access and not api.token_required:
            print(
                "strictmx: warning: --api-allow-host-access without a token: any local user"
                " who reaches the API can make this process read files, import modules and"
                " contact hosts through an uploaded scenario",
                file=sys.stderr,
            )
    print(f"strictmx: scenario {scenario.name} ({scenario.source})")
    print(f"strictmx: journal {receiver.options.db}")
    extras = []
    if receiver.tls_context is not None:
        extras.append("STARTTLS")
    if receiver.options.proxy_protocol:
        extras.append("PROXY protocol")
    if extras:
        print("strictmx: " + ", ".join(extras))
    for stage, names in scenario.describe_chains():
        print(f"  {stage:8} {', '.join(names)}")
    sys.stdout.flush()
