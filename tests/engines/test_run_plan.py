"""The task table and the run plans: what --taskID and --run_mode select."""

import pytest

from Engineering.engines.run_plan import RUN_PLANS, TestWeights, plan_of
from Engineering.engines.tasks import TASKS, task_of, task_of_script
from Engineering.errors import ConfigError


def test_run_plans_follow_the_documented_table():
    # mode: (fit, validate every epoch on a separate val split, test weights)
    expected = {
        0: (True, False, TestWeights.NONE),
        1: (True, True, TestWeights.NONE),
        2: (False, False, TestWeights.GIVEN),
        3: (True, False, TestWeights.END_OF_FIT),
        4: (True, True, TestWeights.BEST),
    }
    assert {mode: (p.fit, p.validate, p.test) for mode, p in RUN_PLANS.items()} == expected
    assert [mode for mode, p in RUN_PLANS.items() if p.merge_train_val] == [0, 2, 3]


def test_unknown_run_mode_and_task_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"--run_mode 7 is unknown; valid: 0, 1, 2, 3, 4"):
        plan_of(7)
    with pytest.raises(ConfigError, match=r"--taskID 5 is unknown; valid: 0 \(recon\), 1 \(DiffAE\)"):
        task_of(5)


def test_each_executor_runs_its_own_task():
    assert {t.script: t.task_id for t in TASKS.values()} == {"recon": 0, "diffae": 1, "latentcls": 2}
    assert task_of_script("diffae").executor == "Executors/main_diffAE.py"
    assert task_of(1).fixed == {"auto_optim": True}
