"""S3 object store for the intermediate tensors of partitioned models (boto3 plumbing from
aws.py, the only module that imports boto3)."""
from __future__ import annotations
from procurement.providers.aws import _error_code, _boto3, _client


class S3ObjectStore:
    """The `ObjectStore` of serving/partition/store.py on S3: intermediate tensors of a
    partitioned model that do not fit an invocation payload. Keys live under `key_prefix` in
    one bucket; `delete_prefix` lists and deletes in pages of 1,000 (the S3 batch limit).
    Reads after a write are consistent (S3 is strongly read-after-write consistent)."""

    def __init__(self, bucket: str, region: str = "us-east-1", key_prefix: str = "", session=None,
                 endpoint_url: str | None = None, create_bucket: bool = False):
        self.bucket, self.key_prefix = bucket, key_prefix
        self.s3 = _client(session or _boto3().session.Session(), "s3", region, endpoint_url)
        if create_bucket:
            kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            try:
                self.s3.create_bucket(Bucket=bucket, **kwargs)
            except Exception as e:
                if _error_code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def put(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self.key_prefix + key, Body=data)

    def get(self, key: str) -> bytes:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self.key_prefix + key)["Body"].read()
        except Exception as e:
            if _error_code(e) in ("NoSuchKey", "404"):
                raise KeyError(key) from None
            raise

    def list_keys(self, prefix: str = "") -> list[str]:
        keys = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.key_prefix + prefix)
        for page in pages:
            keys.extend(obj["Key"][len(self.key_prefix):] for obj in page.get("Contents", []))
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self.key_prefix + k} for k in keys[i:i + 1000]]
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)
