"""Suite-wide settings: one torch thread (small models are fastest and reproducible that way on 2 cores)."""

import torch

torch.set_num_threads(1)
