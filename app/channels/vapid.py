"""VAPID keys for web push: generated once, kept in the instance folder, public half served to browsers."""

from __future__ import annotations

from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from flask import current_app
from flask.cli import with_appcontext
from webpush.vapid import VAPID

PRIVATE_FILE = "vapid_private.pem"
PUBLIC_FILE = "vapid_public.pem"


def key_paths(instance_path: str | Path) -> tuple[Path, Path]:
    folder = Path(instance_path)
    return folder / PRIVATE_FILE, folder / PUBLIC_FILE


def ensure_vapid_keys(instance_path: str | Path) -> tuple[Path, Path]:
    """Create the P-256 key pair (webpush's generator, PEM) on first use; later calls return the same files."""
    private_path, public_path = key_paths(instance_path)
    if private_path.exists() and public_path.exists():
        return private_path, public_path
    private_pem, public_pem, _server_key = VAPID.generate_keys()
    private_path.write_bytes(private_pem)
    private_path.chmod(0o600)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def application_server_key(instance_path: str | Path) -> str:
    """The public key as browsers want it for ``pushManager.subscribe``: base64url of the uncompressed point."""
    _private, public_path = ensure_vapid_keys(instance_path)
    return VAPID.get_application_server_key(serialization.load_pem_public_key(public_path.read_bytes()))


@click.command("vapid-keys")
@with_appcontext
def vapid_keys_command() -> None:
    """Create the VAPID key pair if missing and print the public key."""
    click.echo(application_server_key(current_app.instance_path))
