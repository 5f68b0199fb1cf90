from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Profile:
    username: str
    email: str
    display_name: str | None = None  # optional: accounts created through SSO have none
    locale: str = "en"

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Profile:
        """A profile from the user service's JSON (``display_name`` may be null or missing)."""
        return cls(
            username=payload["username"],
            email=payload["email"],
            display_name=payload.get("display_name"),
            locale=payload.get("locale") or "en",
        )
