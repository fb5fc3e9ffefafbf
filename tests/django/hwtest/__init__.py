"""A small Django project whose users log in with a session cookie and whose connect hook
tells heartwire who a WebSocket upgrade belongs to, as a Django site using
django-websocket-redis would."""
