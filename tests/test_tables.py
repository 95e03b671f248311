"""Published result tables are the output of the command that measures them (`make results`): each
`<!-- table:T -->` block of README.md and docs/ is what docs/results/T.json renders, and every table has
its block somewhere."""

from __future__ import annotations

import json
import re

import pytest

from unfolded.training import tables


def _blocks() -> list[tuple[str, str, str]]:
    found = []
    for doc in tables.DOCUMENTS:
        text = (tables.REPO / doc).read_text()
        for m in re.finditer(r"<!-- table:(\w+) -->\n(.*?)\n<!-- /table:\1 -->", text, re.S):
            found.append((doc, m.group(1), m.group(2)))
    return found


def test_every_table_is_published_and_every_block_is_its_output():
    blocks = _blocks()
    assert {name for _, name, _ in blocks} == {*tables.TABLES, tables.ZOO}
    for doc, name, body in blocks:
        assert body == tables.render(name), f"{doc}: table {name} differs from `make results TABLES={name}`"


def test_a_block_is_rewritten_from_the_stored_results(tmp_path, monkeypatch):
    rows = {"A (`x`)": {"global_step": 400,
                        "summary": {"model/psnr": 30.0, "model/ssim": 0.8, "adjoint/psnr": 28.0,
                                    "adjoint/ssim": 0.7, "gain/psnr_vs_adjoint": 2.0},
                        "images": [{"name": "slice", "model/psnr": 29.0, "adjoint/psnr": 27.5},
                                   {"name": "moon", "model/psnr": 31.0, "adjoint/psnr": 28.5}]}}
    (tmp_path / "mri.json").write_text(json.dumps({"date": "2026-12-02", "rows": rows}))
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    text = "before\n<!-- table:mri -->\nold numbers\n<!-- /table:mri -->\nafter"
    new = tables.rewrite_blocks("mri", text)
    assert "old numbers" not in new and new.startswith("before\n") and new.endswith("\nafter")
    assert "| A (`x`) | 29.00 | 31.00 | 30.00 | **+2.00** | 0.800 | 400 |" in new
    assert "| zero-filled Aᵀy | 27.50 | 28.50 | 28.00 | — | 0.700 | — |" in new


def test_unknown_table_is_refused():
    with pytest.raises(SystemExit):
        tables.main(["nope"])


def test_the_fastmri_table_is_rendered_from_the_runs_volume_metrics(tmp_path, monkeypatch):
    """Baselines once (from the first run), then each model with its gains over zero-filled RSS and CG-SENSE."""
    def methods(model_psnr):
        return {"model": {"psnr": model_psnr, "ssim": 0.9, "nmse": 0.01},
                "adjoint": {"psnr": 21.0, "ssim": 0.55, "nmse": 0.2},
                "zero_filled_rss": {"psnr": 20.5, "ssim": 0.6, "nmse": 0.21},
                "cg_sense": {"psnr": 25.0, "ssim": 0.62, "nmse": 0.08}}
    rows = {f"M{i} (`x`)": {"global_step": 200, "wall_seconds": 900 * i, "summary": {}, "images": [],
                            "fastmri": {"tikhonov_lambda": 0.0025, "methods": methods(30.0 + i),
                                        "volumes": {"a.h5": {}, "b.h5": {}}}} for i in (1, 2)}
    (tmp_path / "fastmri.json").write_text(json.dumps({"date": "2026-12-02", "rows": rows}))
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    text = tables.render("fastmri")
    assert "| method (2 test volumes) | PSNR (dB) | SSIM | NMSE |" in text
    assert "| zero-filled RSS (fastMRI's baseline) | 20.50 | 0.6000 | 0.2100 |" in text
    assert "| CG-SENSE (ESPIRiT maps, λ = 0.0025 tuned on validation) | 25.00 | 0.6200 | 0.0800 |" in text
    assert "| M1 (`x`) | 31.00 | 0.9000 | 0.0100 | **+10.50 / +6.00** | 200 | 15 min |" in text
    assert "| M2 (`x`) | 32.00 | 0.9000 | 0.0100 | **+11.50 / +7.00** | 200 | 30 min |" in text
    assert text.endswith("<sub>`make results TABLES=fastmri`, 2026-12-02.</sub>")
