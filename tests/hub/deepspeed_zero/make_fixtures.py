"""Write the DeepSpeed fixtures of test_deepspeed.py (not a test; needs the ``deepspeed`` package, CPU is enough).

Run once per stage with two ranks, from the repository root::

    for stage in 2 3; do for rank in 0 1; do
      MASTER_ADDR=127.0.0.1 MASTER_PORT=2955$stage RANK=$rank WORLD_SIZE=2 LOCAL_RANK=$rank LOCAL_SIZE=2 \
        python tests/hub/deepspeed_zero/make_fixtures.py $stage tests/hub/deepspeed_zero/zero$stage &
    done; wait; done

then delete the ``zero_to_*.py`` scripts DeepSpeed copies next to the shards and store DeepSpeed's own
consolidation as ``reference.safetensors`` (``write_reference`` below, rank-less: ``python make_fixtures.py ref``).
"""

from __future__ import annotations

import sys

import torch


def write_checkpoint(stage: int, out: str) -> None:
    import deepspeed

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 3))
    net[0].weight.requires_grad_(False)  # a frozen parameter
    config = {
        "train_batch_size": 4,
        "zero_optimization": {"stage": stage},
        "optimizer": {"type": "Adam", "params": {"lr": 1e-2, "torch_adam": True}},
    }
    trainable = [p for p in net.parameters() if p.requires_grad]
    engine, _, _, _ = deepspeed.initialize(model=net, model_parameters=trainable, config=config)
    engine.backward(engine(torch.randn(2, 3)).sum())
    engine.step()
    engine.save_checkpoint(out)


def write_reference() -> None:
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from safetensors.torch import save_file

    for stage in (2, 3):
        folder = f"tests/hub/deepspeed_zero/zero{stage}"
        state = get_fp32_state_dict_from_zero_checkpoint(folder)
        save_file({k: v.contiguous().float() for k, v in state.items()}, f"{folder}/reference.safetensors")


if __name__ == "__main__":
    if sys.argv[1] == "ref":
        write_reference()
    else:
        write_checkpoint(int(sys.argv[1]), sys.argv[2])
