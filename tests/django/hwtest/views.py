"""The views of the test project: a login that sets the session cookie, and the connect hook
heartwire calls (`--auth-url`) for every WebSocket upgrade, with the upgrade's cookies."""

import json

from django.contrib.auth import authenticate, login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST


@csrf_exempt
@require_POST
def log_in(request: HttpRequest) -> HttpResponse:
    """Logs the user of the posted username and password in: Django sets the session cookie,
    and django-websocket-redis keeps the user's groups in the session."""
    user = authenticate(request, username=request.POST["username"], password=request.POST["password"])
    if user is None:
        return HttpResponse("wrong username or password", status=403)
    login(request, user)
    return JsonResponse({"user": user.get_username()})


@csrf_exempt
@require_POST
def connect_hook(request: HttpRequest) -> HttpResponse:
    """Who the upgrade belongs to, from its session: the user, and the groups that
    django-websocket-redis keeps in the session (what its publisher's SELF means); an
    upgrade without a logged-in session is anonymous."""
    upgrade = json.loads(request.body)
    if not upgrade["path"].startswith("/ws"):
        return HttpResponse("not a WebSocket path of this site", status=403)
    if not request.user.is_authenticated:
        return JsonResponse({"user": None, "groups": [], "expires_at": None})
    return JsonResponse(
        {
            "user": request.user.get_username(),
            "groups": request.session.get("ws4redis:memberof", []),
            "expires_at": int(request.session.get_expiry_date().timestamp()),
        }
    )
