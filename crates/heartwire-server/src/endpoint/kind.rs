//! The names of the endpoints (the WebSocket ones and `/sse`), for logs and metrics.

/// Which endpoint a connection came through: its name in logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndpointKind {
    /// `/ws`
    Native,
    /// `/ws/{facility}`
    Ws4Redis,
    /// `/echo`
    Echo,
    /// `/sse`: Server-Sent Events, not a WebSocket
    Sse,
}

impl EndpointKind {
    /// Every endpoint, in the order `/metrics` lists them.
    pub(crate) const ALL: [EndpointKind; 4] = [
        EndpointKind::Native,
        EndpointKind::Ws4Redis,
        EndpointKind::Echo,
        EndpointKind::Sse,
    ];

    /// The endpoint's name in metric labels.
    pub(crate) fn label(self) -> &'static str {
        match self {
            EndpointKind::Native => "native",
            EndpointKind::Ws4Redis => "ws4redis",
            EndpointKind::Echo => "echo",
            EndpointKind::Sse => "sse",
        }
    }
}
