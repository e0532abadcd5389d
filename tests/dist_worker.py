"""Run by torchrun in test_distributed.py: train, then write this rank's parameters for the test to compare (or,
when a signal stopped training, the step it stopped at)."""

import json
import os
import sys
from pathlib import Path

import torch

from translate.config import load_config
from translate.engine.trainer import INTERRUPTED_EXIT_CODE, Trainer, TrainingInterrupted

out = Path(sys.argv[1])
resume = [a.split("=", 1)[1] for a in sys.argv[3:] if a.startswith("--resume-from=")]
overrides = [a for a in sys.argv[3:] if not a.startswith("--resume-from=")]
trainer = Trainer(load_config(sys.argv[2], overrides), resume=resume[0] if resume else False)
rank = trainer.accelerator.process_index
(out / f"pid{rank}").write_text(str(os.getpid()))
try:
    trainer.fit()
except TrainingInterrupted:
    (out / f"stopped{rank}.json").write_text(json.dumps({"step": trainer.state.step}))
    sys.exit(INTERRUPTED_EXIT_CODE)
params = {f"{n}.{k}": v.detach().cpu() for n, net in trainer.nets.items() for k, v in net.state_dict().items()}
torch.save({"params": params, "num_processes": trainer.accelerator.num_processes,
            "recipe_state": trainer.recipe.state_dict()}, out / f"rank{rank}.pt")
