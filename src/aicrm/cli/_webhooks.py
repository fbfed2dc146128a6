"""``aicrm webhooks …``: subscriptions, replay, the delivery worker and pruning
(docs/events-and-webhooks.md)."""

from __future__ import annotations

import sys
import threading
from typing import Annotated

import typer

from aicrm.cli import _output as output
from aicrm.cli._common import JsonOpt, database, moment
from aicrm.events import retention, subscriptions
from aicrm.events.worker import Settings, Worker

app = typer.Typer(
    help="Webhooks: signed HTTP POSTs of the CRM's events to other systems.",
    no_args_is_help=True,
)


@app.command()
def add(
    url: Annotated[str, typer.Argument(help="The receiver's http(s) URL.")],
    events: Annotated[
        str,
        typer.Option(
            help="Event types, comma-separated: e.g. lead.converted,client.created; lead.* for "
            "every lead event; * for all."
        ),
    ],
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="AICRM_WEBHOOK_SECRET",
            show_envvar=True,
            help="The signing secret to use ('-' reads it from stdin) [default: a new one, "
            "printed once].",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Subscribe a URL to events; a generated secret is printed once, never again."""
    given = secret is not None
    if secret == "-":
        secret = sys.stdin.readline().strip()
    with database() as conn:
        made = subscriptions.add_subscription(conn, url, events, secret)
    sub = made.subscription
    if as_json:
        output.emit_json(sub.to_dict() if given else made.to_dict())
        return
    if not given:
        output.say(made.secret)
    output.stderr.print(
        f"added webhook {sub.id}: {subscriptions.shown_url(sub.url)} for {','.join(sub.events)}"
        + ("" if given else "; store the secret now, it is not shown again"),
        markup=False,
    )


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """List the subscriptions and their deliveries (never the secrets)."""
    with database() as conn:
        found = subscriptions.list_subscriptions(conn)
    if as_json:
        output.emit_json([s.to_dict() for s in found])
        return
    for s in found:
        error = f"  last error: {s.last_error}" if s.last_error else ""
        output.say(
            f"{s.id:>4}  {subscriptions.shown_url(s.url)}  {','.join(s.events)}  "
            f"pending {s.pending:,}  delivered "
            f"{s.delivered:,}  dead {s.dead:,}{error}"
        )


@app.command()
def remove(
    subscription_id: Annotated[int, typer.Argument(help="The subscription's id (see list).")],
) -> None:
    """Remove a subscription and its deliveries (delivered, pending or dead)."""
    with database() as conn:
        subscriptions.remove_subscription(conn, subscription_id)
    output.say(f"removed webhook {subscription_id}")


@app.command()
def replay(
    event: Annotated[str | None, typer.Option(help="One event, by its id (a UUID).")] = None,
    since: Annotated[
        str | None, typer.Option(help="Every event at or after this time (ISO 8601).")
    ] = None,
    subscription: Annotated[
        int | None, typer.Option(help="Only to this subscription [default: all that want it].")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Deliver events again (delivered, dead or never sent), in their order."""
    with database() as conn:
        count = subscriptions.replay(
            conn, event_id=event, since=moment(since, "time"), subscription_id=subscription
        )
    if as_json:
        output.emit_json({"replayed": count})
    else:
        output.say(f"{count:,} deliveries queued again")


@app.command()
def prune(
    older_than: Annotated[
        int,
        typer.Option(
            "--older-than",
            metavar="DAYS",
            help="Remove what is older than this many days (at least 1).",
        ),
    ],
    include_dead: Annotated[
        bool,
        typer.Option(
            "--include-dead", help="Remove dead deliveries too [default: kept, to be looked at]."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be removed.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove delivered deliveries and the events no delivery still needs, older than
    DAYS, in short batches; pending deliveries and their events are always kept."""
    with database() as conn:
        pruned = retention.prune(conn, older_than, include_dead=include_dead, dry_run=dry_run)
    if as_json:
        output.emit_json(pruned.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    output.say(
        f"{verb} {pruned.deliveries:,} deliveries and {pruned.events:,} events from before "
        f"{pruned.horizon.isoformat(timespec='seconds')}"
    )


@app.command()
def run(
    once: Annotated[
        bool, typer.Option("--once", help="Deliver what is due now, then exit.")
    ] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Requests at once.")] = 8,
    batch: Annotated[int, typer.Option(min=1, max=5000, help="Deliveries per transaction.")] = 200,
    max_attempts: Annotated[
        int, typer.Option(min=1, max=100, help="Failures before a delivery is dead.")
    ] = 8,
    backoff: Annotated[
        float, typer.Option(min=0.001, help="Seconds before the first retry (then doubling).")
    ] = 2.0,
    backoff_max: Annotated[
        float, typer.Option(min=0.001, help="Longest wait between tries.")
    ] = 3600.0,
    poll: Annotated[
        float, typer.Option(min=0.01, help="Seconds between looks when no NOTIFY comes.")
    ] = 2.0,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for a receiver.")] = 10.0,
    lanes: Annotated[
        int, typer.Option(min=1, max=16, help="Claim loops at once, a connection each.")
    ] = 2,
) -> None:
    """Run the delivery worker: POST each pending event to its subscriptions."""
    from aicrm.db import target

    settings = Settings(
        batch=batch, concurrency=concurrency, max_attempts=max_attempts, backoff=backoff,
        backoff_max=backoff_max, poll=poll, timeout=timeout, lanes=lanes,
    )  # fmt: skip
    with database():
        pass  # refuses an unreachable or unmigrated database, in one line
    worker = Worker(target(), settings, log=_log)
    if not once:
        output.stderr.print("delivering webhooks (Ctrl-C to stop)", markup=False)
    worker.run(threading.Event(), once=once)
    output.stderr.print(
        f"{worker.delivered:,} delivered, {worker.failed:,} failed attempts", markup=False
    )


def _log(line: str) -> None:
    output.stderr.print(output.printable(line), markup=False)
