"""The typed config: one root per command, defaults, YAML files, overrides, and errors that name
the key (unknown, of another command, renamed, wrong type, out of range)."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from vjepa.config import (
    ROOTS,
    ConfigError,
    PretrainRoot,
    ProbeRoot,
    from_dict,
    load_config,
    save_config,
    to_dict,
)

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_the_paper_recipe():
    cfg = load_config()
    assert isinstance(cfg, PretrainRoot)
    assert cfg.model.patch_size == 16 and cfg.model.tubelet_size == 2
    assert [b.num_blocks for b in cfg.mask.blocks] == [8, 2]
    assert [b.spatial_scale for b in cfg.mask.blocks] == [(0.15, 0.15), (0.7, 0.7)]
    assert cfg.optim.ema == (0.998, 1.0)


COMMAND_OF_FOLDER = {
    "pretrain": "pretrain",
    "probe": "probe",
    "surprise": "surprise",
    "plan": "plan",
    "world": "world train",
    "finetune": "finetune",
}
VJEPA_CONFIGS = sorted(
    str(p) for d in COMMAND_OF_FOLDER for p in (REPO / "configs" / d).glob("*.yaml")
)
LAUNCHERS = sorted(str(p) for p in (REPO / "configs" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", VJEPA_CONFIGS)
def test_every_config_file_loads(path):
    name = Path(path).parent.name
    command = COMMAND_OF_FOLDER[name]
    if name == "world" and "plan" in Path(path).stem:  # the world demo's planning stage
        command = "plan"
    cfg = load_config(path, command=command)
    assert isinstance(cfg, ROOTS[command])


@pytest.mark.parametrize("path", LAUNCHERS)
def test_every_accelerate_launcher_loads(path):
    from accelerate.commands.config.config_args import ClusterConfig

    launcher = ClusterConfig.from_yaml_file(path)
    assert launcher.num_processes >= 1 and launcher.num_machines >= 1
    assert launcher.num_processes % launcher.num_machines == 0


def test_config_folders_are_not_empty():
    assert len(VJEPA_CONFIGS) >= 20 and len(LAUNCHERS) >= 4


def test_vitl16_recipe():
    cfg = load_config(REPO / "configs/pretrain/vitl16_k400.yaml")
    assert (cfg.model.name, cfg.data.frames_per_clip, cfg.data.crop_size) == ("large", 16, 224)
    assert cfg.data.frame_step == 4 and cfg.data.batch_size == 24
    assert (cfg.optim.weight_decay, cfg.optim.final_weight_decay) == (0.04, 0.4)
    assert cfg.optim.ema == (0.998, 1.0)
    assert [(b.num_blocks, b.spatial_scale[0]) for b in cfg.mask.blocks] == [(8, 0.15), (2, 0.7)]


def test_overrides_types_and_nesting(tmp_path):
    cfg = load_config(
        REPO / "configs/pretrain/demo_cpu.yaml",
        ["optim.lr=3e-4", "data.batch_size=4", "run.dir=" + str(tmp_path), "data.fps=null"],
    )
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.data.batch_size == 4
    assert cfg.run.dir == str(tmp_path)
    assert cfg.data.fps is None
    # untouched keys keep the file's values
    assert cfg.model.name == "tiny_cpu"
    cfg = load_config(None, ["mask.blocks=[{num_blocks: 3, spatial_scale: [0.2, 0.3]}]"])
    assert len(cfg.mask.blocks) == 1 and cfg.mask.blocks[0].spatial_scale == (0.2, 0.3)
    assert cfg.mask.blocks[0].aspect_ratio == (0.75, 1.5)  # default of the nested dataclass


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("optim.lrr=1", "optim.lrr; did you mean optim.lr?"),
        ("optimm.lr=1", "unknown config key optimm; did you mean optim?"),
        ("data.batch_size=abc", "data.batch_size must be an integer"),
        ("data.batch_size=2.5", "data.batch_size must be an integer"),
        ("optim.lr=-1", "optim.lr must be > 0"),
        ("model.pos_embed=learned", "model.pos_embed must be one of"),
        ("data.hflip=3", "data.hflip must be true or false"),
        ("optim.betas=[0.9]", "optim.betas must have 2 items"),
        (
            "data.frames_per_clip=7",
            "data.frames_per_clip (7) must be a multiple of model.tubelet_size",
        ),
        (
            "mask.blocks=[{num_blockz: 3}]",
            "mask.blocks[0].num_blockz; did you mean mask.blocks[0].num_blocks?",
        ),
        ("noequals", "not of the form key.sub=value"),
        ("plan.horizon=5", "plan.horizon: the plan section is not used by `vjepa pretrain`"),
        ("probe.kind=knn", "probe.kind: the probe section is not used by `vjepa pretrain`"),
        ("train.sigreg=0.1", "train.sigreg was renamed objective.sigreg"),
        ("objective.sigreg=-1", "objective.sigreg must be >= 0"),
        ("objective.sigreg_slicez=3", "did you mean objective.sigreg_slices?"),
        ("world.window=1", "the world section is not used by `vjepa pretrain`"),
    ],
)
def test_bad_values_name_the_key(override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override], command="pretrain")
    assert needle in str(err.value)


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_stepz: 3\n")
    with pytest.raises(ConfigError, match=r"train.max_stepz; did you mean train.max_steps"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")


def test_round_trip(tmp_path):
    cfg = load_config(REPO / "configs/pretrain/vitl16_k400.yaml", ["optim.lr=1e-4"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert from_dict(to_dict(cfg)) == cfg


def test_config_reference_doc_is_up_to_date():
    # docs/config.md is generated from the dataclasses; a new or changed key must regenerate it
    run = subprocess.run(
        [sys.executable, str(REPO / "tools/config_reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "| `optim.lr` | `float` | `0.000625` |" in (REPO / "docs/config.md").read_text()


@pytest.mark.parametrize(
    ("command", "override", "needle"),
    [
        ("probe", "probe.backbone_heads=3", "probe.backbone_heads was renamed probe.num_heads"),
        ("surprise", "surprise.enc_heads=3", "surprise.enc_heads was renamed surprise.num_heads"),
        ("surprise", "surprise.pred_heads=3", "renamed surprise.pred_num_heads"),
        ("world train", "train.loss_exp=2", "train.loss_exp was renamed world.loss_exp"),
        ("world train", "objective.sigreg=1", "objective section is not used by `vjepa world"),
        ("plan", "data.batch_size=2", "data.batch_size: the data section is not used"),
        ("probe", "mask.ratio=0.5", "mask.ratio: the mask section is not used by `vjepa probe`"),
        ("plan", "plan.elites=300", "plan.elites (300) must be <= plan.samples (256)"),
        ("world train", "world.rollout_steps=4", "world.rollout_steps (4) must be <="),
        ("extract", "run.dir=x", "run.dir: the run section is not used by `vjepa extract`"),
        ("probe", "probe.lr_grid=[0.1, 0]", "probe.lr_grid values must be > 0"),
    ],
)
def test_each_command_reads_only_its_sections(command, override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override], command=command)
    assert needle in str(err.value)


def test_an_old_key_in_a_file_names_the_new_one(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("train:\n  max_steps: 3\n  sigreg: 0.05\n")
    with pytest.raises(ConfigError, match="train.sigreg was renamed objective.sigreg"):
        load_config(old)
    new = tmp_path / "new.yaml"
    new.write_text("train:\n  max_steps: 3\nobjective:\n  sigreg: 0.05\n")
    cfg = load_config(new)
    assert (cfg.train.max_steps, cfg.objective.sigreg) == (3, 0.05)


def test_a_stored_config_of_an_older_version_is_upgraded():
    # Run folders and checkpoints hold every section of the one old Config, objective in train.
    old = to_dict(PretrainRoot())
    objective = old.pop("objective")
    for later in ("teacher", "teacher_input", "rollout", "centre_prob"):  # added after the move
        objective.pop(later)
    old["train"].update(objective, sigreg=0.05)
    old.update(plan={"horizon": 5}, probe={"backbone_heads": 3}, world={}, surprise={})
    cfg = from_dict(old)
    assert cfg.objective.sigreg == 0.05 and cfg == PretrainRoot(objective=cfg.objective)
    probe = from_dict({**to_dict(ProbeRoot()), "probe": {"backbone_heads": 3}}, "probe")
    assert probe.probe.num_heads == 3


def test_ranges_live_in_field_metadata():
    # every root's sections carry their range checks next to the field, not in a table
    for root in ROOTS.values():
        cfg = root()
        for f in dataclasses.fields(cfg):
            for g in dataclasses.fields(getattr(cfg, f.name)):
                if "range" in g.metadata:
                    ok, what = g.metadata["range"]
                    assert what.startswith("must be") and callable(ok)


def test_without_a_command_the_config_says_which_it_is_for():
    # The Python API: load_config(path, overrides) takes the command from the sections it sets.
    assert isinstance(load_config(REPO / "configs/probe/demo_attentive.yaml"), ProbeRoot)
    assert isinstance(load_config(None, ["plan.horizon=3"]), ROOTS["plan"])
    assert isinstance(load_config(REPO / "configs/world/tworooms.yaml"), ROOTS["world train"])
    with pytest.raises(
        ConfigError, match="data.shards: the data section is not used by `vjepa plan`"
    ):
        load_config(REPO / "configs/pretrain/demo_cpu.yaml", ["plan.horizon=5"])
    with pytest.raises(ConfigError, match="sections of `vjepa plan` and `vjepa probe`"):
        load_config(None, ["plan.horizon=5", "probe.kind=knn"])
