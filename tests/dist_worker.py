"""Run by torchrun in test_distributed.py: train, then write this rank's parameters for the test to compare."""

import sys
from pathlib import Path

import torch

from translate.config import load_config
from translate.engine.trainer import Trainer

out = Path(sys.argv[1])
resume = [a.split("=", 1)[1] for a in sys.argv[3:] if a.startswith("--resume-from=")]
overrides = [a for a in sys.argv[3:] if not a.startswith("--resume-from=")]
trainer = Trainer(load_config(sys.argv[2], overrides), resume=resume[0] if resume else False)
trainer.fit()
rank = trainer.accelerator.process_index
params = {f"{n}.{k}": v.detach().cpu() for n, net in trainer.plain.items() for k, v in net.state_dict().items()}
torch.save({"params": params, "num_processes": trainer.accelerator.num_processes}, out / f"rank{rank}.pt")
