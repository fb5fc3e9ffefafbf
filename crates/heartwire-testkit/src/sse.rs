//! A raw client of `/sse`: HTTP/1.1 over a plain TCP socket, the chunked body
//! decoded and the event stream parsed by hand, so the tests read exactly what the
//! server wrote.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::PATIENCE;

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its type; `message` when the stream named none.
    pub kind: String,
    /// Its `id`.
    pub id: Option<String>,
    /// Its data, its lines joined by `\n`.
    pub data: String,
}

impl Event {
    /// The data, read as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|err| panic!("event data {:?} is not JSON: {err}", self.data))
    }
}

/// What `GET /sse` answered: a stream, or a refusal.
#[derive(Debug)]
pub enum Opened {
    /// 200 and an event stream.
    Stream(SseClient),
    /// Any other status, with the body.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The response's headers, as they came, one per line.
        headers: String,
        /// The body.
        body: String,
    },
}

impl Opened {
    /// The stream, failing the test on a refusal.
    pub fn stream(self) -> SseClient {
        match self {
            Opened::Stream(client) => client,
            Opened::Refused { status, body, .. } => panic!("refused with {status}: {body}"),
        }
    }

    /// The status and body of a refusal, failing the test on a stream.
    pub fn refusal(self) -> (u16, String) {
        match self {
            Opened::Refused { status, body, .. } => (status, body),
            Opened::Stream(client) => {
                panic!("expected a refusal, got a stream: {}", client.headers)
            }
        }
    }
}

/// A reader of one event stream.
#[derive(Debug)]
pub struct SseClient {
    reader: BufReader<TcpStream>,
    /// Decoded body bytes not yet parsed into lines.
    body: Vec<u8>,
    /// Whether the body is over.
    ended: bool,
    /// Whether the body ended without its last chunk (size 0): the connection was cut.
    pub cut: bool,
    /// The response's headers, one per line.
    pub headers: String,
    /// The last `retry:` field seen, in milliseconds.
    pub retry_ms: Option<u64>,
    /// Comments seen so far (heartbeats).
    pub comments: usize,
}

/// Opens `path` (such as `/sse?channel=a`) on `addr` with extra request `headers`.
pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Opened {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let read = tokio::time::timeout(PATIENCE, reader.read_line(&mut line))
            .await
            .expect("the response head in time")
            .expect("read");
        assert!(read > 0, "the server hung up in the head: {head}");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {status_line}"));
    let headers = headers.replace("\r\n", "\n").to_ascii_lowercase();
    if status != 200 {
        let length: usize = headers
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|length| length.trim().parse().ok())
            .unwrap_or_else(|| panic!("a refusal has a content-length: {headers}"));
        let mut body = vec![0; length];
        tokio::time::timeout(PATIENCE, reader.read_exact(&mut body))
            .await
            .expect("the body in time")
            .expect("read");
        return Opened::Refused {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
    }
    assert!(
        headers.contains("content-type: text/event-stream"),
        "{headers}"
    );
    assert!(headers.contains("transfer-encoding: chunked"), "{headers}");
    Opened::Stream(SseClient {
        reader,
        body: Vec::new(),
        ended: false,
        cut: false,
        headers,
        retry_ms: None,
        comments: 0,
    })
}

impl SseClient {
    /// The next event, `None` when the stream ended; fails after [`PATIENCE`].
    pub async fn next(&mut self) -> Option<Event> {
        tokio::time::timeout(PATIENCE, self.next_unbounded())
            .await
            .expect("an event in time")
    }

    /// The next event of a type other than `subscribed` and `gap`.
    pub async fn next_message(&mut self) -> Event {
        loop {
            let event = self.next().await.expect("the stream goes on");
            if event.kind != "subscribed" && event.kind != "gap" {
                return event;
            }
        }
    }

    /// Reads until the stream ends, returning the events on the way.
    pub async fn rest(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }

    async fn next_unbounded(&mut self) -> Option<Event> {
        let mut kind = None;
        let mut id = None;
        let mut data: Option<String> = None;
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                if let Some(data) = data.take() {
                    return Some(Event {
                        kind: kind.take().unwrap_or_else(|| "message".to_owned()),
                        id: id.take(),
                        data,
                    });
                }
                kind = None;
                continue;
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => kind = Some(value.to_owned()),
                "id" => id = Some(value.to_owned()),
                "data" => match &mut data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => data = Some(value.to_owned()),
                },
                "retry" => self.retry_ms = value.parse().ok(),
                other => panic!("unknown field {other:?} in {line:?}"),
            }
        }
    }

    /// Whether the server closed the connection once the stream ended (nothing more
    /// comes, and the socket reaches its end), waiting up to [`PATIENCE`].
    pub async fn connection_closed(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(
            tokio::time::timeout(PATIENCE, self.reader.read_to_end(&mut rest)).await,
            Ok(Ok(0))
        )
    }

    /// The next line of the body, without its end; `None` at the end of the stream.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.body.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = self.body.drain(..=end).collect();
                let line = String::from_utf8(line).expect("the stream is UTF-8");
                return Some(line.trim_end_matches(['\n', '\r']).to_owned());
            }
            if self.ended || !self.chunk().await {
                return None;
            }
        }
    }

    /// Reads one chunk of the body into `body`; `false` at the last chunk or when the
    /// connection ended without it (`cut`).
    async fn chunk(&mut self) -> bool {
        let mut size_line = String::new();
        if self.reader.read_line(&mut size_line).await.unwrap_or(0) == 0 {
            self.ended = true;
            self.cut = true;
            return false;
        }
        let size = usize::from_str_radix(size_line.trim(), 16)
            .unwrap_or_else(|_| panic!("a chunk size: {size_line:?}"));
        if size == 0 {
            // The blank line that ends the (empty) trailer.
            let mut end = String::new();
            let _ = self.reader.read_line(&mut end).await;
            assert_eq!(end, "\r\n", "the body ends with a blank line");
            self.ended = true;
            return false;
        }
        let mut chunk = vec![0; size + 2];
        if self.reader.read_exact(&mut chunk).await.is_err() {
            self.ended = true;
            self.cut = true;
            return false;
        }
        assert_eq!(&chunk[size..], b"\r\n", "a chunk ends with CRLF");
        chunk.truncate(size);
        self.body.extend_from_slice(&chunk);
        true
    }
}
