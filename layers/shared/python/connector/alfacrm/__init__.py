"""AlfaCRM v2api: the client (`client.py`) and the coerced record models (`models.py`)."""
