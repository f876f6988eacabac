"""Adapters to mail servers (IMAP, SMTP) behind small interfaces; foreign errors are
translated into :mod:`crmail.errors` here, at the edge."""

#: What a user should do when a server refuses an OAuth2 access token.
OAUTH2_REFUSED_HINT = (
    "The access granted to crmail has expired or was revoked: reconnect the account "
    "(sign in with your provider again)."
)
