from accounts.models import Profile
from accounts.render import greeting, initials, masked_email, shown_name


def test_display_name_is_trimmed():
    assert shown_name(Profile("ada", "ada@example.com", "  Ada Lovelace ")) == "Ada Lovelace"


def test_blank_display_name_falls_back_to_username():
    assert shown_name(Profile("ada", "ada@example.com", "   ")) == "ada"


def test_greeting_uses_locale():
    assert greeting(Profile("max", "m@example.de", "Max", "de-AT")) == "Hallo, Max!"
    assert greeting(Profile("li", "li@example.com", "Li", "zh")) == "Hello, Li!"


def test_initials():
    assert initials(Profile("ada", "a@example.com", "Ada Lovelace")) == "AL"
    assert initials(Profile("grace_hopper", "g@example.com", "")) == "GH"


def test_masked_email():
    assert masked_email("ada@example.com") == "a***@example.com"
