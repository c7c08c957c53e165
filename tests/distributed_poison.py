"""Launched by tests/test_train_distributed.py under torchrun: ``python -m train`` whose reverse-KL
loss becomes NaN on rank POISON_RANK at step POISON_STEP (a fault of one rank only)."""
import os
import sys

import torch

import train
from samplers import training

calls = 0
reverse_kl_loss = training.ReverseKL.loss


def poisoned(self, flow, batch_size, generator, data=None):
    global calls
    calls += 1
    loss, log_w = reverse_kl_loss(self, flow, batch_size, generator, data)
    if os.environ["RANK"] == os.environ["POISON_RANK"] and calls == int(os.environ["POISON_STEP"]):
        loss = loss * torch.tensor(float("nan"))
    return loss, log_w


training.ReverseKL.loss = poisoned
sys.exit(train.main(sys.argv[1:]))
