"""API keys of analysts and partner systems: format, scopes, issuing and the per-call check."""
