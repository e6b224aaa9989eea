"""VAPID keys for web push: generated once, kept in the instance folder, public half served to browsers."""
from __future__ import annotations

import base64
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import current_app
from flask.cli import with_appcontext

PRIVATE_FILE = "vapid_private.pem"
PUBLIC_FILE = "vapid_public.pem"


def key_paths(instance_path: str | Path) -> tuple[Path, Path]:
    folder = Path(instance_path)
    return folder / PRIVATE_FILE, folder / PUBLIC_FILE


def ensure_vapid_keys(instance_path: str | Path) -> tuple[Path, Path]:
    """Create the P-256 key pair on first use; later calls return the same files."""
    private_path, public_path = key_paths(instance_path)
    if private_path.exists() and public_path.exists():
        return private_path, public_path
    private_key = ec.generate_private_key(ec.SECP256R1())
    private_path.write_bytes(private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    private_path.chmod(0o600)
    public_path.write_bytes(private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path


def application_server_key(instance_path: str | Path) -> str:
    """The public key as browsers want it for ``pushManager.subscribe``: base64url of the uncompressed point."""
    _private, public_path = ensure_vapid_keys(instance_path)
    public_key = serialization.load_pem_public_key(public_path.read_bytes())
    raw = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@click.command("vapid-keys")
@with_appcontext
def vapid_keys_command() -> None:
    """Create the VAPID key pair if missing and print the public key."""
    click.echo(application_server_key(current_app.instance_path))
