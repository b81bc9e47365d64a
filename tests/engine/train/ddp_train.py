"""Run by test_distributed under torchrun: a tiny training on every rank, then each rank's weights
and how often it saved and reported, written to the folder given as the only argument."""

import json
import sys
from pathlib import Path

import safetensors.torch

sys.path.insert(0, str(Path(__file__).parent))

from test_loop import TINY, faceset  # noqa: E402

from engine.train import distributed, trainer as trainer_module  # noqa: E402
from engine.train.loop import train_pair  # noqa: E402
from engine.train.settings import TrainSettings  # noqa: E402

out = Path(sys.argv[1])
seen, saves = [], []
original_init, original_save = trainer_module.Trainer.__init__, trainer_module.Trainer.save


def init(self, *a, **kw):
    original_init(self, *a, **kw)
    seen.append(self)


def save(self, *a, **kw):
    saves.append(1)
    return original_save(self, *a, **kw)


trainer_module.Trainer.__init__, trainer_module.Trainer.save = init, save
settings = TrainSettings.from_dict({**TINY, "iterations": 4, "device": "cpu", "precision": "fp32", "threads": 1,
                                    "phase": "gan", "gan_dims": 4, "true_face_power": 0.01})
reports = []
result = train_pair(faceset(6, (90, 140, 200), 1), faceset(6, (150, 170, 120), 2), out / "model", settings,
                    lambda *a: reports.append(a[1]), lambda: False)
rank = distributed.rank()
trainer = seen[0]
weights = {k: v.detach().contiguous() for k, v in trainer.model.state_dict().items()}
for d in trainer.discriminators():
    weights.update({f"d.{type(d).__name__}.{k}": v.detach().contiguous() for k, v in d.state_dict().items()})
safetensors.torch.save_file(weights, str(out / f"rank{rank}.safetensors"))
(out / f"rank{rank}.json").write_text(json.dumps({"world": distributed.world_size(), "saves": len(saves),
                                                  "reports": len(reports), "iterations": result["iterations"]}))
distributed.teardown()
