//! What `/api/info` says of every node: each node with the API on publishes its own
//! [`info`](super::inspect::info_of) every [`REPORT_INTERVAL`] on [`NODES_CHANNEL`],
//! and keeps the latest report of each node it hears from (through Redis, every
//! node of the cluster) for [`REPORT_TTL`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::time::Instant;

use crate::broker::PublishRequest;
use crate::publication::Payload;
use crate::state::ServerState;

/// The channel of the reports (a `$` name: no client may use it).
pub(crate) const NODES_CHANNEL: &str = "$heartwire:nodes";
/// How often a node reports.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(2);
/// How long a report counts: a node silent for longer is gone.
const REPORT_TTL: Duration = Duration::from_secs(7);

/// The latest report of each node, by node id.
#[derive(Debug)]
pub(crate) struct NodeReports {
    /// This node's id.
    pub(crate) id: String,
    reports: Mutex<BTreeMap<String, (Instant, Value)>>,
}

impl Default for NodeReports {
    fn default() -> Self {
        Self {
            id: crate::id::random_id(),
            reports: Mutex::default(),
        }
    }
}

impl NodeReports {
    /// Keeps `report` (a node's info with its `node` id).
    pub(crate) fn heard(&self, report: Value) {
        if let Some(id) = report["node"].as_str() {
            self.reports
                .lock()
                .insert(id.to_owned(), (Instant::now(), report));
        }
    }

    /// The reports in force, with `own` (this node's info now) in place of this
    /// node's last one; ordered by node id.
    pub(crate) fn current(&self, own: Value) -> Vec<Value> {
        let now = Instant::now();
        let mut reports = self.reports.lock();
        reports.retain(|_, (at, _)| now.duration_since(*at) < REPORT_TTL);
        let mut all: BTreeMap<String, Value> = reports
            .iter()
            .map(|(id, (_, report))| (id.clone(), report.clone()))
            .collect();
        all.insert(self.id.clone(), own);
        all.into_values().collect()
    }
}

/// Publishes this node's info every [`REPORT_INTERVAL`], for as long as it runs.
pub(crate) async fn report(state: Arc<ServerState>) -> std::convert::Infallible {
    let mut interval = tokio::time::interval(REPORT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let info = super::inspect::info_of(&state);
        let data = serde_json::value::to_raw_value(&info).expect("info encodes as JSON");
        state.broker.publish(PublishRequest {
            channel: Arc::from(NODES_CHANNEL),
            payload: Payload::Json(data),
            retain: false,
            origin: None,
            ack_id: None,
            publisher: Arc::from(super::publish::API_PUBLISHER),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn own_info_replaces_own_report_and_others_are_kept_in_order() {
        let reports = NodeReports::default();
        let own = reports.id.clone();
        reports.heard(json!({"node": own, "connections": 1}));
        reports.heard(json!({"node": "0", "connections": 5}));
        reports.heard(json!({"no id": true}));
        let current = reports.current(json!({"node": own, "connections": 2}));
        assert_eq!(current.len(), 2);
        assert_eq!(current[0], json!({"node": "0", "connections": 5}));
        assert_eq!(current[1]["connections"], 2);
    }
}
