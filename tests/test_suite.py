"""The suite itself: the test folders have no __init__.py, so pytest imports each file by its base name, and two
files of one name stop the whole run at collection ("import file mismatch")."""
from collections import Counter
from pathlib import Path


def test_no_two_test_files_share_a_name():
    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert [n for n, k in names.items() if k > 1] == []
