"""Prefect's block standards (description, documentation URL, field descriptions, code
example, square logo) for every dragonflow block, as prefect-aws checks its blocks."""

from __future__ import annotations

import io

import pytest
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect.testing.standard_test_suites import blocks as standard_suite

from blocks import BLOCKS
from blocks.meta import LOGO_URL, logo_png


@pytest.fixture(autouse=True)
def logo_from_the_checkout(monkeypatch):
    """The logo is checked from the bytes the API serves at its URL (tests/test_api_surface
    fetches it from the running API)."""

    def urlopen(url):
        assert url == LOGO_URL
        return io.BytesIO(logo_png())

    monkeypatch.setattr(standard_suite, "urlopen", urlopen)


@pytest.mark.parametrize("block", BLOCKS, indirect=True)
class TestAllBlocksAdhereToStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, request):
        return request.param
