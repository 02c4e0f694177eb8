from __future__ import annotations

from django.apps import AppConfig

# The audit log's words for what accounts record (apps.core.audit.audit_describe).
AUDIT_PHRASES = {
    "token.created": "{actor} made the API token {target}",
    "token.revoked": "{actor} revoked the API token {target}",
    "token.revoked_all": "{actor} revoked every API token of theirs ({target})",
}


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from apps.accounts import receivers  # noqa: F401 - connects signal receivers
        from apps.core.audit import audit_phrases

        for action, phrase in AUDIT_PHRASES.items():
            audit_phrases.register(action, phrase)
