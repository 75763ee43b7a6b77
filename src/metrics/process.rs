//! The standard `process_*` metrics every Prometheus client exports (CPU seconds, resident and
//! virtual memory, open and maximum file descriptors, start time), read from `/proc/self` when a
//! scrape asks, and `email_ratelimit_build_info`.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The process metrics, in their own registry (no `email_ratelimit_` prefix).
pub struct ProcessMetrics {
    pub(super) registry: Registry,
    cpu: Counter<f64, AtomicU64>,
    /// The CPU seconds already exported.
    cpu_done: Mutex<f64>,
    resident: Gauge,
    virtual_memory: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge,
}

impl ProcessMetrics {
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let cpu = Counter::<f64, AtomicU64>::default();
        registry.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            cpu.clone(),
        );
        let mut gauge = |name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let resident = gauge("process_resident_memory_bytes", "Resident memory size in bytes");
        let virtual_memory = gauge("process_virtual_memory_bytes", "Virtual memory size in bytes");
        let open_fds = gauge("process_open_fds", "Number of open file descriptors");
        let max_fds = gauge("process_max_fds", "Maximum number of open file descriptors");
        let start_time =
            gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds");
        Self {
            registry,
            cpu,
            cpu_done: Mutex::new(0.0),
            resident,
            virtual_memory,
            open_fds,
            max_fds,
            start_time,
        }
    }

    /// Reads `/proc/self` (a few small files); a read that fails leaves the old values.
    pub fn update(&self) {
        let Ok(me) = procfs::process::Process::myself() else { return };
        if let Ok(stat) = me.stat() {
            #[allow(clippy::cast_precision_loss)]
            let ticks = procfs::ticks_per_second().max(1) as f64;
            #[allow(clippy::cast_precision_loss)]
            let cpu = (stat.utime + stat.stime) as f64 / ticks;
            let mut done = self.cpu_done.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if cpu > *done {
                self.cpu.inc_by(cpu - *done);
                *done = cpu;
            }
            let bytes = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            self.resident.set(bytes(stat.rss.saturating_mul(procfs::page_size())));
            self.virtual_memory.set(bytes(stat.vsize));
            if let Ok(boot) = procfs::boot_time_secs() {
                self.start_time.set(bytes(boot + stat.starttime / procfs::ticks_per_second().max(1)));
            }
        }
        if let Ok(n) = me.fd_count() {
            self.open_fds.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Ok(limits) = me.limits()
            && let procfs::process::LimitValue::Value(n) = limits.max_open_files.soft_limit
        {
            self.max_fds.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `email_ratelimit_build_info{version}` = 1.
pub(super) fn register_build_info(registry: &mut Registry) {
    let info = Family::<Vec<(&'static str, String)>, Gauge>::default();
    registry.register("build_info", "The running build (always 1)", info.clone());
    info.get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_owned())]).set(1);
}
