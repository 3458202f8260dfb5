//! Results go to stdout through here, so a closed pipe is handled in one place.
//!
//! Rust ignores SIGPIPE, so writing to a pipe whose reader has gone (`adalbert simulate --json |
//! head -c1`) fails with `BrokenPipe`, and `println!` turns that failure into a panic. The
//! reader leaving early is not an error of ours: [`write`] ends the process quietly with
//! status 0 instead, as a command killed by SIGPIPE would look to a shell pipeline. Any other
//! write error (a full disk behind a redirect) is reported with status 1.

use std::io::Write;

/// `println!` for results: one line to stdout, a closed pipe ends the process with status 0.
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for results (no newline); see [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

/// Writes to stdout; see the module docs for what a failed write does.
pub fn write(args: std::fmt::Arguments) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args) {
        failed(e);
    }
}

/// Writes bytes to stdout (e.g. a generated completion script) and flushes them.
pub fn write_bytes(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        failed(e);
    }
}

/// Flushes stdout before the process exits, so a write error of the last buffered bytes is
/// handled like any other.
pub fn flush() {
    if let Err(e) = std::io::stdout().lock().flush() {
        failed(e);
    }
}

fn failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: writing to stdout: {e}");
    std::process::exit(1);
}
