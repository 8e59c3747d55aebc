"""Polars DataFrames as versioned zstd Parquet objects in a GCS bucket.

The layout, pointer protocol, partition splitting and provenance are the base class's
(``VersionedParquetIOManager``); this class only says where the objects live.
"""

from __future__ import annotations

from dagster_gcp import GCSResource
from pydantic import Field, PrivateAttr

from ml_platform.storage.gcs_object_store import GCSObjectStore
from ml_platform.storage.parquet_io_manager import VersionedParquetIOManager


class GCSParquetIOManager(VersionedParquetIOManager):
    """Versioned Parquet objects under ``gs://<gcs_bucket>/<gcs_prefix>/``."""

    gcs: GCSResource
    gcs_bucket: str = Field(description="Bucket holding the lake's Parquet objects")
    gcs_prefix: str = Field(default="lake", description="Prefix of every object key")
    upload_chunk_size_mb: int | None = Field(
        default=None,
        description=(
            "Chunk size in MiB of resumable and streamed uploads; default: the client's for "
            "resumable uploads, 8 MiB for streamed ones"
        ),
    )
    retry_deadline_seconds: float = Field(
        default=120.0, description="How long uploads and downloads retry transient errors"
    )

    _store: GCSObjectStore | None = PrivateAttr(default=None)

    def store(self) -> GCSObjectStore:
        # One client per IO manager instance: creating a client costs an auth round trip.
        if self._store is None:
            chunk = self.upload_chunk_size_mb * 1024 * 1024 if self.upload_chunk_size_mb else None
            self._store = GCSObjectStore(
                self.gcs.get_client(),
                self.gcs_bucket,
                self.gcs_prefix,
                chunk_size=chunk,
                retry_deadline=self.retry_deadline_seconds,
            )
        return self._store
