import pytest

from tests.cookbook import session


@pytest.fixture(scope="session")
def cookbook() -> session.Results:
    return session.wait()
