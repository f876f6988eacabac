"""The JSON API: FastAPI routes over :mod:`crmail.storage.crm`."""

from crmail.api.app import create_app

__all__ = ["create_app"]
