"""The contracts between the connector's pieces, at the bottom of the import graph (nothing here does I/O).

`messages` the two queue messages · `deals` customer snapshots, deal drafts and records, the names UIS sees ·
`texts` chat and request facts, their progress items, customer links, lost-chat task claims · `sync` UIS sync
state, AlfaCRM log marks, the poller's watermark · `parked` parked items · `lookups` cached look-ups ·
`credentials` an integration's KMS-sealed credentials · `raw` the one spelling of untyped JSON.
"""
