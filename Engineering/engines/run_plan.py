"""The run plan of each ``--run_mode``: which of fit, validation and test run, on which splits, with which weights.

====  =====================  ==========================  =====
mode  fit                    validation during fit       test
====  =====================  ==========================  =====
0     train ∪ val            no                          no
1     train                  every epoch                 no
2     no                     -                           yes
3     train ∪ val            no                          yes (in-memory weights)
4     train                  every epoch                 yes (best checkpoint)
====  =====================  ==========================  =====
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from Engineering.errors import ConfigError


class TestWeights(Enum):
    """Which weights the test stage uses."""

    NONE = "no test"
    GIVEN = "the weights the command line names: --resume/--load_model_4test, --preweights_path or --load_hf"
    END_OF_FIT = "the weights in memory at the end of fit"
    BEST = "the best checkpoint of fit, or the weights in memory when there is none"


@dataclass(frozen=True)
class RunPlan:
    """What one run mode does."""

    fit: bool
    # True: fit on train and validate on val every epoch; False: fit on train ∪ val (no val split)
    validate: bool
    test: TestWeights

    @property
    def merge_train_val(self) -> bool:
        return not self.validate


RUN_PLANS: dict[int, RunPlan] = {
    0: RunPlan(fit=True, validate=False, test=TestWeights.NONE),
    1: RunPlan(fit=True, validate=True, test=TestWeights.NONE),
    2: RunPlan(fit=False, validate=False, test=TestWeights.GIVEN),
    3: RunPlan(fit=True, validate=False, test=TestWeights.END_OF_FIT),
    4: RunPlan(fit=True, validate=True, test=TestWeights.BEST),
}


def plan_of(run_mode: int) -> RunPlan:
    """The plan of ``--run_mode``; an unknown mode is a configuration error."""
    if run_mode not in RUN_PLANS:
        raise ConfigError(f"--run_mode {run_mode} is unknown; valid: {', '.join(map(str, RUN_PLANS))}")
    return RUN_PLANS[run_mode]
