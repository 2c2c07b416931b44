//! What the demo prints: step headers, short status lines and the summary. Plain text in
//! `--ci` or when stdout is not a terminal (or `NO_COLOR` is set), coloured otherwise.

use std::io::IsTerminal;

/// Where the demo's progress goes (stdout); cheap to copy into every step.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    colour: bool,
}

/// The kind of a status line, which decides its mark and colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Something done or seen.
    Ok,
    /// Progress or detail.
    Info,
    /// A step left out, with the reason.
    Skip,
    /// A failure.
    Fail,
}

impl Output {
    /// Plain output when `ci`, when stdout is not a terminal or when `NO_COLOR` is set.
    pub fn new(ci: bool) -> Self {
        let colour =
            !ci && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Output { colour }
    }

    /// `[3/11] name: what it does`, after a blank line.
    pub fn header(&self, index: usize, total: usize, name: &str, what: &str) {
        println!();
        println!(
            "{}",
            paint(
                self.colour,
                "1",
                &format!("[{index}/{total}] {name}: {what}")
            )
        );
    }

    /// One status line under the current step.
    pub fn line(&self, mark: Mark, text: &str) {
        println!("{}", status_line(self.colour, mark, text));
    }

    /// Shorthand for [`Mark::Info`].
    pub fn info(&self, text: &str) {
        self.line(Mark::Info, text);
    }

    /// Shorthand for [`Mark::Ok`].
    pub fn ok(&self, text: &str) {
        self.line(Mark::Ok, text);
    }

    /// Several lines (a command's output), indented under the current step.
    pub fn block(&self, text: &str) {
        for line in text.lines() {
            println!("        {line}");
        }
    }

    /// A line without indentation (the summary, the final hints).
    pub fn plain(&self, text: &str) {
        println!("{text}");
    }
}

/// Formats one status line: an indented mark (ASCII when plain, so CI logs stay greppable)
/// and the text.
pub fn status_line(colour: bool, mark: Mark, text: &str) -> String {
    let (plain, fancy, code) = match mark {
        Mark::Ok => ("ok  ", "✓", "32"),
        Mark::Info => ("..  ", "·", "2"),
        Mark::Skip => ("skip", "–", "33"),
        Mark::Fail => ("FAIL", "✗", "31"),
    };
    if colour {
        format!("    {} {text}", paint(true, code, fancy))
    } else {
        format!("    {plain} {text}")
    }
}

/// Wraps `text` in the ANSI SGR `code` when `colour` is on.
pub fn paint(colour: bool, code: &str, text: &str) -> String {
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_carry_no_escape_codes() {
        assert_eq!(status_line(false, Mark::Ok, "done"), "    ok   done");
        assert_eq!(status_line(false, Mark::Fail, "bad"), "    FAIL bad");
        assert!(!status_line(false, Mark::Skip, "x").contains('\x1b'));
    }

    #[test]
    fn coloured_lines_are_reset() {
        let line = status_line(true, Mark::Ok, "done");
        assert!(line.contains("\x1b[32m✓\x1b[0m"), "{line:?}");
        assert!(line.ends_with("done"));
    }
}
