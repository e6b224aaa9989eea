"""Message templates and their immutable versions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import BigId, Json, UTCDateTime, utcnow


class Template(db.Model):
    """A named message; its content lives in versions, the newest being current."""

    __tablename__ = "templates"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    category: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    default_locale: Mapped[str] = mapped_column(String(16), default="en")
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    versions: Mapped[list[TemplateVersion]] = relationship(
        back_populates="template", cascade="all, delete-orphan", order_by="TemplateVersion.version"
    )

    def version(self, number: int | None = None) -> TemplateVersion | None:
        wanted = number or self.current_version
        return next((v for v in self.versions if v.version == wanted), None)


class TemplateVersion(db.Model):
    """One saved state of a template.

    ``variants`` maps locale -> channel -> fields, e.g.
    ``{"en": {"in_app": {"title": "...", "body": "..."}, "sms": {"text": "..."}}}``.
    """

    __tablename__ = "template_versions"
    __table_args__ = (UniqueConstraint("template_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("templates.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    variants: Mapped[dict] = mapped_column(Json)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    template: Mapped[Template] = relationship(back_populates="versions")
