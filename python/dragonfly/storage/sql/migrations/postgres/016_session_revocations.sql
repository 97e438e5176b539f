-- Dashboard sessions that ended before their expiry (logout: DELETE /api/auth/session,
-- api/session_cookies.py). A session token (JWT) names its id in `jti`; a revoked id is refused by every
-- control plane until the token would have expired anyway, after which its row may go (`expires_at`, ms).
-- Identical on SQLite and PostgreSQL: keep it in step with the other dialect's 016_session_revocations.sql.
CREATE TABLE session_revocations (
  jti TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  expires_at BIGINT NOT NULL,
  revoked_at BIGINT NOT NULL
);
CREATE INDEX session_revocations_expiry ON session_revocations(expires_at);
