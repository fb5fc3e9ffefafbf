//! The figures of the liveness promise: how long a dead peer went unnoticed, how
//! long clients were offline and why (as they report it on their next connection),
//! how many reaps were false, and how resumes went.
//!
//! docs/RELIABILITY.md ("Liveness figures") says what each one means.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use heartwire_core::report::{OfflineReason, SessionReport};
use metrics::{Counter, Histogram, Key, Label, Recorder, Unit};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusRecorder};

use super::METADATA;
use super::reaped::{REAPED_TTL, ReapedSessions};
use crate::broker::Broker;

/// Buckets of `heartwire_detection_seconds`: around the bound of the defaults
/// (20 s + 20 s), and fine enough below for short intervals.
const DETECTION_BUCKETS: [f64; 18] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 60.0,
    90.0, 120.0,
];
/// Buckets of `heartwire_client_offline_seconds`: a restart's hint (0–5 s) up to an hour.
const OFFLINE_BUCKETS: [f64; 13] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Buckets of `heartwire_resume_replayed_messages`.
const REPLAYED_BUCKETS: [f64; 11] = [
    0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
];

/// How a `subscribe` with `since` was answered, the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResumeOutcome {
    /// Every message after the position followed.
    Recovered,
    /// Same epoch, but messages after the position are no longer kept.
    Gap,
    /// The channel's epoch changed: positions of the old one mean nothing.
    EpochChange,
}

impl ResumeOutcome {
    const LABELS: [&'static str; 3] = ["recovered", "gap", "epoch_change"];
}

/// The result of a client's report, the `result` label.
const REPORT_RESULTS: [&str; 2] = ["accepted", "invalid"];

/// The liveness figures of one server.
pub(crate) struct LivenessMetrics {
    detection: Histogram,
    offline: [Histogram; OfflineReason::LABELS.len()],
    reports: [Counter; REPORT_RESULTS.len()],
    false_reaps: Counter,
    resumes: [Counter; ResumeOutcome::LABELS.len()],
    replayed: Histogram,
    /// Sessions reaped for silence lately, to judge reports by.
    reaped: Mutex<ReapedSessions>,
}

/// Sets the buckets of this module's histograms.
pub(super) fn buckets(builder: PrometheusBuilder) -> Result<PrometheusBuilder, BuildError> {
    builder
        .set_buckets_for_metric(
            Matcher::Full("heartwire_detection_seconds".into()),
            &DETECTION_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("heartwire_client_offline_seconds".into()),
            &OFFLINE_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("heartwire_resume_replayed_messages".into()),
            &REPLAYED_BUCKETS,
        )
}

impl LivenessMetrics {
    /// Describes and registers every series, at zero.
    pub(super) fn register(recorder: &PrometheusRecorder) -> Self {
        recorder.describe_histogram(
            "heartwire_detection_seconds".into(),
            Some(Unit::Seconds),
            "For each connection reaped for silence, from the last frame heard to the reap".into(),
        );
        recorder.describe_histogram(
            "heartwire_client_offline_seconds".into(),
            Some(Unit::Seconds),
            "How long clients were offline before this connection, by the reason they report"
                .into(),
        );
        recorder.describe_counter(
            "heartwire_client_reports_total".into(),
            None,
            "Reports of a previous session, by result: accepted, or invalid and ignored".into(),
        );
        recorder.describe_counter(
            "heartwire_false_reaps_total".into(),
            None,
            "Sessions reaped for silence whose client reports it heard the server's close".into(),
        );
        recorder.describe_counter(
            "heartwire_resumes_total".into(),
            None,
            "Subscribes with a position, by outcome: recovered, gap, epoch_change".into(),
        );
        recorder.describe_histogram(
            "heartwire_resume_replayed_messages".into(),
            None,
            "Messages replayed for each recovered resume".into(),
        );
        let key = |name: &'static str, label: &'static str, value: &'static str| {
            Key::from_parts(name, vec![Label::new(label, value)])
        };
        let offline = OfflineReason::LABELS.map(|reason| {
            recorder.register_histogram(
                &key("heartwire_client_offline_seconds", "reason", reason),
                &METADATA,
            )
        });
        let reports = REPORT_RESULTS.map(|result| {
            recorder.register_counter(
                &key("heartwire_client_reports_total", "result", result),
                &METADATA,
            )
        });
        let resumes = ResumeOutcome::LABELS.map(|outcome| {
            recorder.register_counter(
                &key("heartwire_resumes_total", "outcome", outcome),
                &METADATA,
            )
        });
        let false_reaps =
            recorder.register_counter(&Key::from_name("heartwire_false_reaps_total"), &METADATA);
        reports
            .iter()
            .chain(&resumes)
            .for_each(|counter| counter.increment(0));
        false_reaps.increment(0);
        Self {
            detection: recorder.register_histogram(
                &key("heartwire_detection_seconds", "reason", "ping_timeout"),
                &METADATA,
            ),
            offline,
            reports,
            false_reaps,
            resumes,
            replayed: recorder.register_histogram(
                &Key::from_name("heartwire_resume_replayed_messages"),
                &METADATA,
            ),
            reaped: Mutex::default(),
        }
    }

    /// A connection was reaped for silence at `now`, `silent_for` after it was last
    /// heard; `session` is its session id when its client can report it later, to
    /// this node or (through `broker`) another.
    pub(crate) fn reaped(
        &self,
        session: Option<String>,
        silent_for: Duration,
        now: Instant,
        broker: &dyn Broker,
    ) {
        self.detection.record(silent_for.as_secs_f64());
        if let Some(session) = session {
            broker.note_reaped(&session, REAPED_TTL);
            self.reaped_sessions().insert(session, now);
        }
    }

    /// A client's report of its previous session arrived at `now`: `Err` when it
    /// broke a rule, and is only counted. A session reaped by another node is
    /// looked up through `broker`, and counted when the answer comes.
    pub(crate) fn report(
        &self,
        report: Result<&SessionReport, &str>,
        now: Instant,
        broker: &dyn Broker,
    ) {
        let Ok(report) = report else {
            self.reports[1].increment(1);
            return;
        };
        self.reports[0].increment(1);
        let index = OfflineReason::LABELS
            .iter()
            .position(|label| *label == report.reason.label())
            .expect("LABELS lists every reason");
        self.offline[index].record(report.offline.as_secs_f64());
        let session = &report.previous_session;
        let reaped_here = self.reaped_sessions().take(session, now);
        if !report.reason.heard_the_close() {
            return;
        }
        if reaped_here {
            self.false_reaps.increment(1);
            // Taken from the other nodes too, so that it counts once.
            broker.take_reaped(session, Box::new(|| {}));
        } else {
            let false_reaps = self.false_reaps.clone();
            broker.take_reaped(session, Box::new(move || false_reaps.increment(1)));
        }
    }

    /// A subscribe with a position was answered with `outcome`, `replayed` messages
    /// following (counted for a recovered resume only).
    pub(crate) fn resumed(&self, outcome: ResumeOutcome, replayed: u64) {
        self.resumes[outcome as usize].increment(1);
        if outcome == ResumeOutcome::Recovered {
            self.replayed.record(replayed as f64);
        }
    }

    fn reaped_sessions(&self) -> std::sync::MutexGuard<'_, ReapedSessions> {
        self.reaped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
