import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small SVDs and tiny UNet passes run faster on one intra-op thread; with two on a
    busy 2-core machine, OpenMP's waiting turns a 0.05 s SVD into a second. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
