"""The typed run configuration: every option has one home and one default, defaults agree everywhere, and the
``hparams``/``config`` pair of checkpoints written before it still rebuilds an engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from Engineering.configuration import OPTIONS, SCRIPTS, RunConfig, load_yaml_config, option_defaults, resolve
from Engineering.configuration.sections import SECTIONS
from Engineering.errors import ConfigError

YAML = Path("Configs/config_v1.yaml")


def test_every_option_lives_in_exactly_one_section() -> None:
    homes = {opt.dest: [name for name, model in SECTIONS.items() if opt.dest in model.flat_fields()] for opt in OPTIONS}
    assert {dest: len(found) for dest, found in homes.items() if len(found) != 1} == {}


def test_options_take_their_default_from_the_option_table_only() -> None:
    for model in SECTIONS.values():
        for name, info in model.model_fields.items():
            if name in {opt.dest for opt in OPTIONS}:
                assert info.is_required(), f"{model.__name__}.{name} restates the option table's default"


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_default_is_valid_and_kept(repo_root, script: str) -> None:
    cfg = RunConfig.build(script, {}, load_yaml_config(repo_root / YAML))
    for dest, default in option_defaults(script).items():
        section = next(getattr(cfg, n) for n, m in SECTIONS.items() if dest in m.flat_fields())
        assert getattr(section, dest) == default or (dest == "nbatch_prefetch" and default is None), dest


def test_data_defaults_agree_with_the_cli(repo_root, monkeypatch) -> None:
    """The data module gets the CLI's p_augment 1 and n_save_recon_subs 13, and each script's input shape."""
    from Engineering.data import H5DataModule

    monkeypatch.chdir(repo_root)
    recon = resolve("recon", ["--datajson_path", "Configs/demo/dataNpath_demo.json", "--json§foldCSV", "0"]).cfg
    assert recon is not None and recon.data.shape == (56, 128, 128)
    dm = H5DataModule.from_config(recon, merge_train_val=False)
    assert dm.transform_options.p_augment == 1 and dm.n_save_recon_subs == 13
    diffae = resolve("diffae", []).cfg
    assert diffae is not None and diffae.data.shape == (50, 128, 128)


def test_checkpoint_hparams_of_earlier_runs_rebuild_the_engine() -> None:
    """The flat ``hparams`` stored before the typed configuration (extra keys, ints for floats) still load."""
    from Engineering.engines.recon import ReconEngine

    old = {
        "taskID": 0,
        "modelID": -1,
        "lr": 1,
        "n_save_recon_subs": 13,
        "run_name": "demo_x",
        "datajson_path": "Configs/demo/dataNpath_demo.json",
        "description": "a free data-JSON key",
        "DS_sanity_filters": {"dim1": 6},
    }
    engine = ReconEngine(old, {"seed": 3, "training": {"im_log_freq": -1}})
    assert engine.cfg.training.lr == 1.0 and engine.cfg.run.seed == 3
    assert engine.cfg.extras == {"description": "a free data-JSON key"}
    stored = engine.hparams["hparams"]
    assert set(stored) == set(old) and stored["DS_sanity_filters"] == {"dim1": 6}
    again = ReconEngine(dict(stored), dict(engine.hparams["config"]))
    assert again.cfg == engine.cfg
    torch.testing.assert_close(again.state_dict()["net.scale"], engine.state_dict()["net.scale"])


def test_updated_checks_again() -> None:
    cfg = RunConfig.build("recon", {}, {})
    assert cfg.updated(batch_size=4).run.batch_size == 4 and cfg.run.batch_size == 32
    with pytest.raises(ConfigError, match=r"--batch_size 0: expected greater than or equal to 1"):
        cfg.updated(batch_size=0)


def test_error_names_the_file_of_the_value(repo_root, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(repo_root)
    bad = tmp_path / "c.yaml"
    bad.write_text(YAML.read_text().replace("complex_mode: 1", "complex_mode: 7"))
    with pytest.raises(ConfigError, match=rf"YAML config {bad}: key data.complex_mode = 7: expected one of 0, 1"):
        resolve("recon", ["--configyml_path", str(bad)])
    with pytest.raises(ConfigError, match=r"--data§complex_mode 7: expected one of"):
        resolve("recon", ["--data§complex_mode", "7"])
