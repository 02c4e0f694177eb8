"""The broker as a trust boundary: hosts write only to the inbox, and the inbox runs one task.

Hosts run strangers' code (ARCHITECTURE decision 9), so what a host puts on the broker is
untrusted. Its Redis user may push to one queue only, ``inbox`` (apps.machines.broker), and
the control worker consumes that queue beside ``control``. Two things keep a message a host
wrote there from running anything but the inbox's own task:

- **Transport**: kombu's Redis transport takes a message's ``delivery_info`` (which queue it
  was sent to) from the message body, which its sender wrote. A host could claim its message
  went to ``control``: the task guard below would believe it, and a worker that restores the
  message (a restart with it unacknowledged) would push it onto ``control`` itself. This
  transport overwrites ``delivery_info`` and the delivery tag with what the consumer knows:
  the queue it really read the message from. And a message read from the inbox is written
  anew before Celery sees it (``inbox_message``): the inbox task with the one argument it
  was sent, and nothing else of what the host wrote. Celery believes much of a message:
  its body's third part is laid over the task's request (``delivery_info`` included, so a
  body could say it came from ``control``), and its headers set time limits, an ETA, an id;
  errbacks in it would be sent on by the worker's main process when a time limit ends the
  task, before any task code runs.
- **GuardedTask**, every task's base class (config/celery.py): a task delivered from the
  inbox other than INBOX_TASK is refused, and whatever comes from the inbox has its
  callbacks, errbacks, chain and chord dropped (they would otherwise be sent on by the
  control worker, with its credentials, once the task returned).

Celery accepts JSON only (CELERY_ACCEPT_CONTENT), so no pickled message is ever loaded.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from typing import Any

from celery import Task
from celery.exceptions import Ignore
from django.conf import settings
from kombu.transport import redis as kombu_redis

logger = logging.getLogger(__name__)

# The one queue hosts may write to, and the one task it runs.
INBOX_QUEUE = "inbox"
INBOX_TASK = "control.inbox"


class Channel(kombu_redis.Channel):
    def basic_consume(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        tag = super().basic_consume(queue, *args, **kwargs)
        callbacks = self.connection._callbacks
        assert callbacks is not None  # noqa: S101 - the consume above registered one
        callback = callbacks[queue]

        def stamped(raw: dict[str, Any]) -> Any:
            if queue == INBOX_QUEUE:
                raw = inbox_message(raw)
            # Where it was read from, not where its sender says it went.
            properties = raw.setdefault("properties", {})
            if not isinstance(properties, dict):
                properties = raw["properties"] = {}
            properties["delivery_info"] = {"exchange": "", "routing_key": queue}
            properties["delivery_tag"] = str(uuid.uuid4())
            return callback(raw)

        callbacks[queue] = stamped
        return tag


_NOTHING = object()


def _sent_payload(raw: Any) -> Any:
    """The JSON body a host wrote as ``raw``, decoded; _NOTHING for anything but plain JSON
    within LATTICE_INBOX_MAX_BYTES."""
    if not isinstance(raw, dict) or raw.get("content-type") != "application/json":
        return _NOTHING
    headers, properties = raw.get("headers"), raw.get("properties")
    if not isinstance(headers, dict) or not isinstance(properties, dict):
        return _NOTHING
    if headers.get("compression"):  # never decompressed: a bomb would be ours to unpack
        return _NOTHING
    body: Any = raw.get("body")
    if not isinstance(body, str | bytes) or len(body) > settings.LATTICE_INBOX_MAX_BYTES:
        # Refused before it is decoded: a host must not make the control worker parse,
        # hold or publish as much as it likes.
        logger.warning(
            "an inbox message refused: no text body, or one over %d bytes",
            settings.LATTICE_INBOX_MAX_BYTES,
        )
        return _NOTHING
    try:
        if properties.get("body_encoding") == "base64":
            body = base64.b64decode(str(body), validate=True)
        return json.loads(body)
    except (TypeError, ValueError):
        return _NOTHING


def _sent_envelope(raw: Any) -> Any:
    """The one argument of the INBOX_TASK a host wrote as ``raw`` (either Celery protocol,
    JSON only); None for anything else, which the inbox refuses as no envelope."""
    payload = _sent_payload(raw)
    if payload is _NOTHING:
        return None
    headers = raw["headers"]
    task: Any = None
    args: Any = None
    kwargs: Any = None
    if "task" in headers:  # protocol 2: [args, kwargs, embed]
        task = headers.get("task")
        if isinstance(payload, list) and len(payload) >= 2:  # noqa: PLR2004
            args, kwargs = payload[0], payload[1]
    elif isinstance(payload, dict):  # protocol 1: the whole request in the body
        task, args, kwargs = payload.get("task"), payload.get("args"), payload.get("kwargs")
    if task != INBOX_TASK or not isinstance(args, list) or len(args) != 1 or kwargs:
        return None
    return args[0]


def inbox_message(raw: Any) -> dict[str, Any]:
    """What a host wrote to the inbox, written anew: the inbox task, a fresh id, the one
    argument it sent; no callbacks, errbacks, chain, chord or group, no ETA, expiry, time
    limits or retries of the host's, no other request field."""
    task_id = str(uuid.uuid4())
    body = [
        [_sent_envelope(raw)],
        {},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    ]
    return {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": INBOX_TASK,
            "id": task_id,
            "root_id": task_id,
            "parent_id": None,
            "group": None,
            "retries": 0,
            "eta": None,
            "expires": None,
            "timelimit": [None, None],
            "argsrepr": "",
            "kwargsrepr": "",
            "origin": "",
            "ignore_result": True,
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "priority": 0,
            "body_encoding": "base64",
        },
    }


class Transport(kombu_redis.Transport):
    """kombu's Redis transport, with ``delivery_info`` stamped by the consumer (see above)."""

    Channel = Channel


class GuardedTask(Task):
    """Every Lattice task: from the inbox queue, only INBOX_TASK runs, and nothing chains on."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        delivery = request.delivery_info or {}
        if not request.called_directly and delivery.get("routing_key") == INBOX_QUEUE:
            request.callbacks = request.errbacks = request.chain = request.chord = None
            if self.name != INBOX_TASK:
                logger.warning("task %s refused: it came from the hosts' inbox", self.name)
                raise Ignore
        return super().__call__(*args, **kwargs)
