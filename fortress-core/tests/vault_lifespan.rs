//! A resolved credential lives only while the upstream request is built: its lifespan is
//! recorded in the `fortress_credential_lifespan_seconds` histogram, and through the real
//! credential layer and the SQLite envelope vault it stays well under one second.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};

use fortress_core::audit::MemoryAuditSink;
use fortress_core::body;
use fortress_core::call::{Action, Call, Resource};
use fortress_core::denial::PlainResponder;
use fortress_core::layer::credential::{ConnectorSlot, CredentialLayer, HeaderInjector};
use fortress_core::secret::Secret;
use fortress_core::subject::{Subject, WorkspaceId};
use fortress_core::vault::keys::{ManagedKeys, RootKey};
use fortress_core::vault::{CredentialSlot, EnvelopeVault, Vault};
use http::{Request, Response, StatusCode};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use tower::{Layer, ServiceExt, service_fn};

const LIFESPAN: &str = "fortress_credential_lifespan_seconds";

/// Captures every lifespan sample recorded in this test binary.
#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

struct CaptureLifespans(Arc<Samples>);

impl Recorder for CaptureLifespans {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        if key.name() == LIFESPAN {
            Histogram::from_arc(self.0.clone())
        } else {
            Histogram::noop()
        }
    }
}

fn samples() -> Arc<Samples> {
    static SAMPLES: OnceLock<Arc<Samples>> = OnceLock::new();
    SAMPLES
        .get_or_init(|| {
            let samples = Arc::new(Samples::default());
            metrics::set_global_recorder(CaptureLifespans(samples.clone()))
                .expect("the only recorder of this binary");
            samples
        })
        .clone()
}

#[tokio::test]
async fn per_request_credentials_live_well_under_a_second() {
    let samples = samples();
    let dir = tempfile::tempdir().unwrap();
    let vault: Arc<dyn Vault> = Arc::new(
        EnvelopeVault::open_sqlite(
            dir.path(),
            Arc::new(ManagedKeys::new(RootKey::generate())),
            Arc::new(MemoryAuditSink::new()),
        )
        .await
        .unwrap(),
    );
    let ws = WorkspaceId::new("acme");
    vault
        .put(
            &CredentialSlot::workspace(ws.clone(), "anthropic"),
            Secret::from("sk-ant-canary"),
        )
        .await
        .unwrap();

    let layer = CredentialLayer::new(
        vault,
        Arc::new(ConnectorSlot::fixed("anthropic")),
        HeaderInjector::bearer(),
        Arc::new(PlainResponder),
    );
    let upstream = service_fn(|request: Request<()>| async move {
        let header = request.headers().get(http::header::AUTHORIZATION).cloned();
        let ok =
            header.is_some_and(|h| h.is_sensitive() && h.as_bytes() == b"Bearer sk-ant-canary");
        let mut response = Response::new(body::empty());
        *response.status_mut() = if ok {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        Ok::<_, Infallible>(response)
    });
    let service = layer.layer(upstream);

    const REQUESTS: usize = 20;
    let before = samples.0.lock().unwrap().len();
    for _ in 0..REQUESTS {
        let call = Call::new(
            Subject::app("ci", ws.clone()),
            Action::ListModels,
            Resource::workspace("acme"),
        );
        let mut request = Request::new(());
        request.extensions_mut().insert(Arc::new(call));
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    let recorded = samples.0.lock().unwrap()[before..].to_vec();
    assert!(
        recorded.len() >= REQUESTS,
        "each request records a lifespan ({} recorded)",
        recorded.len()
    );
    let longest = recorded.iter().copied().fold(0.0, f64::max);
    assert!(longest < 1.0, "a credential lived {longest} s");
}
