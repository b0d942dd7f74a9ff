"""Object stores for intermediate tensors: the local directory store (and S3 against moto)."""
import pytest

from serving.partition.store import LocalDirObjectStore


def test_local_store_put_get_list_delete(tmp_path):
    s = LocalDirObjectStore(str(tmp_path))
    s.put("p/r1/hop0-a0.npy", b"abc")
    s.put("p/r1/hop1-a0.npy", b"def")
    s.put("p/r2/hop0-a0.npy", b"ghi")
    assert s.get("p/r1/hop0-a0.npy") == b"abc"
    assert s.list_keys("p/r1/") == ["p/r1/hop0-a0.npy", "p/r1/hop1-a0.npy"]
    assert s.delete_prefix("p/r1/") == 2
    assert s.list_keys() == ["p/r2/hop0-a0.npy"]
    with pytest.raises(KeyError):
        s.get("p/r1/hop0-a0.npy")
    assert not (tmp_path / "p" / "r1").exists()  # empty directories go too


def test_local_store_rejects_keys_outside_root(tmp_path):
    s = LocalDirObjectStore(str(tmp_path / "store"))
    with pytest.raises(ValueError):
        s.put("../escape", b"x")
