import os

import torch

# Small tensors on a busy 2-core machine run many times faster on one thread, and results are
# then independent of the thread count.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
