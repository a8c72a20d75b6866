"""Root conftest: quiet structlog on stderr, and settings every test process (and worker it starts) shares.

``REVSTREAM_PII_KEY`` keeps tests from creating ``revstream-data/pii.key`` in the working directory.
``REVSTREAM_CONSENT_REQUIRED=false`` treats events without a consent object as an opt-out regime does,
so hand-written test events need no consent block; the consent tests set their own policy explicitly.
"""

import os

from hypothesis import settings

from streams.logs import configure

# Property tests run the same examples every time: a clean CI run must not fail on a case a previous run
# happened not to draw. Explore with `pytest --hypothesis-profile=explore` and keep what it finds as a test.
settings.register_profile("revstream", derandomize=True)
settings.register_profile("explore", max_examples=1000)
settings.load_profile("revstream")

os.environ.setdefault("REVSTREAM_PII_KEY", "revstream-test-key")
os.environ.setdefault("REVSTREAM_CONSENT_REQUIRED", "false")
configure(level="WARNING")
