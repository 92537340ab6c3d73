//! CPU time and peak memory of this process, and how busy the whole machine was, read from
//! Linux's `/proc`. Readers return `None` where `/proc` is missing or unreadable; the parsers
//! are pure.

use std::fs;
use std::future::Future;

/// Clock ticks per second of the CPU times in `/proc`: the kernel reports them in USER_HZ,
/// which is 100 on every architecture Rondo builds for (`getconf CLK_TCK`).
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds this process has used so far (its threads included: here
/// the server, the workers and the benchmark's clients).
pub fn process_cpu_seconds() -> Option<f64> {
    let ticks = parse_cpu_ticks(&fs::read_to_string("/proc/self/stat").ok()?)?;
    // Tick counts stay far below 2^52, so the conversion is exact.
    Some(ticks as f64 / TICKS_PER_SECOND)
}

/// Peak resident memory (`VmHWM`) of this process so far, in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    parse_vm_hwm(&fs::read_to_string("/proc/self/status").ok()?)
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

/// CPU used while one phase of the benchmark ran.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU seconds of this process (server, workers and clients).
    pub process_cpu_s: Option<f64>,
    /// Share of the whole machine's CPU time that was busy, PostgreSQL included, in percent.
    pub host_busy_pct: Option<f64>,
}

/// A phase's result together with the CPU it used.
#[derive(Debug, Clone)]
pub struct Measured<T> {
    /// What the phase returned.
    pub value: T,
    /// CPU used meanwhile.
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

/// Runs `phase` and measures the CPU it used.
pub async fn measured<T>(phase: impl Future<Output = T>) -> Measured<T> {
    let process_before = process_cpu_seconds();
    let host_before = HostCpu::now();
    let value = phase.await;
    let host_after = HostCpu::now();
    Measured {
        value,
        usage: Usage {
            process_cpu_s: process_cpu_seconds()
                .zip(process_before)
                .map(|(after, before)| after - before),
            host_busy_pct: host_after
                .zip(host_before)
                .and_then(|(after, before)| after.busy_percent_since(&before)),
        },
    }
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

/// The `VmHWM:  1234 kB` line of `/proc/PID/status`, in KiB.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
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
    fn vm_hwm_is_read_in_kib() {
        let status =
            "Name:\trondo-bench\nVmPeak:\t  900000 kB\nVmHWM:\t  123456 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(123_456));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
    }

    #[test]
    fn host_busy_share_excludes_idle_and_iowait() {
        let before = parse_host_cpu("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        let after = parse_host_cpu("cpu  250 0 150 800 200 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(before.busy, 200);
        assert_eq!(after.busy_percent_since(&before), Some(50.0));
        assert_eq!(before.busy_percent_since(&before), None);
    }
}
