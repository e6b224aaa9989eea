"""The campaign console's forms: compose a draft (parsed into :class:`app.campaigns.store.CampaignFields`)
and test-send it. Every one is a FlaskForm, so CSRFProtect checks its token."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flask_wtf import FlaskForm
from wtforms import (
    DateTimeLocalField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    TimeField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from app.campaigns import store
from app.channels import labels
from app.models import Campaign

CHANNEL_LABELS = labels()
SCHEDULE_LABELS = {"now": "Send now", "at": "At a UTC time", "local": "At a local time in each recipient's zone"}


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class CampaignForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired("Give the campaign a name."), Length(max=255)])
    template_id = SelectField("Template", coerce=int, validators=[DataRequired("Choose a template.")])
    audience_id = SelectField("Saved audience", coerce=int, validate_choice=False, default=0)
    audience_filter = TextAreaField("Audience filter (JSON)", default='{"all": []}')
    channels = MultiCheckboxField("Channels", choices=list(CHANNEL_LABELS.items()))
    schedule = RadioField("When", choices=list(SCHEDULE_LABELS.items()), default="now")
    send_at = DateTimeLocalField("Send at (UTC)", format="%Y-%m-%dT%H:%M", validators=[Optional()])
    local_time = TimeField("Local time", validators=[Optional()])
    throttle_per_minute = IntegerField(
        "Max sends per minute",
        validators=[
            Optional(),
            NumberRange(min=1, max=10_000_000, message="Between 1 and 10,000,000, or leave empty."),
        ],
    )
    ends_at = DateTimeLocalField("End time (UTC, optional)", format="%Y-%m-%dT%H:%M", validators=[Optional()])

    def fill_choices(self) -> None:
        self.template_id.choices = [(0, "Choose a template…")] + [
            (t.id, f"{t.name} ({t.key})") for t in store.templates()
        ]
        self.audience_id.choices = [(0, "Custom filter below")] + [(a.id, a.name) for a in store.saved_audiences()]

    def to_fields(self) -> tuple[store.CampaignFields | None, dict[str, list[str]]]:
        """The parsed draft, or the problems per field (the filter's carry their location)."""
        audience_name = None
        audience_filter = None
        if self.audience_id.data:
            audience = store.saved_audience(self.audience_id.data)
            if audience is None:
                return None, {"audience_id": ["That saved audience no longer exists."]}
            audience_filter, audience_name = audience.filter, audience.name
        else:
            try:
                audience_filter = json.loads(self.audience_filter.data or "")
            except ValueError as error:
                return None, {"audience_filter": [f"Not valid JSON: {error}."]}
        fields = store.CampaignFields(
            name=self.name.data or "",
            template_id=self.template_id.data or 0,
            audience_filter=audience_filter,
            audience_name=audience_name,
            channels=list(self.channels.data or []),
            schedule=self.schedule.data,
            send_at=_utc(self.send_at.data),
            local_time=self.local_time.data,
            throttle_per_minute=self.throttle_per_minute.data,
            ends_at=_utc(self.ends_at.data),
        )
        return fields, store.validate_fields(fields)

    def load(self, campaign: Campaign) -> None:
        self.name.data = campaign.name
        self.template_id.data = campaign.template_id
        self.audience_filter.data = json.dumps(campaign.audience_filter, indent=2)
        self.channels.data = list(campaign.channels)
        self.schedule.data = campaign.schedule
        self.send_at.data = campaign.send_at.replace(tzinfo=None) if campaign.send_at else None
        self.local_time.data = campaign.local_time
        self.throttle_per_minute.data = campaign.throttle_per_minute
        self.ends_at.data = campaign.ends_at.replace(tzinfo=None) if campaign.ends_at else None


class TestSendForm(FlaskForm):
    user_ids = StringField(
        "User ids (comma-separated)", validators=[DataRequired("Give at least one user id."), Length(max=2000)]
    )


def _utc(value: datetime | None) -> datetime | None:
    """The form's naive datetime-local value, read as UTC."""
    return value.replace(tzinfo=UTC) if value else None
