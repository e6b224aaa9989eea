"""Console area: audiences -- a filter builder with a live count and sample, saved audiences, CSV imports."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from app.audiences.filters import validate_filter
from app.audiences.importer import UploadRejected, create_import, read_progress
from app.audiences.imports import TYPING_RULES
from app.audiences.store import SAMPLE_SIZE, count_and_sample, save_audience
from app.console.blueprint import bp
from app.console.forms_content import (
    FIELD_SUGGESTIONS,
    OPERATOR_LABELS,
    AudienceForm,
    Builder,
    ImportForm,
    apply_action,
    builder_from_form,
    builder_from_tree,
    invalid_controls,
    messages_by_row,
    tree_from_builder,
)
from app.console.templates_editor import content_editor_required
from app.extensions import db, htmx
from app.models import Audience, ImportJob
from app.models.types import utcnow

STARTER = Builder("all", ())


def evaluate(builder: Builder) -> dict:
    """What the builder's templates show: messages per row and overall, the controls each row's messages name
    (``row_invalid``), and the reach (None while the filter is invalid)."""
    tree, paths = tree_from_builder(builder)
    problems = validate_filter(tree)
    by_row, general = messages_by_row(problems, paths)
    reach = None if problems else count_and_sample(tree, utcnow())
    return {
        "builder": builder,
        "row_errors": by_row,
        "row_invalid": invalid_controls(problems, paths),
        "general": general,
        "reach": reach,
        "sample_size": SAMPLE_SIZE,
    }


def _render_builder(form: AudienceForm, builder: Builder, audience: Audience | None, status: int = 200):
    return render_template(
        "console/audiences/edit.html",
        form=form,
        audience=audience,
        operators=OPERATOR_LABELS,
        suggestions=FIELD_SUGGESTIONS,
        **evaluate(builder),
    ), status


def _audience_or_404(audience_id: int) -> Audience:
    audience = db.session.get(Audience, audience_id)
    if audience is None:
        abort(404)
    return audience


@bp.get("/audiences")
@content_editor_required
def audiences_index():
    audiences = db.session.scalars(select(Audience).order_by(Audience.name)).all()
    imports = db.session.scalars(select(ImportJob).order_by(ImportJob.id.desc()).limit(10)).all()
    return render_template("console/audiences/index.html", audiences=audiences, imports=imports)


def _builder_page(audience: Audience | None):
    form = AudienceForm(obj=audience)
    if request.method == "GET":
        builder = builder_from_tree(audience.filter) if audience else STARTER
        return _render_builder(form, builder, audience)
    action = request.form.get("action", "")
    builder = apply_action(builder_from_form(request.form), action)
    if action != "save":
        return _render_builder(form, builder, audience)
    name = (form.name.data or "").strip()
    if not form.validate():
        return _render_builder(form, builder, audience, 422)
    if not name:
        form.name.errors.append("Name the audience to save it.")
        return _render_builder(form, builder, audience, 422)
    tree, _paths = tree_from_builder(builder)
    if validate_filter(tree):
        return _render_builder(form, builder, audience, 422)
    try:
        saved = save_audience(audience, name, tree, current_user)
    except ValueError as error:
        form.name.errors.append(str(error))
        return _render_builder(form, builder, audience, 422)
    flash(f"Saved audience {saved.name}.", "info")
    return redirect(url_for("console.audience_edit", audience_id=saved.id))


@bp.route("/audiences/new", methods=["GET", "POST"])
@content_editor_required
def audience_new():
    return _builder_page(None)


@bp.route("/audiences/<int:audience_id>", methods=["GET", "POST"])
@content_editor_required
def audience_edit(audience_id: int):
    return _builder_page(_audience_or_404(audience_id))


@bp.post("/audiences/reach")
@content_editor_required
def audience_reach():
    """htmx: the live count and sample for the filter as it stands, plus each row's messages out of band."""
    return render_template("console/audiences/_reach.html", oob=True, **evaluate(builder_from_form(request.form)))


@bp.route("/audiences/import", methods=["GET", "POST"])
@content_editor_required
def import_new():
    form = ImportForm()
    if form.validate_on_submit():
        try:
            job = create_import(form.file.data, current_user)
        except UploadRejected as error:
            form.file.errors.append(str(error))
        else:
            return redirect(url_for("console.import_show", import_id=job.id))
    status = 422 if form.errors else 200
    return render_template("console/audiences/import.html", form=form, typing_rules=TYPING_RULES), status


@bp.get("/audiences/imports/<int:import_id>")
@content_editor_required
def import_show(import_id: int):
    job = db.session.get(ImportJob, import_id)
    if job is None:
        abort(404)
    progress = read_progress(job)
    page = "console/audiences/_import_progress.html" if htmx else "console/audiences/import_show.html"
    return render_template(page, job=job, progress=progress)
