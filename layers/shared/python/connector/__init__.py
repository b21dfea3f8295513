"""Shared package of the AlfaCRM ↔ UIS connector (deployed as a Lambda layer)."""
