//! echo-local's HTTP servers (the API and the embedded S3): hyper with read timeouts, so a slow
//! or silent client cannot hold a connection open. In Lambda, API Gateway reads the request.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// How long a client may take to send what it must.
#[derive(Debug, Clone, Copy)]
pub struct ReadTimeouts {
    /// The whole request head (and, between requests, the next one's first byte).
    pub header: Duration,
    /// Any gap in a request body.
    pub body_idle: Duration,
    /// A whole body (None: any length, as long as it keeps flowing: large S3 uploads).
    pub body_total: Option<Duration>,
}

impl ReadTimeouts {
    /// The API: bodies are at most a few MB.
    pub const API: ReadTimeouts =
        ReadTimeouts { header: Duration::from_secs(10), body_idle: Duration::from_secs(10), body_total: Some(Duration::from_secs(120)) };
    /// The embedded S3: browser uploads of up to 2 GiB, as long as they keep flowing.
    pub const STORAGE: ReadTimeouts =
        ReadTimeouts { header: Duration::from_secs(10), body_idle: Duration::from_secs(30), body_total: None };
}

/// Serves `app` on `listener` until the task is dropped; a connection past a timeout is closed.
pub async fn serve(listener: TcpListener, app: Router, timeouts: ReadTimeouts) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(%err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let req = req.map(|body| Body::new(TimedBody::new(Body::new(body), timeouts)));
                app.clone().oneshot(req)
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(timeouts.header);
            builder.http2().timer(TokioTimer::new());
            if let Err(err) = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await {
                tracing::debug!(%err, "connection ended");
            }
        });
    }
}

/// A request body that fails once it stalls for `body_idle` or runs past `body_total`.
struct TimedBody {
    inner: Body,
    idle: Duration,
    stall: Pin<Box<Sleep>>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    fn new(inner: Body, timeouts: ReadTimeouts) -> Self {
        let now = Instant::now();
        TimedBody {
            inner,
            idle: timeouts.body_idle,
            stall: Box::pin(tokio::time::sleep_until(now + timeouts.body_idle)),
            deadline: timeouts.body_total.map(|total| Box::pin(tokio::time::sleep_until(now + total))),
        }
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            let next = Instant::now() + this.idle;
            this.stall.as_mut().reset(next);
            return Poll::Ready(frame);
        }
        let late = this.deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready());
        if late || this.stall.as_mut().poll(cx).is_ready() {
            let err = std::io::Error::new(std::io::ErrorKind::TimedOut, "the request body was not sent in time");
            return Poll::Ready(Some(Err(axum::Error::new(err))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
