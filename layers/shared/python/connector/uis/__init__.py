"""UIS (CoMagic) Data API v2.0: the JSON-RPC client used by the deal uploader, the text worker and admin."""

from connector.uis.client import MAX_UPLOAD_ROWS, UisClient

__all__ = ["MAX_UPLOAD_ROWS", "UisClient"]
