"""A bundle's large arrays are memory-mapped from its file, not copied into each process
(sluice.npz): a server's workers share one copy of the factors, and the file stays an
ordinary `.npz` that any numpy reads."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sluice import npz
from sluice.ann import ItemIndex
from sluice.bundle import ARRAYS, MAPPED, ModelBundle
from sluice.serve.model import LoadedModel
from tests.utils.models import synthetic_bundle


def _kinds_of_arrays(seed: int) -> dict[str, np.ndarray]:
    """Arrays of assorted dtypes and odd sizes, so members start at every offset mod 64."""
    rng = np.random.default_rng(seed)
    return {
        "ints": np.arange(int(rng.integers(1, 50)), dtype=np.int64),
        "item_factors": rng.normal(size=(int(rng.integers(1, 999)), 7)).astype(np.float32),
        "ids": np.array([f"i{n}" * int(rng.integers(1, 4)) for n in range(13)]),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "bytes": rng.integers(0, 255, int(rng.integers(1, 300)), dtype=np.uint8),
        "doubles": rng.normal(size=(3, int(rng.integers(1, 40)))),
    }


def _as_plain_savez(directory: Path) -> Path:
    """The bundle at `directory` with its arrays rewritten by plain np.savez, as bundles were
    written before the aligned writer (members start anywhere)."""
    with np.load(directory / ARRAYS, allow_pickle=False) as plain:
        arrays = {k: plain[k] for k in plain.files}
    np.savez(directory / ARRAYS, **arrays)
    return directory


@pytest.mark.parametrize("seed", range(6))
def test_every_array_is_read_back_exactly_mapped_or_not(tmp_path, seed):
    arrays = _kinds_of_arrays(seed)
    path = tmp_path / "arrays.npz"
    npz.save(path, arrays)
    mapped = npz.load(path, set(arrays))
    copied = npz.load(path)
    with np.load(path, allow_pickle=False) as plain:  # any numpy reads the file
        assert sorted(plain.files) == sorted(arrays)
        for key, value in arrays.items():
            for read in (plain[key], mapped[key], copied[key]):
                assert read.dtype == value.dtype and read.shape == value.shape, key
                assert np.array_equal(read, value), key
    # every non-empty array could be mapped: its bytes start at a multiple of 64
    assert {k for k, v in mapped.items() if npz.is_mapped(v)} == set(arrays) - {"empty"}
    assert all(v.ctypes.data % npz.ALIGN == 0 for v in mapped.values() if npz.is_mapped(v))
    assert not any(npz.is_mapped(v) for v in copied.values())
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None  # CRCs intact with the padding fields


def test_a_failed_write_leaves_the_previous_file_and_nothing_else(tmp_path):
    path = tmp_path / "arrays.npz"
    npz.save(path, {"a": np.arange(5)})
    with pytest.raises(ValueError, match="pickle"):  # object arrays are refused mid-write
        npz.save(path, {"b": np.arange(3), "c": np.array([{}, None], dtype=object)})
    assert [p.name for p in tmp_path.iterdir()] == ["arrays.npz"]
    assert np.array_equal(npz.load(path, {"a"})["a"], np.arange(5))


def test_a_loaded_bundle_maps_its_factors_read_only(tmp_path):
    bundle = synthetic_bundle(items=300, users=40)
    loaded = ModelBundle.load(bundle.save(tmp_path / "b"))
    assert loaded.user_order is None  # stored for large id maps only (tests/test_ids.py)
    for name in {n for n in MAPPED if not n.startswith("attr_")} - {"user_order", "item_order"}:
        # the attribute index's arrays: tests/serve/test_attributes.py
        array = getattr(loaded, name)
        assert npz.is_mapped(array), name
        assert np.array_equal(array, getattr(bundle, name)), name
        with pytest.raises(ValueError, match="read-only"):
            array.flat[0] = array.flat[1]  # a shared model is never changed in place
    assert not npz.is_mapped(loaded.popular_scores)  # small arrays are read as before


def test_saving_over_a_mapped_bundle_leaves_its_readers_whole(tmp_path):
    """A new file replaces the mapped one by rename: arrays mapped before keep their values."""
    first, second = synthetic_bundle(items=300, users=40, seed=1), synthetic_bundle(
        items=300, users=40, seed=2)
    directory = first.save(tmp_path / "b")
    loaded = ModelBundle.load(directory)
    assert npz.is_mapped(loaded.item_factors)
    second.save(directory)
    assert np.array_equal(loaded.item_factors, first.item_factors)  # the old file's pages
    assert np.array_equal(ModelBundle.load(directory).item_factors, second.item_factors)
    assert sorted(p.name for p in directory.iterdir()) == ["arrays.npz", "catalog.jsonl",
                                                           "catalog.npz", "meta.json"]


def test_a_bundle_written_by_plain_savez_still_loads_as_copies(tmp_path):
    """Bundles written before the aligned writer: members start anywhere, read as copies."""
    bundle = synthetic_bundle(items=300, users=40)
    loaded = ModelBundle.load(_as_plain_savez(bundle.save(tmp_path / "b")))
    assert np.array_equal(loaded.item_factors, bundle.item_factors)
    assert np.array_equal(loaded.candidates, bundle.candidates)
    assert loaded.item_factors.flags.writeable  # a copy, as np.load makes it


GROWTH = """
import sys
from pathlib import Path
from sluice.bundle import ModelBundle
from sluice.serve.model import LoadedModel

def anon():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

before = anon()
model = LoadedModel(ModelBundle.load(Path(sys.argv[1])), "1", head_cache_size=0)
model.cosines(5)
print(anon() - before)
"""


SEARCH = """
import sys
from pathlib import Path
import faiss
from sluice.ann import ItemIndex
from sluice.bundle import ANN

def anon():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

path, how = Path(sys.argv[1]) / ANN, sys.argv[2]
before = anon()
index = ItemIndex.read(path) if how == "mapped" else ItemIndex(faiss.read_index(str(path)))
assert len(index.search([0.1] * index.dims, 100, 10_000)) == 100  # every list read
print(anon() - before)
"""


def _private_growth_kib(directory: Path, script: str = GROWTH, *args: str) -> int:
    """How much a fresh process's private memory grows as it runs `script` over the model
    at `directory` (by default: loads it and answers a similar-items pass over every item)."""
    done = subprocess.run([sys.executable, "-c", script, str(directory), *args], check=True,
                          capture_output=True, text=True, cwd=Path(__file__).parents[2])
    return int(done.stdout.split()[-1])


def _large_bundle(items: int, factors: int, seed: int) -> ModelBundle:
    """40 users and `items` items of random factors, no heads, no catalog."""
    rng = np.random.default_rng(seed)
    bundle = synthetic_bundle(items=300, users=40, heads=0)
    bundle.item_ids = np.array([f"i{n}" for n in range(items)])
    bundle.item_factors = rng.normal(size=(items, factors)).astype(np.float32)
    bundle.user_factors = rng.normal(size=(40, factors)).astype(np.float32)
    bundle.user_items = bundle.user_items.copy()
    bundle.user_items.resize((40, items))
    bundle.catalog = {}
    return bundle


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_loading_a_large_model_does_not_copy_its_factors(tmp_path):
    """200,000 items x 64 factors (50 MB): loading reads every factor (the bundle's checks),
    the model derives what it needs and scores every item, yet a process's private memory
    grows by at least the factors' size less than when the same bundle is read as copies
    (as from a file written by plain np.savez): the factors stay in the shared page cache."""
    items, factors = 200_000, 64
    bundle = _large_bundle(items, factors, seed=3)
    mapped = bundle.save(tmp_path / "mapped")
    copied = _as_plain_savez(bundle.save(tmp_path / "copied"))
    factor_kib = items * factors * 4 // 1024
    saved = _private_growth_kib(copied) - _private_growth_kib(mapped)
    assert saved >= 0.9 * factor_kib, f"mapping saved {saved} KiB of {factor_kib} KiB"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_index_is_mapped_from_its_file_not_copied(tmp_path):
    """100,000 items x 64 factors, the default 8-bit inverted file (6.4 MB of codes): a fresh
    process reading the bundle's ann.faiss as serving does and searching every list grows by
    at least 90% of the codes less than one reading the same file as a copy (faiss's plain
    read_index), and a loaded bundle's index answers as that copy does."""
    items, factors = 100_000, 64
    bundle = _large_bundle(items, factors, seed=4)
    bundle.ann = ItemIndex.build(bundle.item_factors, lists=256)
    directory = bundle.save(tmp_path / "b")
    codes_kib = items * factors // 1024
    saved = (_private_growth_kib(directory, SEARCH, "copied")
             - _private_growth_kib(directory, SEARCH, "mapped"))
    assert saved >= 0.9 * codes_kib, f"mapping saved {saved} KiB of {codes_kib} KiB"
    loaded = ModelBundle.load(directory).ann
    assert loaded is not None
    query = bundle.user_factors[3]
    assert np.array_equal(loaded.search(query, 100, 40), bundle.ann.search(query, 100, 40))


def test_cosines_match_normalized_factors():
    model = LoadedModel(synthetic_bundle(items=500, users=20), "1", head_cache_size=0)
    factors = model.bundle.item_factors
    unit = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    cosines = model.cosines(5)
    assert cosines[5] == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(cosines, unit @ unit[5], atol=1e-5)
    assert list(np.argsort(-cosines)[:20]) == list(np.argsort(-(unit @ unit[5]))[:20])
    model.close()
