//! `cargo xtask fuzz`: builds the fuzz targets of `fuzz/` with cargo-fuzz (installed on first
//! use) and runs each for a time budget, printing progress and each target's figures.
//!
//! cargo-fuzz runs on the stable toolchain with `--sanitizer none` (docs/decisions.md): the
//! targets look for panics, wrong answers and hangs in safe Rust, which need no sanitizer.
//! Each run starts from the committed corpus (`fuzz/corpus/<target>`, read only) and a working
//! corpus in the target directory (`<target dir>/fuzz/corpus/<target>`), which grows from run
//! to run; `--merge` adds what reached new code edges to the committed corpus. A crash fails the
//! command with the panic, the input's path and how to reproduce it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How often a running target reports.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// A single input taking longer than this (seconds) is reported as a hang.
const INPUT_TIMEOUT_SECONDS: u64 = 10;

/// What `cargo xtask fuzz` was asked for.
pub struct Options {
    /// Seconds each target runs.
    pub seconds: u64,
    /// Only these targets (all when empty).
    pub targets: Vec<String>,
    /// Add the working corpus's new coverage to the committed corpus afterwards.
    pub merge: bool,
}

/// The figures libFuzzer prints at the end of a run (`-print_final_stats=1`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Figures {
    /// Inputs executed.
    pub execs: u64,
    /// Average executions per second.
    pub execs_per_second: u64,
    /// Inputs added to the corpus for new coverage.
    pub new_units: u64,
    /// Peak resident memory, MiB.
    pub peak_rss_mb: u64,
}

/// Reads the `stat::` lines of a libFuzzer log.
pub fn final_stats(log: &str) -> Option<Figures> {
    let mut figures = Figures::default();
    let mut found = false;
    for line in log.lines() {
        let Some((name, value)) = line
            .strip_prefix("stat::")
            .and_then(|rest| rest.split_once(':'))
        else {
            continue;
        };
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        found = true;
        match name {
            "number_of_executed_units" => figures.execs = value,
            "average_exec_per_sec" => figures.execs_per_second = value,
            "new_units_added" => figures.new_units = value,
            "peak_rss_mb" => figures.peak_rss_mb = value,
            _ => {}
        }
    }
    found.then_some(figures)
}

/// The last status line of a running libFuzzer (`#123456 pulse cov: ... exec/s: ...`).
pub fn last_status(log: &str) -> Option<&str> {
    log.lines()
        .rev()
        .find(|line| line.starts_with('#') && line.contains("exec/s"))
}

/// The part of a failed run's log that says what happened: from the panic or libFuzzer's error
/// on, without the stack frames, with the "Reproduce with" instructions.
pub fn failure_report(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines
        .iter()
        .position(|line| {
            line.contains("panicked at")
                || line.contains("ERROR: libFuzzer")
                || line.contains("==ERROR")
        })
        .unwrap_or_else(|| lines.len().saturating_sub(30));
    let mut report = Vec::new();
    let mut in_backtrace = false;
    for line in &lines[start..] {
        let trimmed = line.trim_start();
        if trimmed.to_ascii_lowercase().starts_with("stack backtrace:") {
            in_backtrace = true;
            continue;
        }
        if in_backtrace {
            // Frames are `N: symbol` and `at file:line`; the first other line ends them.
            let frame = trimmed
                .split_once(':')
                .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
                || trimmed.starts_with("at ")
                || trimmed.starts_with("note:");
            if frame {
                continue;
            }
            in_backtrace = false;
        }
        // Status lines, and the input as a hex dump (its base64 and path are kept).
        if !line.trim().is_empty() && !line.starts_with('#') && !line.starts_with("0x") {
            report.push(*line);
        }
    }
    report.join("\n")
}

/// The fuzz targets: the file stems of `fuzz_targets/*.rs`, sorted.
pub fn targets(fuzz_dir: &Path) -> anyhow::Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// libFuzzer's flags for a run of `seconds` with an optional dictionary.
pub fn libfuzzer_args(seconds: u64, dictionary: Option<&Path>) -> Vec<String> {
    let mut args = vec![
        format!("-max_total_time={seconds}"),
        format!("-timeout={INPUT_TIMEOUT_SECONDS}"),
        "-print_final_stats=1".to_owned(),
    ];
    if let Some(dictionary) = dictionary {
        args.push(format!("-dict={}", dictionary.display()));
    }
    args
}

/// The target directory cargo builds into (`CARGO_TARGET_DIR`, else `<root>/target`).
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Runs `cargo xtask fuzz`.
pub fn run(root: &Path, options: &Options) -> anyhow::Result<()> {
    let fuzz_dir = root.join("fuzz");
    let all = targets(&fuzz_dir)?;
    let chosen: Vec<String> = if options.targets.is_empty() {
        all.clone()
    } else {
        for target in &options.targets {
            if !all.contains(target) {
                bail!(
                    "no fuzz target {target:?}; the targets are {}",
                    all.join(", ")
                );
            }
        }
        options.targets.clone()
    };

    eprintln!("xtask: checking the C++ compiler (libfuzzer-sys builds libFuzzer with it)");
    let cxx = testkit::tools::cxx().context("finding a C++ compiler")?;
    eprintln!("xtask: {}", cxx.display());
    eprintln!("xtask: installing cargo-fuzz (once, into the tools directory)");
    let cargo_fuzz = testkit::tools::cargo_fuzz().context("installing cargo-fuzz")?;
    eprintln!("xtask: {}", cargo_fuzz.display());

    eprintln!(
        "xtask: building the fuzz targets (instrumented release build; a first build takes minutes)"
    );
    let started = Instant::now();
    let status = Command::new(&cargo_fuzz)
        .current_dir(root)
        .args(["fuzz", "build", "--sanitizer", "none"])
        .status()
        .context("running cargo-fuzz")?;
    crate::check(status, "building the fuzz targets")?;
    eprintln!("xtask: built in {:.0?}", started.elapsed());

    let work = target_dir(root).join("fuzz");
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut results = Vec::new();
    for target in &chosen {
        let corpus = work.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let log = logs.join(format!("{target}.log"));
        let figures = run_target(root, &cargo_fuzz, target, &corpus, &log, options.seconds)?;
        if options.merge {
            merge(root, &cargo_fuzz, target, &corpus)?;
        }
        results.push((target.clone(), figures));
    }

    eprintln!(
        "xtask: fuzzing done, {} s per target, no crash:",
        options.seconds
    );
    eprintln!(
        "  {:<24} {:>12} {:>9} {:>9} {:>8}",
        "target", "execs", "execs/s", "new", "rss MiB"
    );
    for (target, f) in &results {
        eprintln!(
            "  {target:<24} {:>12} {:>9} {:>9} {:>8}",
            f.execs, f.execs_per_second, f.new_units, f.peak_rss_mb
        );
    }
    Ok(())
}

/// Runs one target for `seconds`, saying every 10 s how it goes; fails with the crash report.
fn run_target(
    root: &Path,
    cargo_fuzz: &Path,
    target: &str,
    corpus: &Path,
    log: &Path,
    seconds: u64,
) -> anyhow::Result<Figures> {
    let fuzz_dir = root.join("fuzz");
    let committed = fuzz_dir.join("corpus").join(target);
    let dictionary = fuzz_dir.join("dicts").join(format!("{target}.dict"));
    let dictionary = dictionary.is_file().then_some(dictionary.as_path());
    eprintln!(
        "xtask: fuzzing {target} for {seconds} s (log: {})",
        log.display()
    );
    let file = File::create(log)?;
    let mut child = Command::new(cargo_fuzz)
        .current_dir(root)
        .args(["fuzz", "run", "--sanitizer", "none", target])
        // The first corpus directory is where libFuzzer writes; the committed one is read.
        .arg(corpus)
        .arg(&committed)
        .arg("--")
        .args(libfuzzer_args(seconds, dictionary))
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("running cargo-fuzz")?;
    let started = Instant::now();
    let mut next_report = PROGRESS_EVERY;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() >= next_report {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            eprintln!(
                "xtask: {target} {}/{seconds} s: {}",
                started.elapsed().as_secs(),
                last_status(&text).unwrap_or("starting")
            );
            next_report += PROGRESS_EVERY;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if !status.success() {
        bail!(
            "fuzz target {target} failed ({status}); full log: {}\n{}",
            log.display(),
            failure_report(&text)
        );
    }
    let figures = final_stats(&text).unwrap_or_default();
    eprintln!(
        "xtask: {target}: {} execs ({}/s), {} new inputs, no crash",
        figures.execs, figures.execs_per_second, figures.new_units
    );
    Ok(figures)
}

/// Adds to the committed corpus the fewest inputs of the working corpus that reach the code
/// edges it does not (libFuzzer's set-cover merge over edges, not hit counts, which keeps the
/// committed corpus to a few hundred small files per target).
fn merge(root: &Path, cargo_fuzz: &Path, target: &str, corpus: &Path) -> anyhow::Result<()> {
    let committed = root.join("fuzz").join("corpus").join(target);
    let before = std::fs::read_dir(&committed)?.count();
    let status = Command::new(cargo_fuzz)
        .current_dir(root)
        .args(["fuzz", "run", "--sanitizer", "none", target])
        .arg(&committed)
        .arg(corpus)
        .args(["--", "-set_cover_merge=1", "-use_counters=0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running cargo-fuzz")?;
    crate::check(status, &format!("merging the corpus of {target}"))?;
    let after = std::fs::read_dir(&committed)?.count();
    eprintln!(
        "xtask: {target}: {} inputs added to {}",
        after - before,
        committed.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
INFO: Seed: 1
#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 27Mb
#4096\tpulse  cov: 442 ft: 872 corp: 246/4593b lim: 35 exec/s: 2048 rss: 27Mb
Done 4401610 runs in 21 second(s)
stat::number_of_executed_units: 4401610
stat::average_exec_per_sec:     209600
stat::new_units_added:          9698
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              31
";

    #[test]
    fn final_stats_are_read_from_the_log() {
        assert_eq!(
            final_stats(LOG),
            Some(Figures {
                execs: 4_401_610,
                execs_per_second: 209_600,
                new_units: 9698,
                peak_rss_mb: 31,
            })
        );
        assert_eq!(final_stats("INFO: Seed: 1\n"), None);
    }

    #[test]
    fn the_last_status_line_is_the_progress() {
        assert!(last_status(LOG).unwrap().starts_with("#4096\tpulse"));
        assert_eq!(last_status(""), None);
    }

    #[test]
    fn a_crash_report_keeps_the_panic_and_the_reproduction_without_frames() {
        let log = "\
#27097\tREDUCE cov: 442 exec/s: 0 rss: 27Mb L: 7/30 MS: 1 EraseBytes-

thread '<unnamed>' (11249) panicked at fuzz_targets/item_key.rs:14:5:
assertion `left == right` failed: display form
  left: Ok(1)
 right: Ok(2)
stack backtrace:
   0: __rustc::rust_begin_unwind
             at /rustc/library/std/src/panicking.rs:689:5
   1: core::panicking::panic_fmt
note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.
==11249== ERROR: libFuzzer: deadly signal
0x61,0x64,0x64,
artifact_prefix='fuzz/artifacts/item_key/'; Test unit written to fuzz/artifacts/item_key/crash-762d
Reproduce with:
\tcargo fuzz run item_key fuzz/artifacts/item_key/crash-762d
Error: Fuzz target exited with exit status: 77
Stack backtrace:
   0: cargo_fuzz::project::FuzzProject::exec_fuzz
             at src/project.rs:590:13
";
        let report = failure_report(log);
        assert!(
            report.starts_with("thread '<unnamed>' (11249) panicked"),
            "{report}"
        );
        assert!(report.contains("display form") && report.contains("right: Ok(2)"));
        assert!(report.contains("Test unit written to fuzz/artifacts/item_key/crash-762d"));
        assert!(report.contains("cargo fuzz run item_key"));
        assert!(!report.contains("panic_fmt") && !report.contains("panicking.rs"));
        assert!(!report.contains("REDUCE") && !report.contains("0x61"));
        assert!(report.contains("exit status: 77") && !report.contains("exec_fuzz"));
    }

    #[test]
    fn libfuzzer_gets_the_budget_a_hang_limit_and_the_dictionary() {
        assert_eq!(
            libfuzzer_args(30, Some(Path::new("fuzz/dicts/x.dict"))),
            [
                "-max_total_time=30",
                "-timeout=10",
                "-print_final_stats=1",
                "-dict=fuzz/dicts/x.dict"
            ]
        );
        assert_eq!(libfuzzer_args(5, None).len(), 3);
    }

    #[test]
    fn the_targets_are_the_committed_fuzz_targets() {
        let root = testkit::tools::workspace_root();
        let names = targets(&root.join("fuzz")).unwrap();
        for expected in ["agent_config", "cliserver_configure", "validate"] {
            assert!(names.contains(&expected.to_owned()), "{names:?}");
        }
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
