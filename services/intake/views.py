"""Citizens' pages: the mobile request form, the confirmation, and status lookup."""
from __future__ import annotations

import secrets

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for
from flask_limiter.errors import RateLimitExceeded
from marshmallow import ValidationError

from services.common import uploads
from services.common.blobs import store_for
from services.common.db import Conflict
from services.common.web.ratelimit import LOOKUP, SUBMIT, limited, refusal_message, replayed

from . import callback, idempotency
from .requests import RequestSchema, find_request, public_timeline, request_photos

bp = Blueprint("citizen", __name__)

WELCOME = ("您好！这里是阜新市“阜政通”诉求服务平台。无论是邻里纠纷、物业维修，还是政策咨询、"
           "投诉建议，请告诉我们，我们会在1个工作日内交办到负责的部门，并全程跟踪办理进度。")
STATUS_NAMES = {"submitted": "已提交，等待分拨", "assigned": "已交办，部门办理中", "handled": "已答复，请评价",
                "rejected": "不予受理", "merged": "已合并办理", "closed": "已办结",
                "reopened": "重新办理中"}


def _service():
    return current_app.extensions["fzt"]


FIELDS = ("district", "name", "phone", "description", "category", "location", "email")
TOKEN_FIELD = "submission_token"
RESUBMITTED = "这张表单已经提交过一次（诉求编号 {case_no}），内容与刚才不同。如确需再反映一件新的诉求，请核对后再次提交。"


def _submission_token() -> str:
    """The form's one-time token: the idempotency key of this one submission (a double click
    or a resubmit after a dropped connection answers the first case again)."""
    token = request.form.get(TOKEN_FIELD, "")
    return token if idempotency.valid_key(token) else secrets.token_urlsafe(18)


def _form(values, errors=None, refusal=None, token=None, status=200):
    # A browser cannot put chosen files back into a form: say so if some were sent.
    photos_dropped = request.method == "POST" and any(f.filename for f in request.files.getlist("photos"))
    return render_template("intake/submit.html", welcome=WELCOME, errors=errors or {}, values=values,
                           refusal=refusal, submission_token=token or secrets.token_urlsafe(18),
                           photo_policy=uploads.photo_policy(_service().settings),
                           photos_dropped=photos_dropped), status


def checked_photos(files):
    """The citizen's photos checked and cleaned (nothing stored yet); UploadRejected if any
    is refused (docs/uploads.md)."""
    return uploads.read_uploads(files, uploads.photo_policy(_service().settings))


def stored_photos(prepared) -> list[dict]:
    return uploads.store_uploads(store_for(_service().settings), prepared)


@bp.route("/", methods=["GET", "POST"])
@limited(SUBMIT, replay=lambda: idempotency.seen(_service(), idempotency.WEB, request.form.get(TOKEN_FIELD)))
def submit():
    if request.method != "POST":
        return _form({})
    values = {k: request.form.get(k, "") for k in FIELDS}
    token = _submission_token()
    errors = {}
    try:
        # An empty field is a missing one, so the citizen reads "请填写…", not "invalid".
        data = RequestSchema().load({**{k: v for k, v in values.items() if v.strip()}, "channel": "web"})
    except ValidationError as err:
        errors = err.messages
    try:  # every photo is checked before anything is stored
        photos = checked_photos(request.files.getlist("photos"))
    except uploads.UploadRejected as err:
        errors["photos"] = [str(err)]
    if errors:
        return _form(values, errors=errors, token=token, status=400)
    try:
        created, again = idempotency.submit_once(_service(), idempotency.WEB, token, data,
                                                 photos=stored_photos(photos))
    except idempotency.KeyReused as err:
        return _form(values, refusal=RESUBMITTED.format(case_no=err.case_no), status=409)
    if again:
        replayed()
    # Shown once on the next page; the citizen is told to note it down.
    session["just_submitted"] = [created.case_no, created.tracking_code, len(photos)]
    return redirect(url_for("citizen.submitted"))


@bp.errorhandler(RateLimitExceeded)
def _rate_limited(err):
    """Too many submissions: the form again with everything typed, and when to try again."""
    if request.endpoint != "citizen.submit":
        return render_template("error.html", status=429, message=refusal_message(err)), 429
    return _form({k: request.form.get(k, "") for k in FIELDS}, refusal=refusal_message(err),
                 token=_submission_token(), status=429)


@bp.get("/submitted")
def submitted():
    pair = session.get("just_submitted")
    if not pair:
        return redirect(url_for("citizen.submit"))
    return render_template("intake/submitted.html", case_no=pair[0], tracking_code=pair[1],
                           photo_count=pair[2] if len(pair) > 2 else 0)


@bp.route("/status", methods=["GET", "POST"])
@limited(LOOKUP)
def status():
    case_no = request.values.get("case_no", "").strip()
    code = request.values.get("tracking_code", "").strip()
    found = find_request(_service(), case_no, code) if case_no and code else None
    return _status_page(case_no, code, found, not_found=bool(case_no and code and found is None))


def _status_page(case_no, code, found, not_found=False, rating_form=None, rated=False, status=None, stale=False):
    """The status page; with the rating form while the case waits for the citizen's rating."""
    timeline, photos = [], []
    if found is not None:
        timeline = public_timeline(_service(), found.case_no)
        photos = request_photos(_service(), found.case_no)
        _remember_tracked(found.case_no)
        if rating_form is None and _awaits_rating(found.case_no):
            rating_form = callback.RatingForm(formdata=None)
    return render_template("intake/status.html", case_no=case_no, tracking_code=code, found=found,
                           timeline=timeline, photos=photos, not_found=not_found,
                           status_names=STATUS_NAMES, rating_form=rating_form, rated=rated, stale=stale), (
        status or (404 if not_found else 200))


def _awaits_rating(case_no) -> bool:
    with _service().uow() as uow:
        return callback.open_rating_item(uow.session, case_no) is not None


@bp.post("/status/rate")
@limited(LOOKUP)
def rate():
    """回访 online: the citizen rates the reply (满意 / 基本满意 / 不满意) with a comment. The
    tracking code is checked again; the form is validated (CSRF, a rating, a reason for 不满意)."""
    case_no = request.form.get("case_no", "").strip()
    code = request.form.get("tracking_code", "").strip()
    found = find_request(_service(), case_no, code) if case_no and code else None
    if found is None:
        return _status_page(case_no, code, None, not_found=True)
    form = callback.RatingForm()
    if not form.validate_on_submit():
        if not _awaits_rating(found.case_no):
            return _status_page(case_no, code, found, status=409, stale=True)
        return _status_page(case_no, code, found, rating_form=form, status=400)
    try:
        callback.submit_rating(_service(), found.case_no, form.rating.data, form.comment.data)
    except (callback.NotRatable, Conflict):
        return _status_page(case_no, code, found, status=409, stale=True)
    return _status_page(case_no, code, find_request(_service(), case_no, code), rated=True)


TRACKED_LIMIT = 5


def _remember_tracked(case_no):
    """This browser showed the tracking code for ``case_no``: it may load the case's photos
    (so the code never has to be in an image URL, a log line or a Referer)."""
    tracked = [c for c in session.get("tracked", []) if c != case_no]
    session["tracked"] = [*tracked, case_no][-TRACKED_LIMIT:]


@bp.get("/status/<case_no>/photos/<sha256>")
def photo(case_no, sha256):
    """A photo of the citizen's own request (``?thumbnail=1``: its small version), only in
    the browser that looked the case up with its tracking code; 404 to everyone else."""
    if case_no not in session.get("tracked", []):
        abort(404)
    found = next((p for p in request_photos(_service(), case_no) if p.sha256 == sha256), None)
    if found is None:
        abort(404)
    thumbnail = request.args.get("thumbnail") == "1" and found.thumbnail_sha256
    return uploads.send_blob(store_for(_service().settings), thumbnail or found.sha256, found.filename)
