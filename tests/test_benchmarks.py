"""The benchmarks still run (on a tiny database; the figures are in the README)."""

import importlib.util

from harness import ROOT


def test_backup_restore_benchmark_runs_and_prints_its_ratios(capsys):
    spec = importlib.util.spec_from_file_location("backup_restore", ROOT / "benchmarks" / "backup_restore.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    code = benchmark.main(["--size-mb", "4", "--rounds", "1"])
    out = capsys.readouterr().out
    for ratio in ("backup.sh / pg_dump | aws s3 cp", "restore.sh / aws s3 cp + pg_restore", "restore step / pg_restore"):
        assert f"ratio {ratio}: " in out
    assert code in (0, 1)  # on a tiny database fixed costs dominate; the limit is judged at 200 MB


def test_dataset_inventory_benchmark_runs_and_prints_its_ratio(capsys):
    spec = importlib.util.spec_from_file_location("dataset_inventory", ROOT / "benchmarks" / "dataset_inventory.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    code = benchmark.main(["--objects", "300", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "ratio inventory / bare paginator: " in out and "objects/s" in out
    assert code in (0, 1)  # a few hundred objects say nothing about throughput; the figure is taken at 20,000
