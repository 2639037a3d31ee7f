"""Suite-wide settings: one torch thread per test process (pytest-xdist runs one process per core).

Most tests run many small tensor operations, where thread hand-offs cost more than they save;
parallelism comes from running test files in separate processes instead.
"""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
