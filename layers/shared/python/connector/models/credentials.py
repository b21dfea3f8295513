"""An integration's credentials as the state table keeps them (`CREDENTIALS`): sealed by KMS, never plain."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SealedCredentials(BaseModel):
    """KMS ciphertext of the `Credentials` document, bound to its integration by the encryption context."""

    model_config = ConfigDict(extra="ignore")

    ciphertext: str  # base64 of KMS Encrypt's CiphertextBlob
    key_id: str  # the key ARN KMS answered with (which key sealed it, for audits and rotation)
    sealed_at: str  # UTC ISO
