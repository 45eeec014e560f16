//! A plugin that loaded, and the one way every call reaches it: a fresh sandbox, instantiate,
//! `configure` with the plugin's settings, the world's own call, the guest's stdio logged, and a
//! failure classified into a [`CallError`]. The world files (`tool.rs`, `patch_filter.rs`,
//! `policy_filter.rs`) only say which export to call and what its answer means.

use std::sync::{Arc, RwLock};

use wasmtime::{Engine, Store};

use super::World;
use super::access::ClusterAccess;
use super::bindings::patch_filter::PatchFilterPre;
use super::bindings::policy_filter::PolicyFilterPre;
use super::bindings::tool::ToolPre;
use super::errors::CallError;
use super::manifest::Limits;
use super::sandbox::{CallState, Footprint, Slots, Ticker, new_store};

/// The most of a reason or an error message a plugin writes that is kept: these end up in
/// reports, Events and logs, where a plugin must not be able to put megabytes.
pub const MESSAGE_CAP: usize = 4 << 10;

/// `text` cut to [`MESSAGE_CAP`] bytes (at a character boundary), saying how much was cut.
pub(super) fn capped(mut text: String) -> String {
    if text.len() <= MESSAGE_CAP {
        return text;
    }
    let cut = text.len();
    let mut end = MESSAGE_CAP;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("... ({} more bytes cut)", cut - end));
    text
}

/// A plugin's template, by world.
pub(super) enum Template {
    Tool(ToolPre<CallState>),
    PatchFilter(PatchFilterPre<CallState>),
    PolicyFilter(PolicyFilterPre<CallState>),
}

/// What a call instantiates: the plugin as loaded, or (once snapshot.rs has made it) the plugin
/// as `configure` left it with these settings, which calls then skip.
pub(super) struct Prepared {
    pub(super) template: Template,
    pub(super) configured: bool,
    /// What one call takes from the pool.
    pub(super) footprint: Footprint,
}

impl Prepared {
    /// `component`'s template; `configured` when `component` is a configured snapshot.
    pub(super) fn new(
        template: Template,
        component: &wasmtime::component::Component,
        configured: bool,
    ) -> Self {
        Prepared {
            template,
            configured,
            footprint: Footprint::of(component),
        }
    }
}

/// The plugin's current [`Prepared`], replaced once when its configured snapshot is ready.
pub(super) type PreparedSlot = Arc<RwLock<Arc<Prepared>>>;

/// A plugin that loaded: compiled, linked, and its settings accepted.
pub struct LoadedPlugin {
    pub name: String,
    pub world: World,
    /// sha256 of the component, hex.
    pub digest: String,
    pub limits: Limits,
    pub size: usize,
    pub(super) settings: String,
    /// What the plugin may reach over HTTP (tools only).
    pub(super) egress: Option<Arc<super::egress::Egress>>,
    pub(super) prepared: PreparedSlot,
    pub(super) engine: Engine,
    /// Permits for the engine's instance pool; None when instances are not pooled.
    pub(super) slots: Option<Arc<Slots>>,
    /// Deadlines need the epoch to advance for as long as any plugin can be called.
    pub(super) _ticker: Arc<Ticker>,
}

/// What every world exports: `configure`, called on each fresh instance before anything else.
pub(super) trait Configure {
    fn configure(
        &self,
        store: &mut Store<CallState>,
        settings: &str,
    ) -> wasmtime::Result<Result<(), String>>;
}

/// Each world's bindings export `configure` under the same name; one impl covers all three.
macro_rules! configure_for {
    ($($world:ty),+) => {$(
        impl Configure for $world {
            fn configure(
                &self,
                store: &mut Store<CallState>,
                settings: &str,
            ) -> wasmtime::Result<Result<(), String>> {
                self.call_configure(store, settings)
            }
        }
    )+};
}
configure_for!(
    super::bindings::tool::Tool,
    super::bindings::patch_filter::PatchFilter,
    super::bindings::policy_filter::PolicyFilter
);

impl LoadedPlugin {
    /// What calls instantiate now.
    pub(super) fn prepared(&self) -> Arc<Prepared> {
        self.prepared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether calls start from the plugin as `configure` left it (its snapshot is in use)
    /// rather than running `configure` first.
    pub fn configured_once(&self) -> bool {
        self.prepared().configured
    }

    /// Runs `call` on a fresh instance: `instantiate` makes it, `configure` gets the settings
    /// (a refusal is [`CallError::Settings`]) unless `prepared` is already configured, then
    /// `body` calls the world's export. What the guest printed goes to the log; a trap becomes
    /// the limit it hit, if any.
    pub(super) fn call<I: Configure, T>(
        &self,
        prepared: &Prepared,
        call: &str,
        access: Option<ClusterAccess>,
        instantiate: impl FnOnce(&mut Store<CallState>) -> wasmtime::Result<I>,
        body: impl FnOnce(&I, &mut Store<CallState>) -> wasmtime::Result<T>,
    ) -> Result<T, CallError> {
        // Waiting for room in the pool counts against the call's deadline like everything else.
        let deadline = std::time::Instant::now() + self.limits.timeout;
        let _slot = match &self.slots {
            Some(slots) => Some(slots.acquire(prepared.footprint, deadline).ok_or_else(|| {
                CallError::Deadline {
                    plugin: self.name.clone(),
                    call: call.to_string(),
                    limit: self.limits.timeout,
                    waiting_on: Some("a free sandbox (the instance pool is full)".into()),
                }
            })?),
            None => None,
        };
        let mut store = new_store(
            &self.engine,
            &self.name,
            &self.limits,
            deadline,
            access,
            self.egress.clone(),
        );
        let result = (|| -> wasmtime::Result<Result<T, String>> {
            let instance = instantiate(&mut store)?;
            if !prepared.configured
                && let Err(message) = instance.configure(&mut store, &self.settings)?
            {
                return Ok(Err(message));
            }
            Ok(Ok(body(&instance, &mut store)?))
        })();
        self.log_stdio(call, &store);
        // A read or request the deadline cut ends the call as past it, whatever the guest did
        // next.
        if let Some(read) = store.data().cut_off() {
            return Err(CallError::Deadline {
                plugin: self.name.clone(),
                call: call.to_string(),
                limit: self.limits.timeout,
                waiting_on: Some(read),
            });
        }
        match result {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(message)) => Err(self.settings_error(message)),
            Err(e) => Err(CallError::from_wasmtime(
                &self.name,
                &self.limits,
                call,
                store.data(),
                e,
            )),
        }
    }

    /// Runs `configure` on a fresh instance (only makes the instance once the plugin is
    /// configured once); used at load time, and by the benchmark to tell what a call spends
    /// before its export runs.
    #[doc(hidden)]
    pub fn check_settings(&self) -> Result<(), CallError> {
        let prepared = self.prepared();
        let p = &prepared;
        match &prepared.template {
            Template::Tool(pre) => {
                self.call(p, "configure", None, |s| pre.instantiate(s), |_, _| Ok(()))
            }
            Template::PatchFilter(pre) => {
                self.call(p, "configure", None, |s| pre.instantiate(s), |_, _| Ok(()))
            }
            Template::PolicyFilter(pre) => {
                self.call(p, "configure", None, |s| pre.instantiate(s), |_, _| Ok(()))
            }
        }
    }

    /// The error for `call` made of a plugin of another world.
    pub(super) fn wrong_world(&self, call: &str, expected: World) -> CallError {
        CallError::WrongWorld {
            plugin: self.name.clone(),
            call: call.to_string(),
            world: self.world,
            expected,
        }
    }

    /// Sends what the guest printed to the operator's log, capped.
    fn log_stdio(&self, call: &str, store: &Store<CallState>) {
        for (stream, pipe) in [
            ("stdout", &store.data().stdout),
            ("stderr", &store.data().stderr),
        ] {
            let bytes = pipe.contents();
            if !bytes.is_empty() {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
                // A tool prints what it read (logs, env): redacted like anything it returns.
                let text = crate::redact::redact_text(text.trim_end());
                tracing::info!(plugin = %self.name, call, stream, "{text}");
            }
        }
    }

    /// Refuses an answer over the plugin's output limit.
    pub(super) fn check_output(&self, call: &str, text: &str) -> Result<(), CallError> {
        if text.len() > self.limits.output_bytes {
            return Err(CallError::Output {
                plugin: self.name.clone(),
                call: call.to_string(),
                size: text.len(),
                limit: self.limits.output_bytes,
            });
        }
        Ok(())
    }

    fn settings_error(&self, message: String) -> CallError {
        CallError::Settings {
            plugin: self.name.clone(),
            call: "configure".into(),
            message: capped(message),
        }
    }
}
