"""The golden vectors of Raccoon's own Go code, kept in tests/data, are whole."""

from tests.vectors import VECTORS, VECTORS_PATH


def test_every_vector_section_is_present():
    assert len(VECTORS["encode"]) == 10
    assert len(VECTORS["decode_json_request"]) == 19


def test_the_vectors_live_in_the_repository():
    root = VECTORS_PATH.parents[2]
    assert VECTORS_PATH.is_relative_to(root / "tests" / "data")
