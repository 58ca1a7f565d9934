//! Serving connections within bounds, whatever clients do: a request's headers must arrive
//! within a time (which also closes idle keep-alive connections), the number of connections
//! is capped by closing the longest-idle one, and shutdown ends within a grace period.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::config::ConnectionLimits;

/// The application with the bounds it is served within.
pub struct App {
    pub router: Router,
    pub limits: ConnectionLimits,
    /// Its campaign attempts being sent finish within the shutdown grace period too.
    pub dispatcher: Arc<crate::campaigns::Dispatcher>,
    /// Its webhook deliveries being sent get their attempts recorded within it too.
    pub deliverer: Arc<crate::webhooks::Deliverer>,
}

/// How long an evicted connection may take to finish writing a response.
const EVICTION_GRACE: Duration = Duration::from_secs(1);
/// Most connections answered 503 at once when every connection is busy; beyond, dropped.
const OVERFLOW_ANSWERS: usize = 64;
const OVERFLOW_BODY: &str = r#"{"type":"urn:callhook:problem:service-unavailable","title":"Service Unavailable","status":503,"detail":"too many connections; retry shortly"}"#;

/// One open connection, as the accept loop sees it.
struct Connection {
    /// Requests being handled; a connection with none is idle and may be closed.
    busy: AtomicUsize,
    /// Milliseconds since the server started at which it last finished a request.
    idle_since: AtomicU64,
    evict: Notify,
}

struct Registry {
    started: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn len(&self) -> usize {
        self.open.lock().expect("registry lock").len()
    }

    fn add(&self) -> (u64, Arc<Connection>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.now_ms()),
            evict: Notify::new(),
        });
        self.open
            .lock()
            .expect("registry lock")
            .insert(id, connection.clone());
        (id, connection)
    }

    fn remove(&self, id: u64) {
        self.open.lock().expect("registry lock").remove(&id);
    }

    /// Asks the connection idle for longest to close; false when every one is busy.
    fn evict_idlest(&self) -> bool {
        let open = self.open.lock().expect("registry lock");
        let idlest = open
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|(id, c)| (c.idle_since.load(Ordering::Relaxed), **id));
        match idlest {
            Some((id, connection)) => {
                connection.evict.notify_one();
                let id = *id;
                drop(open);
                // Gone from the count now: it closes within EVICTION_GRACE.
                self.remove(id);
                true
            }
            None => false,
        }
    }
}

/// Marks a connection busy while a request is handled.
struct Busy<'a>(&'a Connection, &'a Registry);

impl<'a> Busy<'a> {
    fn enter(connection: &'a Connection, registry: &'a Registry) -> Self {
        connection.busy.fetch_add(1, Ordering::AcqRel);
        Self(connection, registry)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.idle_since.store(self.1.now_ms(), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` on an already-bound listener until `shutdown` completes; then lets requests
/// in flight finish for up to the grace period, closes whatever is still open, and returns.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let App {
        router,
        limits,
        dispatcher,
        deliverer,
    } = app;
    let registry = Arc::new(Registry {
        started: Instant::now(),
        next_id: AtomicU64::new(0),
        open: Mutex::default(),
    });
    let overflow = Arc::new(Semaphore::new(OVERFLOW_ANSWERS));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    accept_failed(&err, &registry).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        if registry.len() >= limits.max_connections && !registry.evict_idlest() {
            metrics::counter!("callhook_connections_refused_total").increment(1);
            if let Ok(permit) = overflow.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    let _permit = permit;
                    answer_overflow(stream).await;
                });
            }
            continue;
        }
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            stream,
            router.clone(),
            limits.header_timeout,
            registry.clone(),
            stopping.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        let requests = async { while connections.join_next().await.is_some() {} };
        tokio::join!(requests, dispatcher.drain(), deliverer.drain());
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            grace_secs = limits.shutdown_grace.as_secs_f64(),
            "closing connections (and campaign attempts) still open after the shutdown grace period"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Accept fails when the process is out of file descriptors: closing an idle connection
/// makes room for the next one, so that idle clients cannot lock callbacks out.
async fn accept_failed(err: &io::Error, registry: &Registry) {
    let exhausted = matches!(err.raw_os_error(), Some(23 | 24)); // ENFILE, EMFILE
    if exhausted {
        registry.evict_idlest();
    }
    tracing::warn!(error = %err, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(if exhausted { 10 } else { 50 })).await;
}

async fn answer_overflow(mut stream: TcpStream) {
    let _ = tokio::time::timeout(EVICTION_GRACE, async {
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
             retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{OVERFLOW_BODY}",
            OVERFLOW_BODY.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    header_timeout: Duration,
    registry: Arc<Registry>,
    mut stopping: watch::Receiver<bool>,
) {
    let (id, connection) = registry.add();
    let service = {
        let (connection, registry) = (connection.clone(), registry.clone());
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let (router, connection, registry) =
                (router.clone(), connection.clone(), registry.clone());
            async move {
                let _busy = Busy::enter(&connection, &registry);
                router.oneshot(request).await
            }
        })
    };
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    tokio::select! {
        _ = served.as_mut() => {}
        () = connection.evict.notified() => {
            served.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(EVICTION_GRACE, served.as_mut()).await;
        }
        () = stopped(&mut stopping) => {
            // Idle connections close now, and one still sending headers within a second; one
            // with a request in flight finishes it, within the server's grace period.
            served.as_mut().graceful_shutdown();
            if connection.busy.load(Ordering::Acquire) == 0 {
                let _ = tokio::time::timeout(EVICTION_GRACE, served.as_mut()).await;
            } else {
                let _ = served.as_mut().await;
            }
        }
    }
    registry.remove(id);
}

async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}
