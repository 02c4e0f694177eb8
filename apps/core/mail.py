"""Email that never holds up a request.

``QueuedEmailBackend`` is Django's EMAIL_BACKEND: it turns each message into a
plain dict and queues ``deliver_email`` once the surrounding transaction
commits, so a rolled-back signup sends nothing. The worker hands the message to
the real backend named by ``LATTICE_EMAIL_DELIVERY_BACKEND`` (console in the
embedded default, framed by ``FramedConsoleEmailBackend`` so it stands out in the dev
server's log; SMTP in production, locmem in tests).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.console import EmailBackend as ConsoleEmailBackend
from django.db import transaction

from apps.core.tasks import deliver_email

if TYPE_CHECKING:
    from collections.abc import Sequence

    from django.core.mail import EmailMessage


def message_to_payload(message: EmailMessage) -> dict[str, Any]:
    if message.attachments:
        # Nothing in Lattice sends attachments; refuse rather than drop them silently.
        raise ValueError("QueuedEmailBackend does not carry attachments.")
    return {
        "subject": str(message.subject),
        "body": str(message.body),
        "from_email": message.from_email,
        "to": list(message.to),
        "cc": list(message.cc),
        "bcc": list(message.bcc),
        "reply_to": list(message.reply_to),
        "headers": dict(message.extra_headers),
        "alternatives": [
            [str(content), mimetype] for content, mimetype in getattr(message, "alternatives", [])
        ],
    }


class QueuedEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        payloads = [message_to_payload(m) for m in email_messages]
        for payload in payloads:
            # robust: if the broker is down the data is already committed; a
            # 500 now would mislead the person. The failure is logged instead.
            transaction.on_commit(partial(deliver_email.delay, payload), robust=True)
        return len(payloads)


class FramedConsoleEmailBackend(ConsoleEmailBackend):
    """Django's console backend with each message framed by a banner naming its recipients
    and subject: under ``make dev`` the mails (verification links, invitations) are printed in
    the server's log and must stand out from it."""

    RULE = "=" * 78

    def write_message(self, message: EmailMessage) -> None:
        to = ", ".join(message.to) or "(no recipient)"
        self.stream.write(f"\n{self.RULE}\n  EMAIL to {to}: {message.subject}\n{self.RULE}\n")
        super().write_message(message)
        self.stream.write(f"{self.RULE}\n  END OF EMAIL to {to}\n{self.RULE}\n\n")
