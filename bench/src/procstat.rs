//! CPU time and memory of a process (this one, or the server's child process), and how busy
//! the whole machine was, read from Linux's `/proc`. Readers return `None` where `/proc` is
//! missing or unreadable; the parsers are pure.

use std::fs;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Clock ticks per second of the CPU times in `/proc`: the kernel reports them in USER_HZ,
/// which is 100 on every architecture Rondo builds for (`getconf CLK_TCK`).
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc/PID/clear_refs` takes to reset the peak resident memory (`VmHWM`) to the
/// current resident memory (Linux 4.0 and later).
const RESET_PEAK_RSS: &str = "5";

/// One process as `/proc` shows it.
#[derive(Debug, Clone)]
pub struct Proc {
    /// `/proc/self` or `/proc/PID`.
    dir: PathBuf,
}

impl Proc {
    /// This process: the workers and the benchmark's clients.
    pub fn current() -> Proc {
        Proc {
            dir: PathBuf::from("/proc/self"),
        }
    }

    /// The process `pid`, such as the server's child process.
    pub fn of(pid: u32) -> Proc {
        Proc {
            dir: PathBuf::from(format!("/proc/{pid}")),
        }
    }

    /// User plus system CPU seconds the process has used so far, all its threads included.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let ticks = parse_cpu_ticks(&fs::read_to_string(self.dir.join("stat")).ok()?)?;
        // Tick counts stay far below 2^52, so the conversion is exact.
        Some(ticks as f64 / TICKS_PER_SECOND)
    }

    /// Resident memory now (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        parse_status_kib(&self.status()?, "VmRSS")
    }

    /// Peak resident memory (`VmHWM`) since the process started or since
    /// [`Proc::reset_peak_rss`], in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        parse_status_kib(&self.status()?, "VmHWM")
    }

    /// Resets the peak resident memory to the current one, so that the next
    /// [`Proc::peak_rss_kib`] is the peak of what ran in between. False when the kernel
    /// refused.
    pub fn reset_peak_rss(&self) -> bool {
        fs::write(self.dir.join("clear_refs"), RESET_PEAK_RSS).is_ok()
    }

    fn status(&self) -> Option<String> {
        fs::read_to_string(self.dir.join("status")).ok()
    }
}

/// The machine's CPU time so far, summed over all CPUs, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCpu {
    /// Ticks spent on anything but idling or waiting for IO.
    busy: u64,
    /// All ticks.
    total: u64,
}

impl HostCpu {
    /// The counters now.
    pub fn now() -> Option<HostCpu> {
        parse_host_cpu(&fs::read_to_string("/proc/stat").ok()?)
    }

    /// Percentage of all CPUs' time spent busy between `earlier` and `self`.
    pub fn busy_percent_since(&self, earlier: &HostCpu) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| busy as f64 * 100.0 / total as f64)
    }
}

/// What one phase of the benchmark cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// How long the phase ran.
    pub wall: Duration,
    /// CPU seconds of this process (workers and the benchmark's clients).
    pub process_cpu_s: Option<f64>,
    /// CPU seconds of the server's process.
    pub server_cpu_s: Option<f64>,
    /// Peak resident memory of the server's process during the phase, in KiB; `None` when
    /// the kernel would not reset the peak, so the phase's own peak is unknown.
    pub server_peak_rss_kib: Option<u64>,
    /// Share of the whole machine's CPU time that was busy, PostgreSQL included, in percent.
    pub host_busy_pct: Option<f64>,
}

impl Usage {
    /// The server's CPU time as a percentage of one core over the phase.
    pub fn server_cpu_pct(&self) -> Option<f64> {
        percent_of_one_core(self.server_cpu_s?, self.wall)
    }
}

/// A phase's result together with what it cost.
#[derive(Debug, Clone)]
pub struct Measured<T> {
    /// What the phase returned.
    pub value: T,
    /// CPU and memory used meanwhile.
    pub usage: Usage,
}

impl<T, E> Measured<Result<T, E>> {
    /// The measurement of a phase that succeeded, or its error.
    pub fn transpose(self) -> Result<Measured<T>, E> {
        Ok(Measured {
            value: self.value?,
            usage: self.usage,
        })
    }
}

/// Runs `phase` and measures the CPU it used, in this process, in the `server` process and
/// on the whole machine, and the server's peak memory.
pub async fn measured<T>(server: &Proc, phase: impl Future<Output = T>) -> Measured<T> {
    let peak_reset = server.reset_peak_rss();
    let process_before = Proc::current().cpu_seconds();
    let server_before = server.cpu_seconds();
    let host_before = HostCpu::now();
    let started = Instant::now();
    let value = phase.await;
    let wall = started.elapsed();
    let host_after = HostCpu::now();
    Measured {
        value,
        usage: Usage {
            wall,
            process_cpu_s: difference(Proc::current().cpu_seconds(), process_before),
            server_cpu_s: difference(server.cpu_seconds(), server_before),
            server_peak_rss_kib: server.peak_rss_kib().filter(|_| peak_reset),
            host_busy_pct: host_after
                .zip(host_before)
                .and_then(|(after, before)| after.busy_percent_since(&before)),
        },
    }
}

/// `after - before` when both were read.
fn difference(after: Option<f64>, before: Option<f64>) -> Option<f64> {
    Some(after? - before?)
}

/// `cpu_s` CPU seconds over `wall` as a percentage of one core; `None` for no time at all.
pub fn percent_of_one_core(cpu_s: f64, wall: Duration) -> Option<f64> {
    (!wall.is_zero()).then(|| cpu_s * 100.0 / wall.as_secs_f64())
}

/// utime + stime from the text of `/proc/PID/stat`. The command name in field 2 may hold
/// spaces and parentheses, so fields are counted from its closing parenthesis.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts with field 3 (state); utime and stime are fields 14 and 15.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The `{field}:  1234 kB` line of `/proc/PID/status`, in KiB.
fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// The aggregate `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq steal
/// (guest time is already counted in user and nice).
fn parse_host_cpu(stat: &str) -> Option<HostCpu> {
    let line = stat
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))?
        .split_whitespace()
        .take(8)
        .map(str::parse)
        .collect::<Result<Vec<u64>, _>>()
        .ok()?;
    let total: u64 = line.iter().sum();
    let idle = line.get(3)? + line.get(4).copied().unwrap_or(0);
    Some(HostCpu {
        busy: total - idle,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (rondo (bench) x) S 1 4242 4242 0 -1 4194304 9000 0 0 0 \
                    1500 250 0 0 20 0 12 0 100 1000000 5000";
        assert_eq!(parse_cpu_ticks(stat), Some(1750));
    }

    #[test]
    fn truncated_stat_has_no_cpu_ticks() {
        assert_eq!(parse_cpu_ticks("4242 (rondo-bench) S 1 2 3"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\trondo-bench\nVmPeak:\t  900000 kB\nVmHWM:\t  123456 kB\n\
                      VmRSS:\t     100 kB\nRssAnon:\t  80 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(123_456));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(100));
        assert_eq!(parse_status_kib("Name:\tx\n", "VmHWM"), None);
    }

    #[test]
    fn a_status_field_is_matched_by_its_whole_name() {
        let status = "VmRSSx:\t 7 kB\nVmRSS:\t 9 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(9));
        assert_eq!(parse_status_kib("VmRSS:\t 9 MB\n", "VmRSS"), None);
    }

    #[test]
    fn host_busy_share_excludes_idle_and_iowait() {
        let before = parse_host_cpu("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        let after = parse_host_cpu("cpu  250 0 150 800 200 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(before.busy, 200);
        assert_eq!(after.busy_percent_since(&before), Some(50.0));
        assert_eq!(before.busy_percent_since(&before), None);
    }

    #[test]
    fn cpu_share_of_one_core_divides_by_the_wall_time() {
        assert_eq!(percent_of_one_core(0.5, Duration::from_secs(10)), Some(5.0));
        assert_eq!(
            percent_of_one_core(3.0, Duration::from_secs(2)),
            Some(150.0)
        );
        assert_eq!(percent_of_one_core(1.0, Duration::ZERO), None);
    }

    #[test]
    fn this_process_reads_its_own_cpu_and_memory() {
        let me = Proc::current();
        assert!(me.cpu_seconds().is_some_and(|s| s >= 0.0));
        let rss = me.rss_kib().unwrap();
        assert!(me.peak_rss_kib().unwrap() >= rss);
        assert_eq!(Proc::of(u32::MAX).cpu_seconds(), None);
    }
}
