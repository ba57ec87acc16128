//! A short run of `switchboard load --abuse` against a switch process of its own, so that the
//! hostile-peer floods cannot rot. No figure is checked here: figures belong in BENCHMARKS.md.

use std::path::Path;
use std::time::Duration;

use switchboard::load::{abuse, AbuseOptions, Flood, SpawnedSwitch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flood_reports_a_row_and_the_switch_still_serves() {
    let switch = SpawnedSwitch::start(
        Path::new(env!("CARGO_BIN_EXE_switchboard")),
        100,
        false,
        None,
    )
    .await
    .expect("switch starts");
    let mut opts = AbuseOptions::new(switch.http, switch.grpc, switch.token.clone());
    opts.pid = Some(switch.pid());
    opts.phase = Duration::from_millis(400);
    opts.settle = Duration::from_secs(5);
    opts.slow_connections = 5;
    opts.keys_per_message = 1000;
    opts.keys_total = 20_000;
    let report = abuse::run(&opts).await.expect("run");
    let printed = report.to_string();
    assert_eq!(report.rows.len(), Flood::ALL.len(), "{printed}");
    for (row, flood) in report.rows.iter().zip(Flood::ALL) {
        assert_eq!(row.flood, flood, "{printed}");
        assert!(row.sent > 0, "{flood} sent something: {printed}");
        assert!(
            row.rest_count > 0,
            "REST was probed during {flood}: {printed}"
        );
        assert!(row.rss_peak_mb.is_some(), "{printed}");
        assert!(
            row.serving_after,
            "the switch serves after {flood}: {printed}"
        );
        assert!(
            printed.contains(&format!("| {} |", flood.name())),
            "{printed}"
        );
    }
    // And once the run is over.
    assert!(switchboard::load::live_calls(switch.http).await.is_some());
}

#[tokio::test]
async fn abuse_refuses_targets_off_loopback() {
    let opts = AbuseOptions::new(
        "10.1.2.3:8080".parse().unwrap(),
        "127.0.0.1:50051".parse().unwrap(),
        "t",
    );
    assert!(abuse::run(&opts).await.is_err());
}
