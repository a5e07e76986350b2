//! Processor placement and accounting, both best effort: without `taskset` the run goes on
//! unpinned, and without `/proc` the CPU columns read "n/a".
//!
//! CPU time matters because on two cores the client can be the bottleneck: a server that
//! is not near 100% busy during a throughput measurement was not the limit, and its CPU
//! time per request is the figure that does not depend on the client.

use crate::error::{io, Error};
use std::process::{Command, Stdio};

/// Whether `taskset` (util-linux) can be run here.
pub fn taskset_available() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Pins every thread of this process, and every thread it starts later, to `cpu`.
///
/// Called before the runtime starts, so the threads sqlx and tokio create inherit it.
pub fn pin_self(cpu: usize) -> Result<(), Error> {
    let out = Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .output()
        .map_err(io("running taskset"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Run(format!(
            "taskset could not pin this process to CPU {cpu}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Reads consumed CPU time (user + system) of processes from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    /// `/proc` counts in clock ticks; almost always 100 per second, asked once to be sure.
    ticks_per_sec: f64,
}

impl CpuClock {
    pub fn new() -> Self {
        let ticks_per_sec = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0);
        Self { ticks_per_sec }
    }

    /// CPU seconds `pid` has used so far, all its threads included.
    pub fn seconds(&self, pid: u32) -> Option<f64> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(stat_ticks(&text)? / self.ticks_per_sec)
    }
}

impl CpuClock {
    /// Seconds core `cpu` has spent busy (anything but idle and iowait) since boot, all
    /// processes together: set against the server's own time, it shows whether anything
    /// else ran on the server's core during a measurement.
    pub fn core_busy_seconds(&self, cpu: usize) -> Option<f64> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        Some(core_busy_ticks(&text, cpu)? / self.ticks_per_sec)
    }
}

/// Busy ticks of `cpu<N>` in `/proc/stat`: user nice system idle iowait irq softirq steal
/// …, all but idle (4th) and iowait (5th). Guest time is already inside user and nice.
fn core_busy_ticks(stat: &str, cpu: usize) -> Option<f64> {
    let label = format!("cpu{cpu} ");
    let line = stat.lines().find(|l| l.starts_with(&label))?;
    let ticks: Vec<f64> = line[label.len()..]
        .split_whitespace()
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    if ticks.len() < 5 {
        return None;
    }
    Some(ticks.iter().sum::<f64>() - ticks[3] - ticks[4])
}

/// utime + stime from a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted from
/// the last `)`: after it come state (field 3) … utime (14), stime (15).
fn stat_ticks(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Context switches of all of `pid`'s threads so far (voluntary and not). On one core,
/// every hand-off between the runtime thread and a worker thread (sqlx runs each SQLite
/// connection on its own thread) costs two of them, so this counts those hand-offs.
pub fn context_switches(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        // A thread that exited between the listing and the read simply stops counting.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        total += status_switches(&status);
    }
    Some(total)
}

fn status_switches(status: &str) -> u64 {
    status
        .lines()
        .filter_map(|line| {
            line.strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
        })
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
}

/// One line about the processor, for the report ("model name" of `/proc/cpuinfo`).
pub fn model_name() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_command_names_end() {
        let line = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(stat_ticks(line), Some(300.0));
        assert_eq!(stat_ticks("garbage"), None);
    }

    #[test]
    fn core_busy_time_leaves_out_idle_and_iowait() {
        let stat =
            "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 100 5 50 1000 20 1 2 3 0 0\ncpu1 1 1 1 1 1 1 1 1 0 0\n";
        assert_eq!(core_busy_ticks(stat, 0), Some(161.0));
        assert_eq!(core_busy_ticks(stat, 2), None);
    }

    #[test]
    fn both_kinds_of_switches_are_summed() {
        let status =
            "Name:\tserver\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(status_switches(status), 123);
    }
}
