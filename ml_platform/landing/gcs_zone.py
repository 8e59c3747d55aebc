"""A landing zone under a GCS bucket prefix, with the local zone's semantics.

A drop for partition ``D`` is ``gs://<bucket>/<prefix>/<dataset>/<D>/`` holding data
objects; it is complete when the producer has written ``_SUCCESS`` last. A tick lists
only the markers (one ``matchGlob`` listing, all pages), never every object of the
bucket; the change token is the marker's generation, which every re-drop renews.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster_gcp import GCSResource
from google.api_core.exceptions import GoogleAPICallError, NotFound
from pydantic import Field, PrivateAttr

from ml_platform.landing.zone import (
    MARKER,
    DropFile,
    DropUnreadableError,
    LandingZone,
    quarantine_reason,
)
from ml_platform.storage.gcs_object_store import join_key

if TYPE_CHECKING:
    from google.cloud import storage


class DropChangedError(DropUnreadableError):
    """A drop object was replaced between listing and reading it."""


def _transient(error: Exception) -> bool:
    """A server error, throttling or a timeout: the same call may succeed the next time."""
    from google.api_core.exceptions import ServerError

    # What the storage client's own retry treats as retryable, by status (408, 429, 5xx).
    return isinstance(error, ServerError) or getattr(error, "code", None) in (408, 429)


class GCSLandingZone(LandingZone):
    """Drops under ``gs://<bucket>/<prefix>/<dataset>/<YYYY-MM-DD>/``."""

    gcs: GCSResource
    bucket: str = Field(description="Bucket producers drop files into")
    prefix: str = Field(default="landing", description="Prefix above the dataset folders")
    quarantine_bucket: str | None = Field(
        default=None, description="Bucket for quarantined files (default: the landing bucket)"
    )
    quarantine_prefix: str = Field(default="quarantine", description="Prefix for quarantined files")

    _client: storage.Client | None = PrivateAttr(default=None)

    def _gcs(self) -> storage.Client:
        if self._client is None:
            self._client = self.gcs.get_client()
        return self._client

    @property
    def _dataset_prefix(self) -> str:
        return join_key(self.prefix, self.dataset) + "/"

    def _drop_prefix(self, partition: str) -> str:
        return f"{self._dataset_prefix}{partition}/"

    def describe(self) -> str:
        return f"gs://{self.bucket}/{self._dataset_prefix.rstrip('/')}"

    def completed_drops(self) -> dict[str, str]:
        """Partition -> marker generation, for every drop whose marker is present.

        Lists the markers only (server-side glob), following every page; the data objects
        of a drop are listed only when its token moved.
        """
        tokens: dict[str, str] = {}
        blobs = self._gcs().list_blobs(
            self.bucket,
            prefix=self._dataset_prefix,
            match_glob=f"{_glob_escape(self._dataset_prefix)}*/{MARKER}",
        )
        for blob in blobs:
            rest = blob.name[len(self._dataset_prefix) :]
            partition, _, name = rest.partition("/")
            # The glob already demands one level; the check guards servers that ignore it.
            if name != MARKER or not partition or partition.startswith((".", "_")):
                continue
            tokens[partition] = f"{blob.generation}:{blob.metageneration}"
        return tokens

    def is_complete(self, partition: str) -> bool:
        blob = self._gcs().bucket(self.bucket).get_blob(self._drop_prefix(partition) + MARKER)
        return blob is not None

    def list_files(self, partition: str) -> list[DropFile]:
        prefix = self._drop_prefix(partition)
        try:
            # delimiter="/": only the drop's own objects, not anything nested below it.
            blobs = list(self._gcs().list_blobs(self.bucket, prefix=prefix, delimiter="/"))
        except GoogleAPICallError as e:
            raise DropUnreadableError(f"gs://{self.bucket}/{prefix}: {e}", _transient(e)) from e
        files = []
        for blob in blobs:
            name = blob.name[len(prefix) :]
            if not name or name.startswith((".", "_")):
                continue
            files.append(
                DropFile(
                    partition=partition,
                    name=name,
                    uri=f"gs://{self.bucket}/{blob.name}",
                    size=int(blob.size or 0),
                    generation=str(blob.generation),
                    content_id=_content_id(blob),
                )
            )
        return sorted(files, key=lambda f: f.name)

    def read(self, file: DropFile) -> bytes:
        """The bytes of exactly the generation that was listed."""
        blob = (
            self._gcs()
            .bucket(self.bucket)
            .blob(self._drop_prefix(file.partition) + file.name, generation=int(file.generation))
        )
        try:
            data = blob.download_as_bytes()
        except NotFound:
            raise DropChangedError(
                f"{file.uri} generation {file.generation} is gone: the drop was replaced while "
                "it was being read; the next sensor tick picks up the re-drop"
            ) from None
        except GoogleAPICallError as e:
            raise DropUnreadableError(f"{file.uri}: {e}", _transient(e)) from e
        if blob.generation is not None and str(blob.generation) != file.generation:
            raise DropChangedError(
                f"{file.uri} changed from generation {file.generation} to {blob.generation} "
                "while it was being read; the next sensor tick picks up the re-drop"
            )
        return data

    def quarantine(self, file: DropFile, data: bytes, reason: str) -> str:
        bucket = self._gcs().bucket(self.quarantine_bucket or self.bucket)
        key = join_key(self.quarantine_prefix, f"{self.dataset}/{file.partition}/{file.name}")
        bucket.blob(key).upload_from_string(data, content_type="application/octet-stream")
        bucket.blob(key + ".reason.json").upload_from_string(
            quarantine_reason(file, data, reason), content_type="application/json"
        )
        return f"gs://{bucket.name}/{key}"


def _content_id(blob) -> str | None:
    """The object's checksums as GCS reports them: equal exactly when the bytes are equal.

    The generation is left out on purpose: a re-drop of identical bytes gets a new
    generation but must not count as new content (the local zone hashes bytes likewise).
    """
    if not blob.md5_hash:
        # Composite objects have no md5; crc32c alone is too weak to vouch for equality,
        # so their bytes get hashed instead.
        return None
    return f"md5={blob.md5_hash};crc32c={blob.crc32c}"


def _glob_escape(text: str) -> str:
    """Escape glob metacharacters in a literal prefix."""
    return "".join(f"\\{c}" if c in "*?[]{}\\" else c for c in text)
