"""Optuna sweeps through our Hydra sweeper plugin (`python train.py -m hparams_search=optuna`), in a
subprocess on `debug=fast`: failed trials do not stop the sweep, the study resumes, hopeless trials are pruned."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false"]
SEARCHED = {"algo.stepsize", "module.optimizer.lr", "algo.max_iter"}


def train(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def extra_config(tmp_path: Path, name: str, enqueue: list[dict]) -> list[str]:
    """Overrides that load a config from `tmp_path` which puts `enqueue` first in the study."""
    folder = tmp_path / "conf_extra" / "sweep_test"
    folder.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"hydra": {"sweeper": {"enqueue_trials": enqueue}}})
    (folder / f"{name}.yaml").write_text("# @package _global_\n" + text)
    return [f"hydra.searchpath=[file://{tmp_path / 'conf_extra'}]", f"+sweep_test={name}"]


def summary(sweep_dir: Path) -> dict:
    return yaml.safe_load((sweep_dir / "optuna_summary.yaml").read_text())


def test_optuna_sweep_records_failures_resumes_and_prunes(tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    common = ["-m", "hparams_search=optuna", "debug=fast", f"hydra.sweep.dir={sweep_dir}", *QUIET]
    # Trial 0 is forced to diverge (a huge step size: training raises), trial 1 gets a small learning rate
    # (the sampler chooses the rest), trial 2 is the sampler's alone.
    first = [{"algo.stepsize": 1.0e30}, {"module.optimizer.lr": 1.0e-4}]
    res = train(*common, "hydra.sweeper.n_trials=3", *extra_config(tmp_path, "first", first))
    assert res.returncode == 0, res.stderr[-4000:]
    s = summary(sweep_dir)
    states = [t["state"] for t in s["trials"]]
    assert states == ["FAIL", "COMPLETE", "COMPLETE"], s["trials"]
    assert s["failed"] == [0] and s["states"] == {"COMPLETE": 2, "FAIL": 1}
    assert s["trials"][0]["fail_reason"] and s["trials"][0]["params"]["algo.stepsize"] == 1.0e30
    best = s["best"]
    assert best["value"] == max(t["value"] for t in s["trials"][1:]) and set(best["params"]) == SEARCHED
    assert 3 <= best["params"]["algo.max_iter"] <= 10 and 1e-4 <= best["params"]["module.optimizer.lr"] <= 1e-2
    n = best["number"]
    assert Path(best["output_dir"]) == sweep_dir / str(n) and (sweep_dir / str(n) / "results.json").is_file()
    assert best["intermediate_values"], "the pruning callback reported no validation value"
    db = sweep_dir / "optuna.db"
    assert s["storage"] == f"sqlite:///{db}" and db.is_file()

    # Resume in the same folder: one more trial, numbered 3, with a learning rate that makes it hopeless;
    # with one finished trial the median pruner may judge it, and stops it after its validation.
    res = train(*common, "hydra.sweeper.n_trials=1", "hydra.sweeper.pruner.n_startup_trials=1",
                *extra_config(tmp_path, "resume", [{"module.optimizer.lr": 10.0}]))
    assert res.returncode == 0, res.stderr[-4000:]
    s2 = summary(sweep_dir)
    assert [t["state"] for t in s2["trials"]] == ["FAIL", "COMPLETE", "COMPLETE", "PRUNED"], s2["trials"]
    assert s2["trials"][:3] == s["trials"]  # the earlier trials are kept, not re-run
    assert s2["pruned"] == [3] and s2["best"] == best
    assert (sweep_dir / "3").is_dir() and not (sweep_dir / "3" / "results.json").exists()
    records = {n: json.loads((sweep_dir / n / "metrics.json").read_text()) for n in ("0", "3")}
    assert records["0"]["status"] == "failed" and records["0"]["error"]  # written by RunRecord on the exception
    assert records["3"]["status"] == "pruned" and records["3"]["error"].startswith("TrialPruned")
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from trials").fetchone()[0] == 4

    # The comparison report lists the failed and pruned trials and the best trial's parameters.
    from unfolded.training import compare

    assert compare.main([str(sweep_dir), "-o", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("#")}
    assert " failed " in rows["#0"] and " pruned " in rows["#3"] and " completed " in rows[f"#{n}"]
    assert f"best trial #{n}" in out and "module.optimizer.lr=" in out
    page = (tmp_path / "report" / "compare.html").read_text()
    assert f"Best trial #{n}" in page and "failed: [0]" in page and "pruned: [3]" in page
    assert (tmp_path / "report" / "compare.png").stat().st_size > 20_000


def test_search_space_syntax():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from hydra_plugins.unfolded_optuna_sweeper import _search_space as ss

    space, fixed = ss.split(ss.parse([
        "a=tag(log, interval(1e-4, 1e-2))", "b=interval(0.5, 2)", "c=range(3, 11)", "d=blur,denoise",
        "e=tag(int, interval(1, 8))", "f=choice(1, 2.5, x)", "g=0.3", "physics=blur"]))
    assert space["a"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert space["b"] == FloatDistribution(0.5, 2.0)
    assert space["c"] == IntDistribution(3, 10)
    assert space["d"] == CategoricalDistribution(["blur", "denoise"])
    assert space["e"] == IntDistribution(1, 8)
    assert space["f"] == CategoricalDistribution([1, 2.5, "x"])
    assert fixed == ["g=0.3", "physics=blur"]
    for bad, message in (("a=tag(foo, interval(1, 2))", "unknown tag"), ("a=interval(2, 1)", "low < high"),
                         ("a=tag(log, interval(0, 1))", "low > 0")):
        with pytest.raises(ValueError, match=message):
            ss.split(ss.parse([bad]))
    assert [ss.override_value(v) for v in (1e-4, 3, True, None, "blur", "a b")] == [
        "0.0001", "3", "true", "null", "blur", "'a b'"]


@pytest.mark.parametrize("outcome,state,reason", [
    (26.5, "COMPLETE", None), (float("nan"), "FAIL", "returned nan"), (float("inf"), "FAIL", "returned inf"),
    (None, "FAIL", "returned None"), (FloatingPointError("non-finite training loss"), "FAIL", "FloatingPointError"),
    ("pruned", "PRUNED", None)])
def test_job_outcome_becomes_trial_state(outcome, state, reason, tmp_path):
    import optuna
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    from hydra_plugins.unfolded_optuna_sweeper.unfolded_optuna_sweeper import UnfoldedOptunaSweeper

    study = optuna.create_study(direction="maximize")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    ret = JobReturn(hydra_cfg=OmegaConf.create({"hydra": {"runtime": {"output_dir": str(tmp_path)}}}))
    if outcome == "pruned":
        outcome = optuna.TrialPruned("hopeless")
    ret.status = JobStatus.FAILED if isinstance(outcome, Exception) else JobStatus.COMPLETED
    ret.return_value = outcome
    UnfoldedOptunaSweeper()._tell(study, trial, ret)
    frozen = study.trials[0]
    assert frozen.state.name == state
    assert frozen.user_attrs["output_dir"] == str(tmp_path)
    if reason:
        assert reason in frozen.user_attrs["fail_reason"]
    if state == "COMPLETE":
        assert study.best_value == 26.5


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                          "hparams_search=optuna"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.timeout_min == 240
    assert cfg.hydra.sweeper._target_.endswith("UnfoldedOptunaSweeper")


@pytest.mark.slow
def test_submitit_local_runs_a_two_job_multirun(tmp_path):
    sweep_dir = tmp_path / "sweep"
    res = train("-m", "debug=fast", "algo.max_iter=2,3", "hydra/launcher=submitit_local",
                "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep_dir}", *QUIET)
    assert res.returncode == 0, res.stderr[-4000:]
    for job, k in (("0", 2), ("1", 3)):
        assert f"algo.max_iter={k}" in (sweep_dir / job / ".hydra" / "overrides.yaml").read_text()
        results = yaml.safe_load((sweep_dir / job / "results.json").read_text())
        assert all(len(img["psnr_iter"]) == k for img in results["images"])
    assert list((sweep_dir / ".submitit").iterdir())  # the jobs really went through submitit


@pytest.mark.slow
def test_optuna_trials_in_parallel_with_submitit_local(tmp_path):
    """Two trials at once in submitit processes; the pruning callback reaches its trial through the storage."""
    sweep_dir = tmp_path / "sweep"
    res = train("-m", "hparams_search=optuna", "debug=fast", "hydra/launcher=submitit_local",
                "hydra.launcher.timeout_min=10", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                f"hydra.sweep.dir={sweep_dir}", *QUIET)
    assert res.returncode == 0, res.stderr[-4000:]
    s = summary(sweep_dir)
    assert [t["state"] for t in s["trials"]] == ["COMPLETE", "COMPLETE"]
    assert all(t["intermediate_values"] for t in s["trials"]) and s["best"] is not None


def test_default_search_space_only_holds_what_the_default_model_uses():
    """Every `algo.*` key `hparams_search=optuna` searches changes the default model's reconstruction
    between the ends of its range (a parameter the model ignores, such as λ with a PnP prior, only wastes
    trials). The prior gets random weights: its zero-initialised last layer makes it the identity."""
    import torch
    from hydra import compose, initialize_config_dir

    from hydra_plugins.unfolded_optuna_sweeper import _search_space as ss
    from unfolded.training import config, pipeline

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        params = compose("train", overrides=["hparams_search=optuna"], return_hydra_config=True).hydra.sweeper.params
    space, _ = ss.split(ss.parse(f"{k}={v}" for k, v in params.items()))
    assert set(space) == {"algo.stepsize", "module.optimizer.lr", "algo.max_iter"}

    def reconstruct(key, value):
        cfg = config.compose([f"{key}={value}"], output_dir="unused")
        physics = pipeline.build_physics(cfg).example((1, 24, 24))
        torch.manual_seed(0)
        model = pipeline.build_model(cfg)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:  # the denoiser's convolutions, not the algorithm's step size
                    p.add_(0.01 * torch.randn_like(p))
            x = torch.rand(1, 1, 24, 24)
            return model(physics(x), physics)

    for key, dist in space.items():
        if key.startswith("algo."):
            low, high = reconstruct(key, dist.low), reconstruct(key, dist.high)
            same = torch.allclose(low, high, atol=1e-5)
            assert not same, f"{key} does not change the default model"


# --- the documented commands, as typed, in a fresh clone (no hydra.sweep.dir: the default folders) ---------
@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    from tests.fresh_clone import fresh_clone

    return fresh_clone(tmp_path_factory.mktemp("clone"))


def sweep_dirs(clone: Path) -> list[Path]:
    return sorted((clone / "logs" / "debug" / "multiruns").iterdir())


def run_in(clone: Path, *command: str) -> list[Path]:
    """Run `command` in the clone; the sweep folder(s) it created."""
    from tests.fresh_clone import shell

    before = set(sweep_dirs(clone)) if (clone / "logs" / "debug" / "multiruns").is_dir() else set()
    res = shell(list(command), cwd=clone)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-4000:])
    assert "pip install" not in res.stdout  # make found the installed .venv
    new = [d for d in sweep_dirs(clone) if d not in before]
    assert len(new) == 1, new
    return new


def test_readme_grid_sweep_as_typed(clone):
    (sweep,) = run_in(clone, "python", "train.py", "-m", "algo.max_iter=2,3", "debug=fast")
    for job, k in (("0", 2), ("1", 3)):
        assert f"algo.max_iter={k}" in (sweep / job / ".hydra" / "overrides.yaml").read_text()
        assert (sweep / job / "results.json").is_file()


def test_lr_grid_as_typed(clone):
    (sweep,) = run_in(clone, "python", "train.py", "hparams_search=lr", "debug=fast")
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1", "2"]
    assert all((sweep / job / "results.json").is_file() for job in "012")


@pytest.mark.parametrize("command", [
    ["python", "train.py", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "debug=fast"],
    ["make", "sweep", "ARGS=hydra.sweeper.n_trials=2 debug=fast"]], ids=["python", "make"])
def test_optuna_sweep_as_typed(clone, command):
    (sweep,) = run_in(clone, *command)
    s = summary(sweep)
    assert [t["state"] for t in s["trials"]] == ["COMPLETE", "COMPLETE"], s["trials"]
    assert s["storage"] == f"sqlite:///{sweep / 'optuna.db'}" and (sweep / "optuna.db").is_file()
    assert all((sweep / str(t["number"]) / "results.json").is_file() for t in s["trials"])


# --- a sweep that cannot succeed says so; a killed sweep leaves no trial RUNNING forever --------------------
def test_sweep_whose_every_trial_failed_exits_non_zero_with_one_line(tmp_path):
    sweep_dir = tmp_path / "sweep"
    # every trial stops at its configuration check (crops larger than the images)
    res = train("hparams_search=optuna", "hydra.sweeper.n_trials=2", "debug=fast", "data.crop_size=1000",
                f"hydra.sweep.dir={sweep_dir}", *QUIET)
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("optuna sweep: all 2 trials failed (trial 1: SystemExit: config error: "), lines
    assert lines[-1].endswith(f"summary: {sweep_dir / 'optuna_summary.yaml'}") and "Traceback" not in res.stderr
    assert summary(sweep_dir)["failed"] == [0, 1]


def test_stale_running_trials_fail_with_a_reason_others_stay():
    import time

    import optuna

    from hydra_plugins.unfolded_optuna_sweeper._heartbeat import Heartbeat, fail_stale_trials

    study = optuna.create_study()
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    dead, alive, done = (study.ask(space) for _ in range(3))
    with Heartbeat([dead, alive, done], interval=10):
        pass
    study.tell(done, 1.0)
    alive.set_user_attr("heartbeat", time.time() + 100)  # stamped later, by another sweep still running
    assert fail_stale_trials(study, interval=10, now=time.time() + 31) == [dead.number]
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "RUNNING", "COMPLETE"]
    assert study.trials[0].user_attrs["fail_reason"].startswith("stale: no sign of life for 31 s (> 30 s)")


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9")
def test_trial_of_a_killed_sweep_is_failed_on_resume(tmp_path):
    import contextlib
    import os
    import signal
    import time

    sweep_dir = tmp_path / "sweep"
    args = [sys.executable, str(ROOT / "train.py"), "hparams_search=optuna", "debug=fast",
            f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.heartbeat_interval=1", *QUIET]
    proc = subprocess.Popen([*args, "hydra.sweeper.n_trials=1"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (sweep_dir / "0" / ".hydra").is_dir():  # trial 0's job has started
            assert proc.poll() is None and time.time() < deadline, "the sweep ended before its trial started"
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the whole sweep, at once: nothing gets to tell Optuna
        proc.wait()
    time.sleep(3.5)  # > 3 heartbeat intervals
    res = subprocess.run([*args, "hydra.sweeper.n_trials=1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    s = summary(sweep_dir)
    assert [t["state"] for t in s["trials"]] == ["FAIL", "COMPLETE"], s["trials"]
    assert s["trials"][0]["fail_reason"].startswith("stale: no sign of life")
