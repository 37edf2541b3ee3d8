"""An API key that must never be stored, logged or shown (the secret-handling tests)."""

SECRET = "sk-prefloop-SECRET-do-not-store-9131"
