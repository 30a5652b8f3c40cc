"""The project's copy of the golden vectors must match the shared original."""

import pytest

from tests.vectors import SHARED_VECTORS_PATH, VECTORS_PATH


@pytest.mark.skipif(not SHARED_VECTORS_PATH.exists(), reason="no shared/ checkout beside the repo")
def test_copy_matches_shared_vectors():
    assert VECTORS_PATH.read_bytes() == SHARED_VECTORS_PATH.read_bytes(), (
        f"{VECTORS_PATH} differs from {SHARED_VECTORS_PATH}; copy the shared file over"
    )


def test_every_vector_section_is_present():
    from tests.vectors import VECTORS

    assert len(VECTORS["encode"]) == 10
    assert len(VECTORS["decode_json_request"]) == 19
