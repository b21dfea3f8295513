"""Integrations' credentials as the state table keeps them: sealed, never plain (`connector.secrets`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SealedCredentials(BaseModel):
    """One integration's `Credentials` document under AES-256-GCM with the stack's data key (`CREDENTIALS`)."""

    model_config = ConfigDict(extra="ignore")

    ciphertext: str  # base64 of nonce (12 bytes) + ciphertext + tag; the additional data names the integration
    data_key: int  # the version of the data key that sealed it
    sealed_at: str  # UTC ISO


class WrappedDataKey(BaseModel):
    """The stack's data key as KMS returned it, encrypted under the stack's key (`CREDKEY` / `V#<version>`)."""

    model_config = ConfigDict(extra="ignore")

    ciphertext: str  # base64 of KMS GenerateDataKey's CiphertextBlob
    key_id: str  # the KMS key ARN that wraps it
    created_at: str  # UTC ISO
