//! Values as people type them on the command line: durations (`2s`, `500ms`, `1.5m`), sizes
//! (`64KiB`), and the clap value parsers built on them (each rejects zero where zero means
//! nothing, with a one-line reason).

use std::fmt;
use std::time::Duration;

/// A duration or size that could not be parsed; its message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseUnitError {
    input: String,
    expected: &'static str,
}

impl fmt::Display for ParseUnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value `{}`: expected {}",
            self.input, self.expected
        )
    }
}

impl std::error::Error for ParseUnitError {}

const DURATION_EXPECTED: &str = "a number with an optional unit (ns, us, ms, s, m, h), such as 2s, 500ms or 1.5m; no unit means seconds";
const SIZE_EXPECTED: &str = "a byte count with an optional unit (B, KiB, MiB, GiB; k, M, G mean the same), such as 65536 or 256KiB";

/// Parses a duration: a non-negative number and an optional unit (`ns`, `us`, `ms`, `s`, `m`,
/// `h`; none means seconds). Fractions are allowed (`1.5s`).
pub(crate) fn parse_duration(input: &str) -> Result<Duration, ParseUnitError> {
    let err = || ParseUnitError {
        input: input.to_owned(),
        expected: DURATION_EXPECTED,
    };
    let (number, unit) = split_number(input.trim()).ok_or_else(err)?;
    let nanos_per_unit: u64 = match unit.to_ascii_lowercase().as_str() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "" | "s" | "sec" | "secs" => 1_000_000_000,
        "m" | "min" | "mins" => 60 * 1_000_000_000,
        "h" | "hr" | "hour" | "hours" => 3_600 * 1_000_000_000,
        _ => return Err(err()),
    };
    match number.parse::<u64>() {
        Ok(whole) => {
            let nanos = u128::from(whole) * u128::from(nanos_per_unit);
            let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| err())?;
            // The remainder is below 10^9, so it fits a u32.
            let sub = u32::try_from(nanos % 1_000_000_000).map_err(|_| err())?;
            Ok(Duration::new(secs, sub))
        }
        Err(_) => {
            let value: f64 = number.parse().map_err(|_| err())?;
            Duration::try_from_secs_f64(value * nanos_per_unit as f64 / 1e9).map_err(|_| err())
        }
    }
}

/// Parses a byte count: a whole number and an optional binary unit (`B`, `KiB`, `MiB`, `GiB`;
/// `k`/`KB`, `M`/`MB`, `G`/`GB` are read as the same powers of 1024).
pub(crate) fn parse_size(input: &str) -> Result<u64, ParseUnitError> {
    let err = || ParseUnitError {
        input: input.to_owned(),
        expected: SIZE_EXPECTED,
    };
    let (number, unit) = split_number(input.trim()).ok_or_else(err)?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(err()),
    };
    let value: u64 = number.parse().map_err(|_| err())?;
    value.checked_mul(multiplier).ok_or_else(err)
}

/// Splits `"1.5ms"` into `("1.5", "ms")`, allowing spaces between; `None` when there is no number.
fn split_number(input: &str) -> Option<(&str, &str)> {
    let end = input
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(input.len());
    let (number, unit) = input.split_at(end);
    if number.is_empty() || number == "." {
        return None;
    }
    Some((number, unit.trim()))
}

/// clap: a duration, zero allowed (`--interval 0`).
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// clap: a duration more than zero.
pub(crate) fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(d)
}

/// clap: a byte count of at least 1 that fits this machine's `usize`.
pub(crate) fn positive_size(s: &str) -> Result<usize, String> {
    let bytes = parse_size(s).map_err(|e| e.to_string())?;
    if bytes == 0 {
        return Err("must be at least 1 byte".to_owned());
    }
    usize::try_from(bytes).map_err(|_| "too large for this machine".to_owned())
}

/// clap: a whole number from 1 to `chi_net::MAX_WORKERS` (threads, workers).
pub(crate) fn workers(s: &str) -> Result<usize, String> {
    let n = positive(s)?;
    if n > chi_net::MAX_WORKERS {
        return Err(format!("must be at most {}", chi_net::MAX_WORKERS));
    }
    Ok(n)
}

/// clap: a whole number of at least 1.
pub(crate) fn positive(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if n == 0 {
        return Err("must be at least 1".to_owned());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_units() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("2 s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_duration("9ns"), Ok(Duration::from_nanos(9)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.25s"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn duration_rejects_garbage() {
        for bad in ["", "s", "-1s", "1x", "1.2.3s", ".", "soon", "1e3s"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.to_string().contains("expected"), "{bad}: {err}");
        }
    }

    #[test]
    fn duration_huge_is_error_not_panic() {
        assert!(parse_duration("18446744073709551615h").is_err());
        assert!(parse_duration("1e400").is_err());
    }

    #[test]
    fn size_units() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
    }

    #[test]
    fn clap_parsers_reject_zero_in_one_line() {
        for err in [
            positive_duration("0s").unwrap_err(),
            positive_size("0").unwrap_err(),
            workers("0").unwrap_err(),
            workers("100000").unwrap_err(),
            positive("x").unwrap_err(),
        ] {
            assert!(!err.contains('\n'), "{err}");
        }
        assert_eq!(positive_size("1MiB"), Ok(1 << 20));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn size_rejects_garbage() {
        for bad in ["", "k", "1.5k", "-1", "12 parsecs", "99999999999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
