"""`edp run`: the long-running service that turns an SQS queue of S3 events into published batches.

Two threads share one store:

* the **poller** (the calling thread) long-polls the queue, parses each message, stores every good
  message of one receive in one transaction, and only then deletes those messages. A message that is
  not an event we understand is logged and left on the queue, so SQS's redrive policy moves it to
  the dead-letter queue; one bad message never holds back the others.
* the **emitter thread** sleeps until the next batch falls due (a timer on ``store.next_due()``, not
  a fixed tick), closes what is due, and publishes the outbox. The poller wakes it after every
  ingest, so count- and marker-triggered batches go out at once.

A stop request (SIGINT/SIGTERM, or ``max_runtime``) lets the current receive finish, stores what it
got, publishes what is due, and returns. Nothing is lost at any point: unstored messages reappear
after their visibility timeout, and closed batches wait in the store's outbox until published.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from edp.clock import Clock, rfc3339, utc_now
from edp.counters import ACCEPTED, DUPLICATE, STALE, total_dropped
from edp.emitter import Emitter, IngestOutcome
from edp.events import Parsed
from edp.publisher import PublishedBatch, Publisher, PublishReport
from edp.settings import Settings
from edp.store import BatchStore

RECEIVE_MAX_MESSAGES = 10  # ReceiveMessage / DeleteMessageBatch API limit per call
# When a receive comes back full, the queue has more: up to this many receives (no wait) are
# stored in one store transaction, which costs about what one receive's transaction costs, for
# at most COALESCE_SECONDS (so the first message's visibility timeout is never at risk).
COALESCE_RECEIVES = 10
COALESCE_SECONDS = 1.0
RESWEEP_EVERY = 5.0  # seconds: longest sleep of the emitter thread (outbox retries, other writers)
# Seconds to wait when the next due time has already passed: a batch that became due during the
# sweep goes out this late at most, and one that a sweep cannot close (stored under other
# thresholds than today's) does not spin the loop.
OVERDUE_RECHECK = 0.25
PURGE_EVERY = timedelta(hours=1)  # how often expired dedupe identities are forgotten
FIRST_ERROR_BACKOFF = 1.0  # seconds after a failed receive or store; doubles up to the cap
MAX_ERROR_BACKOFF = 30.0
SHORT_POLL_PAUSE = 1.0  # seconds between empty receives with --poll-wait 0, so it does not spin
# How long one sweep may publish before it closes due batches again and lets a stop through; the
# rest of a large outbox stays claimable for the next sweep.
SWEEP_BUDGET = timedelta(seconds=20)
# After a stop, the last sweep publishes for at most this long, one attempt per chunk.
FINAL_SWEEP_BUDGET = timedelta(seconds=5)

logger = logging.getLogger(__name__)


@dataclass
class ServiceStats:
    """What the service did since it started (printed on exit)."""

    received: int = 0  # messages received from the queue
    stored: int = 0  # messages whose events are in the store
    deleted: int = 0  # messages deleted from the queue (always after storing)
    rejected: int = 0  # bad messages, left on the queue for its dead-letter queue
    store_failures: int = 0  # receives whose messages could not be stored (they come back)
    published: int = 0  # batches that reached the bus
    publish_failures: int = 0  # publish attempts that failed (the batch stays in the outbox)
    events: Counter[str] = field(default_factory=Counter)  # accepted, duplicate, dropped:*...

    def summary(self) -> str:
        dropped = total_dropped(self.events)
        return (
            f"{self.received} message(s) received, {self.stored} stored, "
            f"{self.deleted} deleted, {self.rejected} rejected; "
            f"{self.events.get(ACCEPTED, 0)} event(s) accepted, {dropped} dropped, "
            f"{self.events.get(DUPLICATE, 0)} duplicate, {self.events.get(STALE, 0)} stale; "
            f"{self.published} batch(es) published, {self.publish_failures} publish failure(s)"
        )


class Service:
    """The poll loop and the emitter thread, with every outside dependency injected."""

    def __init__(
        self,
        settings: Settings,
        store: BatchStore,
        *,
        queue_url: str,
        sqs_client: Callable[[], Any],
        events_client: Callable[[], Any],
        sns_client: Callable[[], Any] | None = None,
        clock: Clock = utc_now,
        stop: threading.Event | None = None,
        poll_wait: int = 10,
        exclusive_store: bool = False,
        sleep: Callable[[float], Any] | None = None,
        s3_client: Callable[[], Any] | None = None,
    ) -> None:
        """``exclusive_store``: no other process uses the store (SQLite), so claims left by a
        previous run that died while publishing can be taken back at start instead of waiting
        for their lease to expire."""
        self.settings = settings
        self.store = store
        self.emitter = Emitter(settings, store, s3_client=s3_client)
        self.queue_url = queue_url
        self.clock = clock
        self.stop = stop if stop is not None else threading.Event()
        self.poll_wait = poll_wait
        self.exclusive_store = exclusive_store
        self.stats = ServiceStats()
        self.publisher = Publisher(
            events_client,
            settings.event_bus,
            sns_client=sns_client,
            topic_arn=settings.sns_topic_arn,
            # Retry back-offs end at once on a stop request (the default).
            sleep=sleep if sleep is not None else self.stop.wait,
            rule_of=self.emitter.rule_name,
        )
        self._sqs_factory = sqs_client
        self._sqs: Any = None
        self._wake = threading.Event()  # the poller stored something, or it is time to finish
        self._finishing = threading.Event()  # the poller has stopped: one last sweep, then exit
        self._stats_lock = threading.Lock()
        self._last_purge: datetime | None = None
        # When the emitter thread sweeps next (None: it is sweeping, or has not planned yet).
        self._next_sweep_at: datetime | None = None

    # --- the whole service --------------------------------------------------------------
    def run(self) -> ServiceStats:
        """Poll until the stop event is set, then store, publish what is due, and return (once)."""
        if self.exclusive_store:
            self.reclaim_abandoned()
        emitter_thread = threading.Thread(target=self._emit_loop, name="edp-emitter", daemon=True)
        emitter_thread.start()
        backoff = FIRST_ERROR_BACKOFF
        try:
            while not self.stop.is_set():
                try:
                    received = self.poll_once()
                    backoff = FIRST_ERROR_BACKOFF
                    if not received and self.poll_wait == 0:
                        self.stop.wait(SHORT_POLL_PAUSE)
                except Exception as err:
                    # Nothing was deleted, so nothing is lost; wait and try again.
                    logger.error("receive or store failed (retrying in %.0f s): %s", backoff, err)
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_ERROR_BACKOFF)
        finally:
            self._finishing.set()
            self._wake.set()
            emitter_thread.join()
        return self.stats

    # --- the poller ---------------------------------------------------------------------
    def _sqs_client(self) -> Any:
        if self._sqs is None:
            self._sqs = self._sqs_factory()
        return self._sqs

    def poll_once(self, wait: int | None = None) -> int:
        """One receive: parse, store the good messages in one transaction, then delete them.

        Returns how many messages were received. Raises when the receive or the store fails
        (nothing is deleted then: the messages come back after their visibility timeout).
        """
        messages = self._receive_coalesced(self.poll_wait if wait is None else wait)
        if not messages:
            return 0
        by_id = {str(i): m for i, m in enumerate(messages)}
        try:
            accepted = self.emitter.accept(
                ((i, m.get("Body", "")) for i, m in by_id.items()), arrived=self.clock()
            )
        except Exception:
            with self._stats_lock:
                self.stats.received += len(messages)
                self.stats.store_failures += 1
            raise
        for reject in accepted.rejects:
            # Bad, or refused by the store alone: left on the queue for its dead-letter queue.
            logger.warning(
                "%s %s (left on the queue for its dead-letter queue): %s",
                "message" if reject.unstored else "rejected message",
                by_id[reject.key].get("MessageId", "?"),
                reject.reason,
            )
        stored = [by_id[i] for i in accepted.stored]
        outcome = accepted.outcome
        with self._stats_lock:
            self.stats.received += len(messages)
            self.stats.rejected += len(accepted.rejects)
            self.stats.stored += len(stored)
            self.stats.events.update(outcome.counters)
        if not stored:
            return len(messages)
        # Wake the emitter thread only when it has something to do before it would wake anyway:
        # batches closed (count, marker), or a batch now falls due before its planned sweep.
        planned = self._next_sweep_at
        due = outcome.earliest_due
        if outcome.emissions or (due is not None and (planned is None or due < planned)):
            self._wake.set()
        deleted = self._delete(stored)  # only now: the store has committed them
        with self._stats_lock:
            self.stats.deleted += deleted
        self._log_stored(stored, accepted.parsed, outcome)
        return len(messages)

    def _receive_coalesced(self, wait: int) -> list[dict[str, Any]]:
        """One receive; when it comes back full, more are waiting: take them too (without
        waiting), so that one store transaction covers several receives."""
        messages = self._receive(wait)
        if not messages:
            return []
        started, last = time.monotonic(), len(messages)
        receives = 1
        while (
            last == RECEIVE_MAX_MESSAGES
            and receives < COALESCE_RECEIVES
            and time.monotonic() - started < COALESCE_SECONDS
            and not self.stop.is_set()
        ):
            more = self._receive(0)
            receives += 1
            last = len(more)
            if not _gather(messages, more):
                break  # only messages already in hand came back (a short visibility timeout)
        return messages

    def _receive(self, wait: int) -> list[dict[str, Any]]:
        response = self._sqs_client().receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=RECEIVE_MAX_MESSAGES,
            WaitTimeSeconds=wait,
        )
        return list(response.get("Messages", []))

    def _delete(self, messages: list[dict[str, Any]]) -> int:
        """Delete stored messages; a failed delete only means a duplicate delivery later."""
        deleted = 0
        for start in range(0, len(messages), RECEIVE_MAX_MESSAGES):
            chunk = messages[start : start + RECEIVE_MAX_MESSAGES]
            entries = [
                {"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]}
                for index, m in enumerate(chunk)
            ]
            try:
                response = self._sqs_client().delete_message_batch(
                    QueueUrl=self.queue_url, Entries=entries
                )
            except Exception as err:
                logger.warning(
                    "could not delete %d stored message(s) (they will be re-delivered and "
                    "recognised as duplicates): %s",
                    len(chunk),
                    err,
                )
                continue
            failed = response.get("Failed", [])
            for failure in failed:
                logger.warning(
                    "could not delete a stored message (%s: %s); it will be re-delivered",
                    failure.get("Code"),
                    failure.get("Message"),
                )
            deleted += len(response.get("Successful", []))
        return deleted

    # --- the emitter thread -------------------------------------------------------------
    def sweep(self, final: bool = False) -> PublishReport:
        """Close every due batch, publish the outbox, and purge expired dedupe state hourly.

        Publishing lasts at most SWEEP_BUDGET and ends early on a stop request; the ``final``
        sweep after a stop publishes for at most FINAL_SWEEP_BUDGET, one attempt per chunk.
        """
        now = self.clock()
        purge = self._last_purge is None or now - self._last_purge >= PURGE_EVERY
        swept = self.emitter.sweep(
            self.publisher,
            self.clock,
            budget=FINAL_SWEEP_BUDGET if final else SWEEP_BUDGET,
            stop=_never if final else self.stop.is_set,
            max_attempts=1 if final else None,
            purge=purge,
        )
        if purge:
            self._last_purge = now
        for emission in swept.closed:
            logger.debug(
                "closed s3://%s/%s (%s, batch %s)",
                emission.bucket,
                emission.prefix,
                emission.trigger,
                emission.batch_id,
            )
        for batch in swept.publish.batches:
            self._log_published(batch)
        with self._stats_lock:
            self.stats.published += len(swept.publish.batches)
            self.stats.publish_failures += swept.failed + swept.publish.sns_failures
        if swept.purged:
            logger.debug("purged %d expired dedupe entr(ies)", swept.purged)
        return swept.publish

    def seconds_until_next_sweep(self) -> float:
        """Until the next batch falls due, but never longer than RESWEEP_EVERY."""
        due = self.emitter.next_due()
        if due is None:
            return RESWEEP_EVERY
        delay = (due - self.clock()).total_seconds()
        return OVERDUE_RECHECK if delay <= 0 else min(RESWEEP_EVERY, delay)

    def _emit_loop(self) -> None:
        backoff = FIRST_ERROR_BACKOFF
        while True:
            self._wake.clear()
            # While sweeping, any stored due time may be earlier than the next sweep: wake for all.
            self._next_sweep_at = None
            finishing = self._finishing.is_set()
            try:
                report = self.sweep(final=finishing)
                # A sweep that ran out of time leaves work: go again at once.
                wait = 0.0 if report.deferred else self.seconds_until_next_sweep()
                backoff = FIRST_ERROR_BACKOFF
            except Exception as err:
                # A store or network failure: closed batches stay in the outbox; try again later.
                logger.error("emit sweep failed (retrying in %.0f s): %s", backoff, err)
                wait = backoff
                backoff = min(backoff * 2, MAX_ERROR_BACKOFF)
            if finishing:
                return
            self._next_sweep_at = self.clock() + timedelta(seconds=wait)
            self._wake.wait(wait)

    def reclaim_abandoned(self) -> int:
        """Release claims left by a previous run that died mid-publish (see
        :meth:`Emitter.reclaim_abandoned`; exclusive stores only)."""
        reclaimed = self.emitter.reclaim_abandoned(self.clock())
        if reclaimed:
            logger.info(
                "%d batch(es) were closed but not published before; sending them", reclaimed
            )
        return reclaimed

    # --- progress lines -----------------------------------------------------------------
    def _log_stored(
        self, stored: list[dict[str, Any]], parsed: list[Parsed], outcome: IngestOutcome
    ) -> None:
        messages, counters, closed = len(stored), outcome.counters, len(outcome.emissions)
        dropped = total_dropped(counters)
        extra = []
        for name in (DUPLICATE, STALE):
            if counters.get(name):
                extra.append(f"{counters[name]} {name}")
        if dropped:
            extra.append(f"{dropped} dropped")
        if closed:
            extra.append(f"{closed} batch(es) closed by count or marker")
        logger.info(
            "stored %d message(s): %d event(s) accepted%s",
            messages,
            counters.get(ACCEPTED, 0),
            "".join(f", {part}" for part in extra),
        )
        for message, one in zip(stored, parsed, strict=True):
            logger.debug(
                "message %s: %d event(s), ignored %s",
                message.get("MessageId", "?"),
                len(one.events),
                dict(one.ignored) or "none",
            )

    def _log_published(self, batch: PublishedBatch) -> None:
        emission = batch.emission
        late = (batch.at - emission.emitted_at).total_seconds()
        logger.info(
            "published s3://%s/%s: %d file(s), trigger %s, batch %s, due %s, sent %.3f s after",
            emission.bucket,
            emission.prefix,
            emission.count,
            emission.trigger,
            emission.batch_id,
            rfc3339(emission.emitted_at),
            late,
        )


def _never() -> bool:
    return False


def _gather(messages: list[dict[str, Any]], more: list[dict[str, Any]]) -> bool:
    """Add ``more`` to ``messages``; a message received again keeps only its newest receipt
    handle (the one SQS deletes with). False when nothing new came."""
    index = {m.get("MessageId"): i for i, m in enumerate(messages)}
    new = False
    for message in more:
        at = index.get(message.get("MessageId"))
        if at is None:
            index[message.get("MessageId")] = len(messages)
            messages.append(message)
            new = True
        else:
            messages[at] = message
    return new
