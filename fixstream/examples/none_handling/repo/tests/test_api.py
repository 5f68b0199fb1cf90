from accounts import profile_card


def test_profile_card():
    payload = {
        "username": "ada",
        "email": "ada@example.com",
        "display_name": "Ada Lovelace",
        "locale": "fr",
    }
    assert profile_card(payload) == {
        "greeting": "Bonjour, Ada Lovelace!",
        "initials": "AL",
        "email": "a***@example.com",
    }
