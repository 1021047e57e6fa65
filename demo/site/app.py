"""The demo e-service: "E-tjänst: Ansökan om kommunalt stöd" of the fictional Exempelby kommun.

A small but realistic case-management front end for Kansli's web-form robot to fill in: login with
a server-side session, CSRF tokens, a two-step form with server-side validation, a review page, a
receipt with a case number, a search by the applicant's own reference, a JSON admin listing, and
configurable faults (see :mod:`demo.site.faults`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from demo.site.faults import FaultConfig, FaultInjector
from demo.site.forms import (
    APPLICANT_FIELDS,
    ATTACHMENT_LABEL,
    CASE_TYPES,
    CONSENT_LABEL,
    ERRAND_FIELDS,
    MAX_ATTACHMENT_BYTES,
    Errors,
    validate_applicant,
    validate_errand,
)
from demo.site.middleware import FaultMiddleware
from demo.site.sessions import COOKIE_NAME, Attachment, Session, SessionStore
from demo.site.store import CaseStore

HERE = Path(__file__).resolve().parent
SERVICE_NAME = "E-tjänst: Ansökan om kommunalt stöd"
MUNICIPALITY = "Exempelby kommun"
LOGIN_URL = "/login"
EXPIRED_URL = "/login?expired=1"
STEP1_URL = "/ansokan/steg1"
STEP2_URL = "/ansokan/steg2"
REVIEW_URL = "/ansokan/granska"
SUBMIT_URL = "/ansokan/skicka"


@dataclass
class SiteConfig:
    """How one demo e-service runs."""

    db_path: Path
    username: str
    password: str = field(repr=False)
    faults: FaultConfig = field(default_factory=FaultConfig)
    seed: int = 0
    session_ttl_seconds: int = 1800


def create_app(config: SiteConfig) -> Starlette:
    """The ASGI app of one demo e-service."""
    service = EService(config)
    app = Starlette(
        routes=service.routes(),
        middleware=[
            Middleware(FaultMiddleware, injector=service.faults, on_error=service.fault_page)
        ],
        exception_handlers={HTTPException: service.http_error, Exception: service.crash},
    )
    app.state.service = service
    return app


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _strings(form: FormData) -> dict[str, str]:
    return {key: value for key, value in form.items() if isinstance(value, str)}


class EService:
    """State and request handlers of one site."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.store = CaseStore(config.db_path)
        self.sessions = SessionStore(config.session_ttl_seconds)
        self.faults = FaultInjector(config.faults, config.seed)
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.globals.update(
            service_name=SERVICE_NAME,
            municipality=MUNICIPALITY,
            case_types=CASE_TYPES,
            consent_label=CONSENT_LABEL,
            attachment_label=ATTACHMENT_LABEL,
            max_attachment_mb=MAX_ATTACHMENT_BYTES // (1024 * 1024),
        )

    def routes(self) -> list[BaseRoute]:
        """Every URL of the site."""
        return [
            Route("/", lambda request: _redirect(STEP1_URL)),
            Route("/health", self.health),
            Route(LOGIN_URL, self.login_page, methods=["GET"]),
            Route(LOGIN_URL, self.login_submit, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route(STEP1_URL, self.step1_page, methods=["GET"]),
            Route(STEP1_URL, self.step1_submit, methods=["POST"]),
            Route(STEP2_URL, self.step2_page, methods=["GET"]),
            Route(STEP2_URL, self.step2_submit, methods=["POST"]),
            Route(REVIEW_URL, self.review_page, methods=["GET"]),
            Route(SUBMIT_URL, self.submit, methods=["POST"]),
            Route("/kvitto/{case_number}", self.receipt, methods=["GET"]),
            Route("/sok", self.search, methods=["GET"]),
            Route("/admin/cases.json", self.admin_cases, methods=["GET"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]

    # -- rendering ---------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        name: str,
        context: dict[str, Any] | None = None,
        status: int = 200,
        session: Session | None = None,
    ) -> Response:
        """A page, with the session's CSRF token and navigation."""
        full = {"session": session, "csrf_token": session.csrf_token if session else ""}
        full.update(context or {})
        response = self.templates.TemplateResponse(request, name, full, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        return response

    def error_page(self, request: Request, status: int, title: str, message: str) -> Response:
        """A plain Swedish error page."""
        context = {"title": title, "message": message, "status": status}
        return self.render(request, "error.html", context, status=status)

    def fault_page(self, request: Request) -> Response:
        """The page of an injected (or real) server error."""
        message = "Ett tekniskt fel har uppstått. Försök igen om en stund."
        return self.error_page(request, 500, "Tekniskt fel", message)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        """Starlette's HTTP errors (404, 405) as Swedish pages."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            return self.error_page(request, 404, "Sidan hittades inte", "Kontrollera adressen.")
        if status == 405:
            return self.error_page(request, 405, "Otillåten begäran", "Metoden stöds inte här.")
        return self.fault_page(request)

    async def crash(self, request: Request, exc: Exception) -> Response:
        """Any unexpected exception."""
        return self.fault_page(request)

    # -- sessions and CSRF -------------------------------------------------------------------

    def session_of(self, request: Request) -> Session | None:
        """The live session of the request's cookie, if any."""
        return self.sessions.get(request.cookies.get(COOKIE_NAME))

    def protected(self, request: Request, allow_pending: bool = False) -> Session | Response:
        """The logged-in session, or a redirect to the login page."""
        session = self.session_of(request)
        if session is not None and session.expire_pending and not allow_pending:
            self.sessions.drop(session)
            session = None
        if session is not None and session.authenticated:
            return session
        target = EXPIRED_URL if request.cookies.get(COOKIE_NAME) else LOGIN_URL
        response = _redirect(target)
        response.delete_cookie(COOKIE_NAME, path="/")
        return response

    async def checked_form(self, request: Request) -> tuple[Session, FormData] | Response:
        """A protected POST's session and form, once its CSRF token has been checked."""
        session = self.protected(request)
        if isinstance(session, Response):
            return session
        form = await request.form(max_part_size=MAX_ATTACHMENT_BYTES + 1024)
        if not session.csrf_ok(form.get("csrf_token")):
            return self.csrf_failure(request)
        return session, form

    def csrf_failure(self, request: Request) -> Response:
        """403 for a missing or wrong CSRF token."""
        message = "Formuläret saknar en giltig säkerhetstoken. Ladda om sidan och försök igen."
        return self.error_page(request, 403, "Åtkomst nekad", message)

    @staticmethod
    def set_cookie(response: Response, session: Session) -> None:
        """Hand the browser its session token."""
        response.set_cookie(COOKIE_NAME, session.token, httponly=True, samesite="lax", path="/")

    # -- login -------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """Liveness probe (never faulty)."""
        return PlainTextResponse("ok")

    async def login_page(self, request: Request) -> Response:
        """The login form; ``?expired=1`` says the session ran out."""
        session = self.session_of(request)
        if session is None or session.expire_pending:
            session = self.sessions.create()
        expired = request.query_params.get("expired") == "1"
        response = self.render(request, "login.html", {"expired": expired}, session=session)
        self.set_cookie(response, session)
        return response

    async def login_submit(self, request: Request) -> Response:
        """Check the credentials; a good login starts a fresh authenticated session."""
        session = self.session_of(request)
        form = await request.form()
        if session is None or not session.csrf_ok(form.get("csrf_token")):
            return self.csrf_failure(request)
        username, password = str(form.get("username") or ""), str(form.get("password") or "")
        if not self.credentials_ok(username, password):
            context = {"error": "Fel användarnamn eller lösenord.", "username": username}
            return self.render(request, "login.html", context, status=401, session=session)
        self.sessions.drop(session)
        fresh = self.sessions.create(authenticated=True)
        response = _redirect(STEP1_URL)
        self.set_cookie(response, fresh)
        return response

    def credentials_ok(self, username: str, password: str) -> bool:
        """Constant-time comparison with the configured credentials."""
        user_ok = hmac.compare_digest(username.encode(), self.config.username.encode())
        password_ok = hmac.compare_digest(password.encode(), self.config.password.encode())
        return user_ok and password_ok

    async def logout(self, request: Request) -> Response:
        """End the session."""
        checked = await self.checked_form(request)
        if isinstance(checked, Response):
            return checked
        self.sessions.drop(checked[0])
        response = _redirect(LOGIN_URL)
        response.delete_cookie(COOKIE_NAME, path="/")
        return response

    # -- step 1: Sökande ---------------------------------------------------------------------

    async def step1_page(self, request: Request) -> Response:
        """Step 1, "Sökande"."""
        session = self.protected(request)
        if isinstance(session, Response):
            return session
        return self.render_step1(request, session, session.applicant, {})

    def render_step1(
        self, request: Request, session: Session, values: dict[str, str], errors: Errors
    ) -> Response:
        context = {"fields": APPLICANT_FIELDS, "values": values, "errors": errors}
        status = 422 if errors else 200
        return self.render(request, "step1.html", context, status=status, session=session)

    async def step1_submit(self, request: Request) -> Response:
        """Validate step 1; on success keep the values in the session and go on."""
        checked = await self.checked_form(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        values, errors = validate_applicant(_strings(form))
        if errors:
            return self.render_step1(request, session, values, errors)
        session.applicant = values
        return _redirect(STEP2_URL)

    # -- step 2: Ärende ----------------------------------------------------------------------

    async def step2_page(self, request: Request) -> Response:
        """Step 2, "Ärende" (needs step 1)."""
        session = self.protected(request)
        if isinstance(session, Response):
            return session
        if not session.applicant:
            return _redirect(STEP1_URL)
        return self.render_step2(request, session, session.errand, {})

    def render_step2(
        self, request: Request, session: Session, values: dict[str, str], errors: Errors
    ) -> Response:
        context = {
            "fields": ERRAND_FIELDS,
            "values": values,
            "errors": errors,
            "attachment": session.attachment,
        }
        status = 422 if errors else 200
        return self.render(request, "step2.html", context, status=status, session=session)

    async def step2_submit(self, request: Request) -> Response:
        """Validate step 2 and the attachment; on success go to the review page."""
        checked = await self.checked_form(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        if not session.applicant:
            return _redirect(STEP1_URL)
        values, errors = validate_errand(_strings(form))
        upload_error = await self.take_attachment(session, form.get("bilaga"))
        if upload_error:
            errors["bilaga"] = upload_error
        if errors:
            return self.render_step2(request, session, values, errors)
        session.errand = values
        return _redirect(REVIEW_URL)

    @staticmethod
    async def take_attachment(session: Session, upload: Any) -> str | None:
        """Keep a newly uploaded "Bilaga" (name and size); an error message if it is too big."""
        if not isinstance(upload, UploadFile) or not upload.filename:
            return None
        size = 0
        while chunk := await upload.read(64 * 1024):
            size += len(chunk)
            if size > MAX_ATTACHMENT_BYTES:
                return f"Bilagan är för stor. Den får vara högst {MAX_ATTACHMENT_BYTES // 2**20} MB."
        session.attachment = Attachment(name=Path(upload.filename).name, size=size)
        return None

    # -- review, submit, receipt -------------------------------------------------------------

    async def review_page(self, request: Request) -> Response:
        """Every value once more, with "Skicka in" and "Ändra"."""
        session = self.protected(request)
        if isinstance(session, Response):
            return session
        if not session.applicant:
            return _redirect(STEP1_URL)
        if not session.errand:
            return _redirect(STEP2_URL)
        context = {
            "applicant_fields": APPLICANT_FIELDS,
            "errand_fields": ERRAND_FIELDS,
            "applicant": session.applicant,
            "errand": session.errand,
            "attachment": session.attachment,
        }
        return self.render(request, "review.html", context, session=session)

    async def submit(self, request: Request) -> Response:
        """Store the case (faults permitting) and show its receipt."""
        checked = await self.checked_form(request)
        if isinstance(checked, Response):
            return checked
        session = checked[0]
        if not session.applicant or not session.errand:
            return _redirect(STEP1_URL)
        case_number = await run_in_threadpool(self.store.add, self.case_values(session))
        session.clear_form()
        if self.faults.count_submit():
            session.expire_pending = True
        if self.faults.fail_after_store():
            return self.fault_page(request)
        return _redirect(f"/kvitto/{case_number}")

    @staticmethod
    def case_values(session: Session) -> dict[str, Any]:
        """The stored columns of the session's application."""
        applicant, errand, attachment = session.applicant, session.errand, session.attachment
        return {
            "reference": errand["referens"],
            "applicant_name": applicant["namn"],
            "personnummer": applicant["personnummer"],
            "email": applicant["epost"],
            "phone": applicant["telefon"],
            "address": applicant["adress"],
            "postal_code": applicant["postnummer"],
            "city": applicant["postort"],
            "case_type": errand["arendetyp"],
            "start_date": errand["startdatum"],
            "description": errand["beskrivning"],
            "attachment_name": attachment.name if attachment else None,
            "attachment_size": attachment.size if attachment else None,
        }

    async def receipt(self, request: Request) -> Response:
        """"Tack! Din ansökan har tagits emot." with the case number."""
        session = self.protected(request, allow_pending=True)
        if isinstance(session, Response):
            return session
        case = await run_in_threadpool(self.store.get, request.path_params["case_number"])
        if case is None:
            return self.error_page(request, 404, "Ärendet hittades inte", "Kontrollera numret.")
        return self.render(request, "receipt.html", {"case": case}, session=session)

    # -- search and admin --------------------------------------------------------------------

    async def search(self, request: Request) -> Response:
        """Look cases up by the applicant's own reference ("Er referens")."""
        session = self.protected(request)
        if isinstance(session, Response):
            return session
        reference = request.query_params.get("referens", "").strip()
        cases = await run_in_threadpool(self.store.find_by_reference, reference) if reference else []
        context = {"reference": reference, "searched": bool(reference), "cases": cases}
        return self.render(request, "search.html", context, session=session)

    async def admin_cases(self, request: Request) -> Response:
        """Every case as JSON, behind HTTP Basic auth (no personnummer)."""
        if not self.basic_auth_ok(request.headers.get("authorization", "")):
            return PlainTextResponse(
                "Inloggning krävs.",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="Exempelby admin", charset="UTF-8"'},
            )
        cases = await run_in_threadpool(self.store.all, True)
        return JSONResponse(cases)

    def basic_auth_ok(self, header: str) -> bool:
        """True when ``header`` carries the site's username and password."""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            raw = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError:
            decoded = raw.decode("latin-1")
        username, separator, password = decoded.partition(":")
        return bool(separator) and self.credentials_ok(username, password)
