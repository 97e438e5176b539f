"""Credentials and secrets: API keys (HMAC-hashed), passwords (argon2id), sessions (JWT), provider keys
(AES-GCM). Nothing here logs or returns a secret after creation."""
