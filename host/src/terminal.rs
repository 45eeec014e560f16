//! What reaches a person's terminal: every byte `diagnose`, `plugins`, `eval` and `kubectl sre`
//! print goes through [`Escaping`], so a control character a tenant wrote (a log line, an event, a
//! report someone else wrote) is shown, never obeyed. An `ESC [8m` in a log would otherwise hide
//! everything after it on an approver's screen, the patch and the verdict included; OSC 52 would
//! write their clipboard.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

use crate::redact::is_unsafe_char;

/// `text` with every character a terminal acts on written as a visible escape (`\x1b`, `\r`,
/// `\u{202e}`); newlines and tabs stay.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            c if is_unsafe_char(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A writer that escapes control characters on their way to `inner` (a terminal). Bytes that are
/// not UTF-8 are shown as U+FFFD; a character split across two writes is held until it is whole.
pub struct Escaping<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> Escaping<W> {
    pub fn new(inner: W) -> Self {
        Escaping {
            inner,
            pending: Vec::new(),
        }
    }

    /// Writes out what `pending` holds, keeping an incomplete UTF-8 sequence at its end unless
    /// `all` (at flush: it will never be completed).
    fn drain(&mut self, all: bool) -> io::Result<()> {
        let mut start = 0;
        while start < self.pending.len() {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(text) => {
                    self.inner.write_all(escape(text).as_bytes())?;
                    start = self.pending.len();
                }
                Err(e) => {
                    let valid = &self.pending[start..start + e.valid_up_to()];
                    // SAFETY of the unwrap: `valid_up_to` bytes are valid UTF-8.
                    let text = std::str::from_utf8(valid).expect("valid prefix");
                    self.inner.write_all(escape(text).as_bytes())?;
                    start += e.valid_up_to();
                    match e.error_len() {
                        Some(bad) => {
                            self.inner.write_all("\u{fffd}".as_bytes())?;
                            start += bad;
                        }
                        None if all => {
                            self.inner.write_all("\u{fffd}".as_bytes())?;
                            start = self.pending.len();
                        }
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..start);
        Ok(())
    }
}

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        self.drain(false)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain(true)?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for Escaping<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through_writer(chunks: &[&[u8]]) -> String {
        let mut out = Vec::new();
        {
            let mut w = Escaping::new(&mut out);
            for chunk in chunks {
                w.write_all(chunk).unwrap();
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escape_shows_every_control_sequence_and_keeps_the_text() {
        for (raw, shown) in [
            (
                "\x1b[31mERROR\x1b[0m \x1b[8mhidden",
                "\\x1b[31mERROR\\x1b[0m \\x1b[8mhidden",
            ),
            ("ring\x07bell", "ring\\x07bell"),
            ("\x1b]52;c;ZXZpbA==\x07", "\\x1b]52;c;ZXZpbA==\\x07"),
            ("safe\rEVIL", "safe\\rEVIL"),
            ("del\x7f", "del\\x7f"),
            ("c1\u{9b}31m", "c1\\u{9b}31m"),
            ("bidi\u{202e}txt", "bidi\\u{202e}txt"),
            ("lines\nand\ttabs", "lines\nand\ttabs"),
        ] {
            assert_eq!(escape(raw), shown);
        }
    }

    #[test]
    fn the_writer_escapes_whatever_is_printed_through_it() {
        let printed = through_writer(&[b"log: \x1b[8mhidden", b"\r\n", b"\x1b]52;c;eA==\x07"]);
        assert!(!printed.contains('\x1b'), "{printed:?}");
        assert!(!printed.contains('\x07'), "{printed:?}");
        assert!(!printed.contains('\r'), "{printed:?}");
        assert_eq!(printed, "log: \\x1b[8mhidden\\r\n\\x1b]52;c;eA==\\x07");
    }

    #[test]
    fn a_character_split_across_writes_is_kept_whole() {
        let bytes = "é\u{202e}".as_bytes();
        assert_eq!(
            through_writer(&[&bytes[..1], &bytes[1..3], &bytes[3..]]),
            "é\\u{202e}"
        );
        assert_eq!(through_writer(&[b"bad \xff byte"]), "bad \u{fffd} byte");
        assert_eq!(through_writer(&[b"cut \xc3"]), "cut \u{fffd}");
    }
}
