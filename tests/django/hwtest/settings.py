"""Settings of the test project. The test sets HWTEST_DB (the SQLite file) and
HWTEST_REDIS_PORT (its redis-server) before Django starts."""

import os

SECRET_KEY = "heartwire-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    # Its models module keeps a user's groups in the session at login.
    "ws4redis",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "hwtest.urls"
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["HWTEST_DB"]},
}
# Users are made by the test; a fast hasher keeps that quick.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_COOKIE_NAME = "sessionid"

WS4REDIS_CONNECTION = {"host": "127.0.0.1", "port": int(os.environ["HWTEST_REDIS_PORT"]), "db": 0}
WS4REDIS_PREFIX = "hwtest"
WS4REDIS_EXPIRE = 60
