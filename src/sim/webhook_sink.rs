//! A real HTTP webhook receiver for tests and the demo.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::Router;

use super::server::ServerHandle;

/// What the receiver has seen, and what it should answer next.
#[derive(Default)]
struct SinkState {
    /// Answers still to give (status and extra headers), in order; 200 once empty.
    script: VecDeque<(u16, Vec<(String, String)>)>,
    received: Vec<ReceivedWebhook>,
}

fn lock(m: &Mutex<SinkState>) -> MutexGuard<'_, SinkState> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A webhook receiver on `127.0.0.1:0`, on its own thread and runtime; stops on drop.
///
/// It accepts requests on any path and method (alert senders POST) and records every one of them,
/// including those it answered with a scripted error, so tests can check retries and signatures.
pub struct WebhookSink {
    state: Arc<Mutex<SinkState>>,
    url: String,
    // Held for its Drop: stops the server thread.
    _server: ServerHandle,
}

impl WebhookSink {
    /// Binds `127.0.0.1:0` and starts receiving. Blocks only until the listener is bound.
    ///
    /// # Panics
    /// If the loopback listener cannot be bound.
    pub fn start() -> WebhookSink {
        let state = Arc::new(Mutex::new(SinkState::default()));
        let router = Router::new().fallback(receive).with_state(state.clone());
        let server = ServerHandle::spawn("webhook-sink", router);
        let url = format!("http://{}/hook", server.addr());
        WebhookSink {
            state,
            url,
            _server: server,
        }
    }

    /// `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Answers these statuses, in order, to the next requests; then 200 forever. Replaces any
    /// statuses still pending from an earlier call.
    pub fn respond_with(&self, statuses: Vec<u16>) {
        lock(&self.state).script = statuses.into_iter().map(|s| (s, Vec::new())).collect();
    }

    /// Answers `status` with the header `name: value` to the next `times` requests (e.g. 503 with a
    /// `Retry-After`); then 200. Replaces any answers still pending.
    pub fn respond_with_header(&self, status: u16, name: &str, value: &str, times: usize) {
        let answer = (status, vec![(name.to_owned(), value.to_owned())]);
        lock(&self.state).script = std::iter::repeat_n(answer, times).collect();
    }

    /// Every request received so far, in arrival order, including ones answered with errors.
    pub fn received(&self) -> Vec<ReceivedWebhook> {
        lock(&self.state).received.clone()
    }
}

/// One request the sink received.
#[derive(Clone, Debug)]
pub struct ReceivedWebhook {
    /// The URL path, e.g. `/hook`.
    pub path: String,
    /// Every header in arrival order; names are lower-case.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
    /// The status the sink answered with.
    pub answered: u16,
}

impl ReceivedWebhook {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    /// If the body is not JSON (a failed expectation in the calling test; the body is shown).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "webhook body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

async fn receive(State(state): State<Arc<Mutex<SinkState>>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut st = lock(&state);
    let (answered, extra_headers) = st.script.pop_front().unwrap_or((200, Vec::new()));
    st.received.push(ReceivedWebhook {
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        answered,
    });
    drop(st);
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::from_u16(answered).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in extra_headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(&value),
        ) {
            resp.headers_mut().insert(n, v);
        }
    }
    resp
}
