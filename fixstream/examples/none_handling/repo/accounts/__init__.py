"""User profiles and the profile card shown in the site header."""

from accounts.api import profile_card
from accounts.models import Profile

__all__ = ["Profile", "profile_card"]
