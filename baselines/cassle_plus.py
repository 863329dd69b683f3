"""CaSSLe+ (PEERS.md section 1; REFERENCE.md section 9, `*_cassle_ering`): CaSSLe plus experience replay,
without mixup. Each current batch of B pairs is concatenated with `cfg.replay_bs` replayed pairs and CaSSLe
runs on the whole concatenation: the SSL loss and the distillation both cover [current B; replay R].

Composed by calling a CaSSLe instance (which owns the temporal projector g) on the concatenated step, the same
way ER calls Finetune. Terms: {"ssl"} on task 0, {"ssl", "distill"} later (no separate replay term: replayed
samples are part of both losses). With memory = 0 it reduces to CaSSLe.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from baselines.cassle import CaSSLe
from baselines.er import require_ssl_objective, with_replay
from cromo_bench.config import RunConfig
from cromo_bench.method import Method, Step
from cromo_bench.objectives.base import Objective


class CaSSLePlus(Method):
    name: ClassVar[str] = "cassle_plus"
    needs_old_model: ClassVar[bool] = True
    needs_buffer: ClassVar[bool] = True

    def __init__(self, cfg: RunConfig, objective: Objective) -> None:
        super().__init__(cfg, objective)
        require_ssl_objective(self.name, objective)
        self.cassle = CaSSLe(cfg, objective)

    def loss_terms(self, step: Step) -> dict[str, Tensor]:
        return self.cassle.loss_terms(with_replay(step, self.cfg.replay_bs))
