"""The soak's report: what it says about memory after the warm-up."""

from __future__ import annotations

from fraudstream.soak import Run, Sample, SoakConfig, main, summary

MIB = 1024


def sample(elapsed: float, rss_mib: float, rocksdb_mib: float, live_cards: float, in_use_mib: float = 100,
           free_mib: float = 20) -> Sample:
    return Sample(elapsed=elapsed, rss_kib=int(rss_mib * MIB), produced_per_s=50, scored_per_s=50, p50_ms=300, p99_ms=600,
                  n_latency=3000, lag=10, alerts=5, dead_letters=0, snapshots=0, cards=1000, labels=3,
                  rocksdb_kib=int(rocksdb_mib * MIB), live_cards=live_cards, alloc_in_use_kib=int(in_use_mib * MIB),
                  alloc_free_kib=int(free_mib * MIB))


def test_the_summary_tells_heap_growth_from_rocksdb_growth() -> None:
    cfg = SoakConfig(minutes=30, cards=20_000)
    run = Run(cfg, samples=[sample(60, 200, 20, 3000), sample(120, 230, 30, 5000), sample(1800, 250, 50, 4990, 110, 35)])
    run.rss_warm, run.rss_last, run.rss_peak = (120, 230 * MIB), (1800, 250 * MIB), 251 * MIB
    text = "\n".join(summary(run))
    assert "worker RSS after warm-up (120s): 230.0 MiB; at the end (1800s): 250.0 MiB" in text
    assert "RSS slope after warm-up: +42.9 MiB/hour" in text
    # 200 MiB outside RocksDB at both ends: the growth was RocksDB's, within its bound.
    assert "of it outside RocksDB: 200.0 MiB at 120s, 200.0 MiB at 1800s (+0.0 MiB/hour); RocksDB 30.0 -> 50.0 MiB" in text
    assert "live card states: 5,000 -> 4,990 (at most 5,000)" in text
    # What the C allocator has in use, and what it holds free: a leak grows the first, fragmentation the second.
    assert "C allocator in use: 100.0 -> 110.0 MiB (+21.4 MiB/hour); held free: 20.0 -> 35.0 MiB" in text


def test_the_live_state_bound_defaults_to_a_quarter_of_the_cards() -> None:
    assert SoakConfig(cards=20_000).live_states_max == 5_000
    assert SoakConfig(cards=20_000, live_states=777).live_states_max == 777


def test_bad_arguments_are_refused(capsys) -> None:
    for argv in (["--rate", "0"], ["--live-states", "-1"], ["--rocksdb-mb", "2"], ["--worker-env", "LD_PRELOAD"]):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(f"{argv} accepted")
    err = capsys.readouterr().err
    assert "--live-states must be positive" in err and "--rocksdb-mb must be at least 4" in err
    assert "--worker-env takes NAME=VALUE, not 'LD_PRELOAD'" in err
