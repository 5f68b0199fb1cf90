"""Text shown for a profile: its name, a greeting and avatar initials."""

from __future__ import annotations

from accounts.models import Profile

GREETINGS = {"en": "Hello", "de": "Hallo", "fr": "Bonjour", "es": "Hola"}


def shown_name(profile: Profile) -> str:
    """The display name if the user set one, otherwise the username."""
    name = profile.display_name.strip()
    return name or profile.username


def greeting(profile: Profile) -> str:
    word = GREETINGS.get(profile.locale.split("-")[0].lower(), GREETINGS["en"])
    return f"{word}, {shown_name(profile)}!"


def initials(profile: Profile) -> str:
    words = shown_name(profile).replace("_", " ").replace(".", " ").split()
    return "".join(word[0].upper() for word in words[:2])


def masked_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"
