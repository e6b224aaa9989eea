"""The SSE stream endpoint (built by the inbox issue)."""
from flask import Blueprint

bp = Blueprint("realtime", __name__)
