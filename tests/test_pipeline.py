"""python -m pipeline on a tiny lattice: it runs end to end, prints its reading, and a second run
needs --resume or --overwrite."""
import pipeline

TINY = ["--L", "4", "--beta", "1.0", "--n-configs", "300", "--steps", "30"]


def test_pipeline_runs_prints_a_reading_and_a_second_run_needs_resume_or_overwrite(tmp_path, capsys):
    d = tmp_path / "p"
    assert pipeline.main([*TINY, "--dir", str(d)]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("reading: ") and "exact" in out.splitlines()[-1]
    assert pipeline.main([*TINY, "--dir", str(d)]) == 2
    assert "add --resume to continue it or --overwrite" in capsys.readouterr().err
    assert pipeline.main([*TINY, "--dir", str(d), "--resume"]) == 0
    assert pipeline.main([*TINY, "--dir", str(d), "--overwrite"]) == 0
