"""The pages. Each handler gets the request, its form and an open connection, and calls the
service layer (twinning.service) for every rule; the checks every page shares (own origin,
session, CSRF token) are made once, in `_run`, before a handler sees the request."""
from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

import phonenumbers
import psycopg
from psycopg.rows import dict_row
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from twinning.config import WEB, SiteConfig, load
from twinning.numbers import NumberError, normalize_nanp
from twinning.service import NotFound, ServiceError
from twinning.service import accounts, calls, statuses, twins

from . import auth

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))

SEND_TO_CHOICES = (("ring-group", "My Ring Group"), ("voicemail", "Voicemail"))
# What a redirect after a change says on the next page (fixed texts: nothing is reflected).
NOTICES = {
    "saved": "Saved.",
    "removed": "Removed.",
    "current": "Your current status is changed; it applies to your next call.",
    "status": "Saved; it applies to the next call while this status is current.",
    "logged-out": "You are logged out.",
    "expired": "Your session has ended; please log in again.",
}
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def formatted(e164: Optional[str]) -> str:
    """+19175550123 -> (917) 555-0123, as the subscriber reads it."""
    if not e164:
        return ""
    try:
        return phonenumbers.format_number(phonenumbers.parse(e164, None),
                                          phonenumbers.PhoneNumberFormat.NATIONAL)
    except phonenumbers.NumberParseException:
        return e164


DEVICES = {"desk": "Desk", "mobile": "Mobile", "voicemail": "Voicemail", "far": "the other party"}


def party(text: Optional[str]) -> str:
    """A caller or callee as the call log has it (a number, or a SIP URI's user part): a North
    American number formatted, anything else as it is."""
    if not text:
        return ""
    match = re.match(r"^(?:sips?:)?([^@;>]+)", text.strip().strip("<"))
    e164 = normalize_nanp(match.group(1)) if match else None
    return formatted(e164) if e164 else text


def device(name: Optional[str]) -> str:
    return DEVICES.get(name or "", name or "")


def when(value: Optional[dt.datetime]) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


templates.env.filters["formatted"] = formatted
templates.env.filters["when"] = when
templates.env.filters["party"] = party
templates.env.filters["device"] = device


class Refused(Exception):
    """Answer with this status and a page saying why; nothing was changed."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Page:
    """What a handler is given: the request, its form (POST), the connection, the session and
    the subscriber it belongs to."""

    def __init__(self, cfg: SiteConfig, request: Request, form, conn: psycopg.Connection,
                 session: Optional[auth.Session], sub: Optional[dict]):
        self.cfg, self.request, self.form, self.conn = cfg, request, form, conn
        self.session, self.sub = session, sub

    def render(self, template: str, status: int = 200, **context) -> Response:
        notice = NOTICES.get(self.request.query_params.get("done", ""))
        context.setdefault("notice", notice)
        return templates.TemplateResponse(
            self.request, template, {"sub": self.sub, "session": self.session, **context},
            status_code=status)

    def field(self, name: str) -> str:
        value = self.form.get(name, "") if self.form is not None else ""
        return value if isinstance(value, str) else ""


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


def foreign_origin(request: Request) -> bool:
    """A POST that a page of another site made the browser send (Origin, else Referer,
    else the browser's Sec-Fetch-Site, says so)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin is not None:
        return origin != _own_origin(request)
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}" != _own_origin(request)
    return False


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _secret(cfg: SiteConfig) -> bytes:
    """The key of the log-in form's CSRF tokens: made once per stack, kept in its state dir."""
    path = cfg.web_secret_file
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as out:
        out.write(os.urandom(32))
    return path.read_bytes()


def create_app(cfg: Optional[SiteConfig] = None) -> Starlette:
    cfg = cfg or load()
    secret = _secret(cfg)

    def connect() -> psycopg.Connection:
        # The page's own database role: only what its service layer needs (0012_roles.sql).
        return psycopg.connect(cfg.dsn(WEB), row_factory=dict_row)

    def run(handler: Callable[[Page], Response], request: Request, form,
            needs_session: bool) -> Response:
        post = request.method == "POST"
        if post and foreign_origin(request):
            return _refusal(request, 403, "This form was sent from another site; nothing was "
                                          "changed.")
        token = request.cookies.get(auth.SESSION_COOKIE)
        try:
            with connect() as conn:
                conn.execute("SET statement_timeout = '10s'")
                sess = auth.session(conn, cfg.web, token)
                sub = None
                if sess is not None:
                    sub = conn.execute("SELECT * FROM subscriber WHERE id = %s",
                                       (sess.subscriber_id,)).fetchone()
                if needs_session and (sess is None or sub is None):
                    conn.commit()
                    if post:
                        return _refusal(request, 403, "Your session has ended, so nothing was "
                                                      "changed; please log in again.")
                    return RedirectResponse("/login" + ("?done=expired" if token else ""), 303)
                if post and needs_session and not auth.session_csrf_ok(sess, form.get("csrf")):
                    return _refusal(request, 403, "This form has no valid security token; "
                                                  "nothing was changed. Reload the page.")
                page = Page(cfg, request, form, conn, sess, sub)
                try:
                    with conn.transaction():
                        response = handler(page)
                except Refused as exc:
                    response = page.render("refused.html", exc.status, message=str(exc))
                return response
        except psycopg.OperationalError:
            return _refusal(request, 503, "The service is unavailable just now; please try "
                                          "again in a minute.")

    def endpoint(handler: Callable[[Page], Response], needs_session: bool = True):
        async def serve(request: Request) -> Response:
            form = await request.form() if request.method == "POST" else None
            response = await run_in_threadpool(run, handler, request, form, needs_session)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response
        return serve

    def set_cookie(response: Response, request: Request, name: str, value: str) -> None:
        response.set_cookie(name, value, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")

    # ---- log in / out --------------------------------------------------------------------

    def login_form(page: Page, status: int = 200, error: str = "",
                   extension: str = "") -> Response:
        if page.session is not None and page.sub is not None and status == 200:
            return RedirectResponse("/numbers", 303)
        nonce = page.request.cookies.get(auth.LOGIN_COOKIE) or auth.login_nonce()
        response = page.render("login.html", status, error=error, extension=extension,
                               csrf=auth.login_csrf(secret, nonce))
        set_cookie(response, page.request, auth.LOGIN_COOKIE, nonce)
        return response

    def login_post(page: Page) -> Response:
        if not auth.login_csrf_ok(secret, page.request.cookies.get(auth.LOGIN_COOKIE),
                                  page.field("csrf")):
            return _refusal(page.request, 403, "This form has no valid security token; "
                                               "reload the page and log in again.")
        extension = page.field("extension").strip()
        result = auth.log_in(page.conn, cfg.web, extension, page.field("password"),
                             _client(page.request))
        if result.locked_until is not None:
            what = (f"extension {extension}" if result.locked_what == "extension"
                    else "your address")
            minutes = max(1, round((result.locked_until - dt.datetime.now(dt.timezone.utc))
                                   .total_seconds() / 60))
            error = (f"Too many wrong passwords for {what}: log-in is refused for "
                     f"{cfg.web.lockout_minutes} minutes (until {when(result.locked_until)}, "
                     f"about {minutes} min from now).")
            return login_form(page, 429, error, extension)
        if not result.ok:
            return login_form(page, 401, "Wrong extension or password.", extension)
        response = RedirectResponse("/numbers", 303)
        old = page.request.cookies.get(auth.SESSION_COOKIE)
        auth.log_out(page.conn, old)        # a fresh session id at every log-in
        set_cookie(response, page.request, auth.SESSION_COOKIE, result.token)
        response.delete_cookie(auth.LOGIN_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    def logout(page: Page) -> Response:
        auth.log_out(page.conn, page.request.cookies.get(auth.SESSION_COOKIE))
        response = RedirectResponse("/login?done=logged-out", 303)
        response.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    def home(page: Page) -> Response:
        return RedirectResponse("/numbers", 303)

    # ---- My Numbers ----------------------------------------------------------------------

    def numbers(page: Page, status: int = 200, error: str = "", entered: str = "") -> Response:
        ext = page.sub["extension"]
        twin = twins.show_twin(page.conn, ext)
        return page.render("numbers.html", status, page_name="numbers", twin=twin,
                           label=twin["label"] if twin else twins.DEFAULT_LABEL,
                           error=error, entered=entered,
                           gate=accounts.twinning_refusal(page.sub))

    def numbers_post(page: Page) -> Response:
        entered = page.field("number")
        try:
            with page.conn.transaction():
                twins.set_twin(page.conn, page.sub["extension"], entered, None,
                               page.cfg.allowed_nanp_countries)
        except (NumberError, ServiceError) as exc:
            return numbers(page, 400, str(exc), entered)
        return RedirectResponse("/numbers?done=saved", 303)

    def numbers_remove(page: Page) -> Response:
        twins.clear_twin(page.conn, page.sub["extension"])
        return RedirectResponse("/numbers?done=removed", 303)

    # ---- Manage Status -------------------------------------------------------------------

    def status_list(page: Page) -> Response:
        rows = statuses.list_statuses(page.conn, page.sub["extension"])
        return page.render("status.html", page_name="status", statuses=rows,
                           choices=dict(SEND_TO_CHOICES),
                           gate=accounts.twinning_refusal(page.sub))

    def own_status(page: Page) -> dict:
        try:
            status_id = int(page.request.path_params["status_id"])
            return statuses.status_by_id(page.conn, page.sub, status_id)
        except (ValueError, NotFound):
            raise Refused(404, "There is no such status of yours.") from None

    def status_form(page: Page, status: int = 200, error: str = "",
                    row: Optional[dict] = None) -> Response:
        row = row or own_status(page)
        return page.render("status_edit.html", status, page_name="status", item=row,
                           choices=SEND_TO_CHOICES, error=error,
                           current=row["id"] == page.sub["current_status_id"],
                           gate=accounts.twinning_refusal(page.sub))

    def status_post(page: Page) -> Response:
        row = own_status(page)
        send_to = page.field("send_to")
        if send_to not in dict(SEND_TO_CHOICES):
            raise Refused(400, "Choose My Ring Group or Voicemail.")
        ring = {v for v in page.form.getlist("ring") if isinstance(v, str)}
        desk, mobile = "desk" in ring, "mobile" in ring
        try:
            with page.conn.transaction():
                statuses.route_status(page.conn, row, send_to, desk, mobile)
        except statuses.EmptyRingGroup:
            shown = dict(row, send_to=send_to, ring_desk=desk, ring_mobile=mobile)
            return status_form(page, 400, "A ring group needs at least one member: tick "
                                          "Desk, Mobile or both.", shown)
        return RedirectResponse("/status?done=status", 303)

    def status_current(page: Page) -> Response:
        row = own_status(page)
        statuses.make_current(page.conn, page.sub, row)
        return RedirectResponse("/status?done=current", 303)

    # ---- Recent calls --------------------------------------------------------------------

    def recent(page: Page) -> Response:
        return page.render("calls.html", page_name="calls",
                           calls=calls.recent_calls(page.conn, page.sub))

    def healthz(request: Request) -> Response:
        try:
            with connect() as conn:
                conn.execute("SELECT 1 FROM portal_session LIMIT 1")
        except psycopg.Error:
            return PlainTextResponse("database unreachable", 503)
        return PlainTextResponse("ok")

    async def health(request: Request) -> Response:
        return await run_in_threadpool(healthz, request)

    routes = [
        Route("/", endpoint(home)),
        Route("/login", endpoint(login_form, needs_session=False), methods=["GET"]),
        Route("/login", endpoint(login_post, needs_session=False), methods=["POST"]),
        Route("/logout", endpoint(logout, needs_session=False), methods=["GET"]),
        Route("/numbers", endpoint(numbers), methods=["GET"]),
        Route("/numbers", endpoint(numbers_post), methods=["POST"]),
        Route("/numbers/remove", endpoint(numbers_remove), methods=["POST"]),
        Route("/status", endpoint(status_list), methods=["GET"]),
        Route("/status/{status_id}", endpoint(status_form), methods=["GET"]),
        Route("/status/{status_id}", endpoint(status_post), methods=["POST"]),
        Route("/status/{status_id}/current", endpoint(status_current), methods=["POST"]),
        Route("/calls", endpoint(recent), methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={500: _server_error})


def _server_error(request: Request, exc: Exception) -> Response:
    """A bug of ours: one line for the person (the traceback goes to the page's log)."""
    return PlainTextResponse("Something went wrong on our side; nothing more was changed. "
                             "Please try again.", 500)


def _refusal(request: Request, status: int, message: str) -> Response:
    return templates.TemplateResponse(request, "refused.html",
                                      {"sub": None, "message": message, "notice": None},
                                      status_code=status)
