"""Run-folder rules: which overrides a resume re-applies, and which folders a run may write into."""

from __future__ import annotations

import pytest

from lstm_forecast.errors import UserError
from lstm_forecast.training.run_folder import check_output_dir, resume_overrides


def saved_run(tmp_path, *overrides: str):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return run_dir


def test_resume_reapplies_the_saved_overrides_and_lets_new_ones_win(tmp_path):
    run_dir = saved_run(
        tmp_path, "data=etth1", "trainer.max_epochs=5", "ckpt_path=old.ckpt", "resume=elsewhere"
    )
    assert resume_overrides([f"resume={run_dir}", "trainer.max_epochs=8"]) == [
        "data=etth1",
        "trainer.max_epochs=8",
        f"resume={run_dir}",
        f"hydra.run.dir={run_dir}",
        "ckpt_path=last",
    ]


def test_ckpt_path_last_with_an_existing_run_folder_is_a_resume(tmp_path):
    run_dir = saved_run(tmp_path, "seed=3")
    assert resume_overrides(["ckpt_path=last", f"hydra.run.dir={run_dir}"])[:2] == [
        "seed=3",
        f"resume={run_dir}",
    ]
    # Not a resume: a new folder, or a checkpoint path of another run.
    fresh = ["ckpt_path=last", f"hydra.run.dir={tmp_path / 'new'}"]
    assert resume_overrides(fresh) == fresh
    assert resume_overrides(["ckpt_path=a.ckpt"]) == ["ckpt_path=a.ckpt"]


def test_a_folder_holding_a_run_is_refused_unless_resuming(tmp_path):
    check_output_dir(tmp_path / "new", resuming=False)
    check_output_dir(tmp_path, resuming=False)  # exists but empty: fine
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(UserError, match="already holds a run; refusing to overwrite"):
        check_output_dir(tmp_path, resuming=False)
    check_output_dir(tmp_path, resuming=True)
    with pytest.raises(UserError, match="cannot resume"):
        check_output_dir(tmp_path / "gone", resuming=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # the write probe is gone
