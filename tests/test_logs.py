"""What a run writes when its output goes to a file (`python train.py > run.log 2>&1`, a cluster job), and
what its `train.log` holds: progress while training, each line once, the results at the end."""

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# a short real training (debug=fast alone is one step): 6 steps, validation every 3, a line every 2 steps
SHORT = ["debug=fast", "trainer.fast_dev_run=false", "trainer.max_steps=6", "trainer.val_check_interval=3",
         "callbacks.rich_progress_bar.every_n_steps=2"]
STAMP = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\]\[[\w.]+\]\[\w+\] - ")


@pytest.fixture(scope="module")
def redirected(tmp_path_factory):
    """(what `python train.py ... > out.log 2>&1` leaves in out.log, the run folder's train.log)."""
    tmp = tmp_path_factory.mktemp("redirected")
    run_dir = tmp / "run"
    with open(tmp / "out.log", "w") as out:
        res = subprocess.run([sys.executable, str(ROOT / "train.py"), *SHORT, f"hydra.run.dir={run_dir}"],
                             cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=600)
    text = (tmp / "out.log").read_text()
    assert res.returncode == 0, text[-4000:]
    return text, (run_dir / "train.log").read_text()


def test_progress_lines_while_training(redirected):
    out, train_log = redirected
    for text in (out, train_log):
        steps = re.findall(r"step (\d+)/6 \| loss [\d.e-]+ \| psnr [\d.]+ \| lr [\d.e-]+ \| [\d.]+ it/s \| ETA "
                           r"\d+:\d\d:\d\d", text)
        assert steps == ["1", "2", "4", "6"], text[-3000:]
        vals = re.findall(r"validation at step (\d)/6: psnr [\d.]+ \| psnr_interior [\d.]+ \| ssim [\d.]+", text)
        assert vals == ["3", "6"], text[-3000:]
        assert "training done: 6 steps in" in text


def test_each_line_once_and_no_bars(redirected):
    out, train_log = redirected
    assert "Epoch 0/-2" not in out and "━" not in out.split("Test results")[0]  # no rich bar drawn in a file
    assert "Testing" not in out and "it/s" not in out.split("Test results")[1]  # nor a test bar after the table
    for text in (out, train_log):
        # (a Python warning raised again later is a new line, not a copy)
        lines = [STAMP.sub("", ln) for ln in text.splitlines() if STAMP.match(ln) and "[py.warnings]" not in ln]
        lines = [ln for ln in lines if ln.strip()]  # a table's first line is empty (it starts below its stamp)
        assert lines, text[-2000:]
        twice = [ln for ln, n in Counter(lines).items() if n > 1]
        assert not twice, twice
        assert sum("`Trainer.fit` stopped: `max_steps=6` reached" in ln for ln in lines) == 1
    assert not re.search(r"^INFO: ", out, re.M)  # Lightning's own handler, beside Hydra's


def test_train_log_has_the_results_table(redirected):
    out, train_log = redirected
    for text in (out, train_log):
        assert "Test results (3 images" in text and "Tikhonov" in text and "Per image" in text
        assert "| Name" in text and "Trainable params" in text  # the model summary (plain, through logging)
        assert re.search(r"report: \S+report\.png\s+results: \S+results\.json", text)


def test_rich_bar_on_a_terminal(tmp_path):
    """In a terminal (a pseudo-terminal here): the rich bar, without "Epoch 0/-2", the validation line above
    it and in train.log, and no test bar drawn again under the results table."""
    import os
    import pty

    run_dir = tmp_path / "run"
    master, slave = pty.openpty()
    steps = ["debug=fast", "trainer.fast_dev_run=false", "trainer.max_steps=2", "trainer.val_check_interval=2"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *steps, f"hydra.run.dir={run_dir}"],
                            cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "COLUMNS": "120"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=600) == 0
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    assert "Epoch 0" in screen and "Epoch 0/-2" not in screen and "━" in screen  # the rich bar was drawn
    assert "validation at step 2/2: psnr" in screen
    assert "Testing" not in screen.split("Test results")[1]
    train_log = (run_dir / "train.log").read_text()
    assert "validation at step 2/2: psnr" in train_log and "Test results" in train_log


def test_progress_every_n_steps_must_be_positive(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "train.py"), "debug=fast",
                          "callbacks.rich_progress_bar.every_n_steps=0", f"hydra.run.dir={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines[-1] == ("config error: callbacks.rich_progress_bar.every_n_steps must be an integer >= 1, "
                         "got 0"), res.stderr[-2000:]
    from unfolded.training.errors import ConfigError
    from unfolded.training.progress import progress_bar

    for bad in (2.5, "10", True):
        with pytest.raises(ConfigError, match=f"every_n_steps must be an integer >= 1, got {bad!r}"):
            progress_bar(bad)
