"""The spool of a step's lazy inputs: one folder, however many threads fill it, removed whole."""

from concurrent.futures import ThreadPoolExecutor

from ml_platform.storage.spool import Spool


def test_files_asked_for_at_once_share_one_folder_removed_on_close():
    """Eight download threads made up to eight folders; close removed only the last one."""
    for _ in range(20):
        spool = Spool()
        with ThreadPoolExecutor(max_workers=8) as pool:
            paths = list(pool.map(spool.new_file, [".parquet"] * 32))
        folders = {p.parent for p in paths}
        assert len(folders) == 1
        (folder,) = folders
        for path in paths:
            path.write_bytes(b"x")
        spool.close()
        assert not folder.exists()
