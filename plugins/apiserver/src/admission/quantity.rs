//! Resource quantities (`resource.Quantity`): the syntax `ParseQuantity` accepts, and exact ordering.

use std::cmp::Ordering;

/// `ErrFormatWrong`.
pub(super) const FORMAT_WRONG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
/// `ErrSuffix`.
const SUFFIX_WRONG: &str = "unable to parse quantity's suffix";

/// A parsed quantity: `±digits × 10^exp10 × 2^exp2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Quantity {
    negative: bool,
    /// Significant digits (integer and fraction parts), leading zeros stripped.
    digits: String,
    exp10: i64,
    exp2: u32,
}

impl Quantity {
    /// Parses a quantity as `ParseQuantity` does (after trimming spaces, as `UnmarshalJSON` does).
    pub(super) fn parse(text: &str) -> Result<Quantity, &'static str> {
        let s = text.trim();
        if s.is_empty() {
            return Err(FORMAT_WRONG);
        }
        let (negative, num, denom, suffix) = scan(s)?;
        let (exp10, exp2) = interpret(suffix).ok_or(SUFFIX_WRONG)?;
        let digits = format!("{num}{denom}").trim_start_matches('0').to_string();
        let exp10 = exp10 - i64::try_from(denom.len()).unwrap_or(i64::MAX);
        Ok(Quantity {
            negative: negative && !digits.is_empty(),
            digits,
            exp10,
            exp2,
        })
    }

    /// True for values below zero.
    pub(super) fn is_negative(&self) -> bool {
        self.negative
    }

    /// True for zero.
    pub(super) fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// Magnitude as `mantissa × 10^exp`, when it fits in 128 bits.
    fn scaled(&self) -> Option<(u128, i64)> {
        let mut m: u128 = 0;
        let mut exp = self.exp10;
        for (i, c) in self.digits.bytes().enumerate() {
            if i >= 36 {
                exp += 1;
                continue;
            }
            m = m * 10 + u128::from(c - b'0');
        }
        let m = m.checked_mul(1u128.checked_shl(self.exp2)?)?;
        Some((m, exp))
    }

    fn approx(&self) -> f64 {
        let m: f64 = self.digits.parse().unwrap_or(0.0);
        let v = m
            * 10f64.powi(i32::try_from(self.exp10).unwrap_or(i32::MAX))
            * 2f64.powi(i32::try_from(self.exp2).unwrap_or(i32::MAX));
        if self.negative {
            -v
        } else {
            v
        }
    }

    /// Orders two quantities by value (`1Gi == 1073741824`, `100m < 1`).
    pub(super) fn cmp_value(&self, other: &Quantity) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => return Ordering::Greater,
            (true, false) => return Ordering::Less,
            _ => {}
        }
        let magnitude = match (self.scaled(), other.scaled()) {
            (Some((a, ea)), Some((b, eb))) => align(a, ea, b, eb),
            _ => None,
        };
        let magnitude =
            magnitude.unwrap_or_else(|| self.approx().abs().total_cmp(&other.approx().abs()));
        if self.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

/// Compares `a × 10^ea` with `b × 10^eb` exactly, or `None` on overflow.
fn align(a: u128, ea: i64, b: u128, eb: i64) -> Option<Ordering> {
    if a == 0 || b == 0 {
        return Some(a.cmp(&b));
    }
    let shift = |m: u128, by: i64| -> Option<u128> {
        m.checked_mul(10u128.checked_pow(u32::try_from(by).ok()?)?)
    };
    let (a, b) = if ea >= eb {
        (shift(a, ea - eb)?, b)
    } else {
        (a, shift(b, eb - ea)?)
    };
    Some(a.cmp(&b))
}

/// `parseQuantityString`: sign, integer digits, fraction digits and suffix.
fn scan(s: &str) -> Result<(bool, &str, &str, &str), &'static str> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut negative = false;
    match b.first() {
        Some(b'-') => {
            negative = true;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return Ok((negative, "0", "", ""));
    }
    let num_start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = if pos == num_start {
        "0"
    } else {
        &s[num_start..pos]
    };
    let mut denom = "";
    if pos < end && b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[start..pos];
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return Err(FORMAT_WRONG);
    }
    Ok((negative, num, denom, &s[suffix_start..]))
}

/// The decimal and binary exponents of a suffix, or `None` when it is not one.
fn interpret(suffix: &str) -> Option<(i64, u32)> {
    let decimal = match suffix {
        "" => Some(0),
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(e) = decimal {
        return Some((e, 0));
    }
    let binary = match suffix {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(e) = binary {
        return Some((0, e));
    }
    match suffix.as_bytes() {
        [b'e' | b'E', rest @ ..] if !rest.is_empty() => {
            suffix[1..].parse::<i64>().ok().map(|e| (e, 0))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        match Quantity::parse(s) {
            Ok(q) => q,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn parse_should_accept_upstream_forms() {
        for s in [
            "1", "100m", "1.5", "0.5Gi", "1Ki", "1e3", "1E-3", "+2", "-1", "0", ".5", "1.", " 2 ",
            "12Mi", "5n",
        ] {
            assert!(Quantity::parse(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn parse_should_reject_bad_syntax_and_suffixes() {
        assert_eq!(Quantity::parse("abc"), Err(FORMAT_WRONG));
        assert_eq!(Quantity::parse(""), Err(FORMAT_WRONG));
        assert_eq!(Quantity::parse("1.5.5"), Err(FORMAT_WRONG));
        assert_eq!(Quantity::parse("1Gb"), Err(FORMAT_WRONG));
        assert_eq!(Quantity::parse("1KiB"), Err(FORMAT_WRONG));
        assert_eq!(Quantity::parse("1ki"), Err(SUFFIX_WRONG));
        assert_eq!(Quantity::parse("1e"), Err(SUFFIX_WRONG));
    }

    #[test]
    fn cmp_value_should_compare_across_suffixes() {
        assert_eq!(q("100m").cmp_value(&q("1")), Ordering::Less);
        assert_eq!(q("1Gi").cmp_value(&q("1073741824")), Ordering::Equal);
        assert_eq!(q("1.5").cmp_value(&q("1500m")), Ordering::Equal);
        assert_eq!(q("2").cmp_value(&q("1")), Ordering::Greater);
        assert_eq!(q("512Mi").cmp_value(&q("0.5Gi")), Ordering::Equal);
        assert_eq!(q("1e3").cmp_value(&q("1k")), Ordering::Equal);
        assert_eq!(q("-1").cmp_value(&q("0")), Ordering::Less);
        assert_eq!(q("-2").cmp_value(&q("-1")), Ordering::Less);
        assert_eq!(q("1E").cmp_value(&q("1Ei")), Ordering::Less);
    }

    #[test]
    fn sign_helpers_should_report_zero_and_negative() {
        assert!(q("-1m").is_negative());
        assert!(q("0.000").is_zero());
        assert!(!q("-0").is_negative());
    }
}
