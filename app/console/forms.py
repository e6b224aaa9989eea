"""Console forms. Every one is a FlaskForm, so CSRFProtect checks its token."""

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField
from wtforms.validators import DataRequired, Length


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired("Enter your email."), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired("Enter your password.")])
    # Where to go after signing in; checked by ``safe_next_path`` before use.
    next = HiddenField()
