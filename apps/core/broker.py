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
  the queue it really read the message from.
- **GuardedTask**, every task's base class (config/celery.py): a task delivered from the
  inbox other than INBOX_TASK is refused, and whatever comes from the inbox has its
  callbacks, errbacks, chain and chord dropped (they would otherwise be sent on by the
  control worker, with its credentials, once the task returned).

Celery accepts JSON only (CELERY_ACCEPT_CONTENT), so no pickled message is ever loaded.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task
from celery.exceptions import Ignore
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
            # Where it was read from, not where its sender says it went.
            properties = raw.setdefault("properties", {})
            if not isinstance(properties, dict):
                properties = raw["properties"] = {}
            properties["delivery_info"] = {"exchange": "", "routing_key": queue}
            properties["delivery_tag"] = str(uuid.uuid4())
            return callback(raw)

        callbacks[queue] = stamped
        return tag


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
