//! The numbers `/metrics` reports, in Prometheus text format.
//!
//! Each server owns its recorder and registers every metric once, at start; the hot
//! paths only bump atomic handles. Nothing is global, so several servers in one
//! process (as in the tests) keep separate counts.
//!
//! A histogram sample is kept until it is folded into its buckets, which a scrape
//! does, and so does [`ServerMetrics::keep_up`] every few seconds: a server nobody
//! scrapes would otherwise keep one sample per Pong forever.
//!
//! A scrape lists families by name and series by labels ([`order`]), then the
//! process's own figures ([`process`], `process_*`) and `heartwire_build_info`.
//! The figures of the liveness promise (detection time, client reports, false
//! reaps, resumes) are in [`liveness`], with the reaped sessions they judge
//! reports by ([`reaped`]).

mod liveness;
mod order;
mod process;
mod reaped;

pub(crate) use liveness::ResumeOutcome;

use std::convert::Infallible;
use std::time::Duration;

use heartwire_core::DisconnectReason;
use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

use crate::auth::Refusal;
use crate::broker::BrokerHealth;
use crate::endpoint::kind::EndpointKind;
use crate::overload::Signal;

/// Counters of one endpoint.
#[derive(Debug)]
pub(crate) struct EndpointMetrics {
    pub(crate) open: Gauge,
    pub(crate) accepted: Counter,
    pub(crate) adopted: Counter,
    pub(crate) messages_in: Counter,
    pub(crate) messages_out: Counter,
}

/// Every metric of one server.
pub(crate) struct ServerMetrics {
    recorder: PrometheusRecorder,
    endpoints: [EndpointMetrics; EndpointKind::ALL.len()],
    disconnects: [Counter; DisconnectReason::LABELS.len()],
    pub(crate) pings_sent: Counter,
    pub(crate) pongs_received: Counter,
    pub(crate) heartbeat_texts_sent: Counter,
    pub(crate) client_heartbeats: Counter,
    pub(crate) rejected_at_capacity: Counter,
    /// Server API calls refused for a missing or wrong key.
    pub(crate) api_refused: Counter,
    /// Messages published through the server API.
    pub(crate) api_publishes: Counter,
    /// Upgrades refused for their origin or credentials, by reason.
    refusals: [Counter; REFUSAL_LABELS.len()],
    rtt: Histogram,
    broker_up: Gauge,
    broker_reconnects: Counter,
    broker_failovers: Counter,
    broker_epochs_renewed: Counter,
    /// Reloads of the TLS certificate: loaded, failed.
    pub(crate) tls_reloads: [Counter; 2],
    /// How late the overload watch's last tick fired, in seconds.
    pub(crate) scheduler_lag: Gauge,
    /// Detection time, client reports, false reaps, resumes.
    pub(crate) liveness: liveness::LivenessMetrics,
}

/// The reasons of `heartwire_refused_total`: a foreign origin (HTTP 403), each
/// refusal of credentials, each limit of docs/SECURITY.md ("Floods and memory
/// pinning"), and each overload bound (docs/RELIABILITY.md, "Overload").
const REFUSAL_LABELS: [&str; 15] = [
    "origin",
    Refusal::LABELS[0],
    Refusal::LABELS[1],
    Refusal::LABELS[2],
    Refusal::LABELS[3],
    "max_connections_per_ip",
    "max_connections_per_user",
    "accept_rate",
    "message_rate",
    "too_many_channels",
    "id_too_long",
    "accept_error",
    Signal::LABELS[0],
    Signal::LABELS[1],
    Signal::LABELS[2],
];

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

const METADATA: Metadata<'static> = Metadata::new("heartwire", Level::INFO, None);
const RTT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl ServerMetrics {
    pub(crate) fn new() -> Self {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("heartwire_rtt_seconds".into()), &RTT_BUCKETS)
            .expect("the bucket list is not empty");
        let recorder = liveness::buckets(builder)
            .expect("the bucket lists are not empty")
            .build_recorder();
        let liveness = liveness::LivenessMetrics::register(&recorder);
        let describe = |name: &'static str, unit, help: &'static str| {
            recorder.describe_counter(name.into(), unit, help.into());
        };
        describe(
            "heartwire_connections_accepted_total",
            None,
            "Connections accepted by this process (WebSocket, and SSE streams)",
        );
        describe(
            "heartwire_connections_adopted_total",
            None,
            "Connections taken over from the previous process in a live upgrade",
        );
        describe(
            "heartwire_disconnects_total",
            None,
            "Connections ended, by reason",
        );
        describe(
            "heartwire_pings_sent_total",
            None,
            "Ping frames sent after inbound silence",
        );
        describe(
            "heartwire_pongs_received_total",
            None,
            "Pong frames received",
        );
        describe(
            "heartwire_heartbeat_texts_sent_total",
            None,
            "Magic heartbeat strings sent",
        );
        describe(
            "heartwire_client_heartbeats_total",
            None,
            "Heartbeats from clients answered",
        );
        describe(
            "heartwire_messages_in_total",
            None,
            "Data messages received",
        );
        describe("heartwire_messages_out_total", None, "Data messages sent");
        describe(
            "heartwire_rejected_total",
            None,
            "Connections refused at max-connections (HTTP 503), counting those not upgraded yet",
        );
        describe(
            "heartwire_refused_total",
            None,
            "Requests refused, by reason: an upgrade for its origin (HTTP 403) or credentials (close 4401, 4403, 4498 or 1013); a connection past its address's or user's limit (HTTP 429) or the accept rate (HTTP 503); a message past the message rate; a publish or subscribe past a channel limit or with too long an id; an accept that failed (out of file descriptors); an upgrade while the node is overloaded (HTTP 503: scheduler lag, memory or handshakes in flight past their bound)",
        );
        describe(
            "heartwire_broker_reconnects_total",
            None,
            "Times the broker lost its link to other nodes (Redis) and made it again",
        );
        recorder.describe_gauge(
            "heartwire_channels".into(),
            None,
            "Channels this node holds (with subscribers, or history kept in process)".into(),
        );
        recorder.describe_gauge(
            "heartwire_scheduler_lag_seconds".into(),
            Some(Unit::Seconds),
            "How late the last 100 ms tick of the overload watch fired: the runtime's scheduling delay".into(),
        );
        recorder.describe_gauge(
            "heartwire_runtime_alive_tasks".into(),
            None,
            "Tasks alive on the server's async runtime (connections hold a few each)".into(),
        );
        recorder.describe_gauge(
            "heartwire_subscriptions".into(),
            None,
            "Subscriptions of this node's connections, over all channels".into(),
        );
        recorder.describe_gauge(
            "heartwire_subscriptions_joining".into(),
            None,
            "Subscriptions joining: in Redis, their snapshot not read yet".into(),
        );
        recorder.describe_gauge(
            "heartwire_broker_up".into(),
            None,
            "1 while the broker reaches other nodes, 0 while it does not".into(),
        );
        describe(
            "heartwire_broker_failovers_total",
            None,
            "Times a Redis master changed under the broker and it followed",
        );
        describe(
            "heartwire_broker_epochs_renewed_total",
            None,
            "Channels given a new epoch because a Redis fail-over cut their history",
        );
        recorder.describe_gauge(
            "heartwire_broker_shard_up".into(),
            None,
            "1 while this Redis shard (or cluster node) carries messages, 0 while not".into(),
        );
        describe(
            "heartwire_broker_shard_reconnects_total",
            None,
            "Times the link to this Redis shard was lost and made again",
        );
        describe(
            "heartwire_broker_shard_failovers_total",
            None,
            "Times the master of this Redis shard changed",
        );
        describe(
            "heartwire_tls_reloads_total",
            None,
            "Times the TLS certificate was read again (SIGHUP or a changed file), by result: loaded, or failed with the old one kept",
        );
        recorder.describe_gauge(
            "heartwire_connections_open".into(),
            None,
            "Open connections (WebSocket, and SSE streams)".into(),
        );
        recorder.describe_histogram(
            "heartwire_rtt_seconds".into(),
            Some(Unit::Seconds),
            "Round-trip time from Ping to Pong".into(),
        );

        let counter = |name: &'static str, labels: Vec<Label>| {
            recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
        };
        let endpoints = EndpointKind::ALL.map(|endpoint| {
            let labels = || vec![Label::new("endpoint", endpoint.label())];
            EndpointMetrics {
                open: recorder.register_gauge(
                    &Key::from_parts("heartwire_connections_open", labels()),
                    &METADATA,
                ),
                accepted: counter("heartwire_connections_accepted_total", labels()),
                adopted: counter("heartwire_connections_adopted_total", labels()),
                messages_in: counter("heartwire_messages_in_total", labels()),
                messages_out: counter("heartwire_messages_out_total", labels()),
            }
        });
        let disconnects = DisconnectReason::LABELS.map(|reason| {
            counter(
                "heartwire_disconnects_total",
                vec![Label::new("reason", reason)],
            )
        });
        // Registered now so every series shows from the first scrape, even at zero.
        for endpoint in &endpoints {
            endpoint.accepted.increment(0);
            endpoint.adopted.increment(0);
            endpoint.messages_in.increment(0);
            endpoint.messages_out.increment(0);
            endpoint.open.set(0.0);
        }
        disconnects.iter().for_each(|counter| counter.increment(0));
        let refusals = REFUSAL_LABELS.map(|reason| {
            counter(
                "heartwire_refused_total",
                vec![Label::new("reason", reason)],
            )
        });
        refusals.iter().for_each(|counter| counter.increment(0));
        let tls_reloads = ["loaded", "failed"].map(|result| {
            counter(
                "heartwire_tls_reloads_total",
                vec![Label::new("result", result)],
            )
        });
        tls_reloads.iter().for_each(|counter| counter.increment(0));
        Self {
            endpoints,
            disconnects,
            pings_sent: counter("heartwire_pings_sent_total", vec![]),
            pongs_received: counter("heartwire_pongs_received_total", vec![]),
            heartbeat_texts_sent: counter("heartwire_heartbeat_texts_sent_total", vec![]),
            client_heartbeats: counter("heartwire_client_heartbeats_total", vec![]),
            rejected_at_capacity: counter("heartwire_rejected_total", vec![]),
            api_refused: counter("heartwire_api_refused_total", vec![]),
            api_publishes: counter("heartwire_api_publishes_total", vec![]),
            refusals,
            broker_up: recorder.register_gauge(&Key::from_name("heartwire_broker_up"), &METADATA),
            broker_reconnects: counter("heartwire_broker_reconnects_total", vec![]),
            broker_failovers: counter("heartwire_broker_failovers_total", vec![]),
            broker_epochs_renewed: counter("heartwire_broker_epochs_renewed_total", vec![]),
            tls_reloads,
            scheduler_lag: recorder.register_gauge(
                &Key::from_name("heartwire_scheduler_lag_seconds"),
                &METADATA,
            ),
            liveness,
            rtt: recorder.register_histogram(&Key::from_name("heartwire_rtt_seconds"), &METADATA),
            recorder,
        }
    }

    pub(crate) fn endpoint(&self, endpoint: EndpointKind) -> &EndpointMetrics {
        &self.endpoints[endpoint as usize]
    }

    pub(crate) fn disconnected(&self, reason: &DisconnectReason) {
        let index = DisconnectReason::LABELS
            .iter()
            .position(|label| *label == reason.label())
            .expect("LABELS lists every reason");
        self.disconnects[index].increment(1);
    }

    /// Counts an upgrade refused for `reason`: `origin` or a [`Refusal::label`].
    pub(crate) fn refused(&self, reason: &str) {
        let index = REFUSAL_LABELS
            .iter()
            .position(|label| *label == reason)
            .expect("REFUSAL_LABELS lists every refusal");
        self.refusals[index].increment(1);
    }

    pub(crate) fn rtt(&self, rtt: Duration) {
        self.rtt.record(rtt.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric, with the broker's state as of now.
    pub(crate) fn render(&self, broker: &BrokerHealth) -> String {
        self.broker_up.set(if broker.up { 1.0 } else { 0.0 });
        let alive_tasks = tokio::runtime::Handle::try_current()
            .map_or(0, |runtime| runtime.metrics().num_alive_tasks());
        for (name, value) in [
            ("heartwire_channels", broker.channels),
            ("heartwire_subscriptions", broker.subscriptions),
            ("heartwire_subscriptions_joining", broker.joining),
            ("heartwire_runtime_alive_tasks", alive_tasks),
        ] {
            self.recorder
                .register_gauge(&Key::from_name(name), &METADATA)
                .set(value as f64);
        }
        self.broker_reconnects.absolute(broker.reconnects);
        self.broker_failovers.absolute(broker.failovers);
        self.broker_epochs_renewed.absolute(broker.epochs_renewed);
        for shard in &broker.shards {
            let labels = || vec![Label::new("shard", shard.name.clone())];
            let key = |name: &'static str| Key::from_parts(name, labels());
            self.recorder
                .register_gauge(&key("heartwire_broker_shard_up"), &METADATA)
                .set(if shard.up { 1.0 } else { 0.0 });
            self.recorder
                .register_counter(&key("heartwire_broker_shard_reconnects_total"), &METADATA)
                .absolute(shard.reconnects);
            self.recorder
                .register_counter(&key("heartwire_broker_shard_failovers_total"), &METADATA)
                .absolute(shard.failovers);
        }
        let mut text = order::stable(&self.recorder.handle().render());
        text.push_str(&process::render());
        text.push_str(&format!(
            "# HELP heartwire_build_info The running heartwire's version.\n\
             # TYPE heartwire_build_info gauge\n\
             heartwire_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        ));
        text
    }

    /// Folds histogram samples into their buckets every [`UPKEEP_INTERVAL`]; runs for
    /// as long as it is polled.
    pub(crate) async fn keep_up(&self) -> Infallible {
        let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let handle = self.recorder.handle();
        loop {
            interval.tick().await;
            handle.run_upkeep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_rendered_from_the_start() {
        let metrics = ServerMetrics::new();
        metrics.disconnected(&DisconnectReason::PingTimeout);
        metrics.refused("token_expired");
        metrics.rtt(Duration::from_millis(3));
        let text = metrics.render(&BrokerHealth {
            up: false,
            reconnects: 2,
            failovers: 1,
            epochs_renewed: 3,
            shards: vec![crate::broker::ShardHealth {
                name: "127.0.0.1:7000".into(),
                master: None,
                up: true,
                reconnects: 2,
                failovers: 1,
                channels: 4,
            }],
            channels: 4,
            subscriptions: 9,
            joining: 2,
        });
        assert!(text.contains("heartwire_subscriptions 9"), "{text}");
        assert!(text.contains("heartwire_subscriptions_joining 2"), "{text}");
        assert!(
            text.contains("heartwire_broker_failovers_total 1"),
            "{text}"
        );
        assert!(
            text.contains("heartwire_broker_epochs_renewed_total 3"),
            "{text}"
        );
        assert!(
            text.contains(r#"heartwire_broker_shard_up{shard="127.0.0.1:7000"} 1"#),
            "{text}"
        );
        assert!(text.contains("heartwire_broker_up 0"), "{text}");
        assert!(
            text.contains("heartwire_broker_reconnects_total 2"),
            "{text}"
        );
        assert!(
            text.contains(r#"heartwire_disconnects_total{reason="ping_timeout"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"heartwire_disconnects_total{reason="slow_consumer"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"heartwire_refused_total{reason="token_expired"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"heartwire_refused_total{reason="origin"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"heartwire_refused_total{reason="overload_lag"} 0"#),
            "{text}"
        );
        assert!(text.contains("heartwire_scheduler_lag_seconds 0"), "{text}");
        assert!(
            text.contains(r#"heartwire_connections_open{endpoint="native"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"heartwire_rtt_seconds_bucket{le="0.005"} 1"#),
            "{text}"
        );
        for series in [
            r#"heartwire_detection_seconds_count{reason="ping_timeout"} 0"#,
            r#"heartwire_client_offline_seconds_count{reason="other"} 0"#,
            r#"heartwire_client_reports_total{result="invalid"} 0"#,
            "heartwire_false_reaps_total 0",
            r#"heartwire_resumes_total{outcome="epoch_change"} 0"#,
            "heartwire_resume_replayed_messages_count 0",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }
}
