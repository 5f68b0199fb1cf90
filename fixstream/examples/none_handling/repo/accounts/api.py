"""The JSON body of ``GET /api/profile/card``."""

from __future__ import annotations

from typing import Any

from accounts.models import Profile
from accounts.render import greeting, initials, masked_email


def profile_card(payload: dict[str, Any]) -> dict[str, str]:
    profile = Profile.from_payload(payload)
    return {
        "greeting": greeting(profile),
        "initials": initials(profile),
        "email": masked_email(profile.email),
    }
