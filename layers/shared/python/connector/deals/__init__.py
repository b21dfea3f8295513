"""Deals (AlfaCRM → UIS): pure rules, funnel sync, the deal worker and uploader use cases, views."""
